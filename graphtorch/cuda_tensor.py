"""CUDA tensors: data in device memory (runtime.cuda.DeviceArray), eager ops as single-op CUDA kernels.

`dispatch.apply` sends a primitive here when one of its inputs lives on a CUDA device. The op is
lowered as a one-node graph through the CUDA emitter (the same kernels `graphtorch.compile` emits
for a group of one), compiled for the device's SM, loaded once and cached per (primitive, attrs,
input shapes and dtypes); a call passes the inputs' device pointers and a fresh output array.

Like torch, a CPU tensor holding one value may join a CUDA op: Python numbers reach a primitive as
a 0-d CPU tensor, often broadcast to the op's shape first (an expand with every stride 0). Such an
operand becomes a 0-d kernel input and an `expand` fused into the op's kernel. Any other CPU
operand is torch's "Expected all tensors to be on the same device" error.

View ops (reshape, permute, slice...) return copies on the device; writing in place through one
is refused rather than silently missing the base.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .runtime import cuda as rt
from .tensor import Tensor
from .tensor import device as torch_device

_KERNELS: dict = {}  # cache key -> _EagerKernel
stats = {"built": 0, "hits": 0}  # the cache's counters, read by the tests


# ---------------------------------------------------------------- devices


def resolve(d) -> rt.Device:
    """The runtime device for a torch.device/str/int naming a CUDA device; torch's errors otherwise."""
    d = torch_device("cuda", d) if isinstance(d, int) else torch_device(d)
    if not rt.is_available():
        raise AssertionError("Torch not compiled with CUDA enabled")
    index = 0 if d.index is None else d.index
    if not 0 <= index < rt.device_count():
        raise RuntimeError(f"CUDA error: invalid device ordinal (device {index}, {rt.device_count()} available)")
    return rt.device(index)


def is_host_scalar(t: Tensor) -> bool:
    """A CPU tensor that holds one value: 0-d, or broadcast from one (every stride 0)."""
    a = t._data
    return isinstance(a, np.ndarray) and (a.ndim == 0 or all(s == 0 for s in a.strides))


def common_device(inputs) -> rt.Device:
    """The one CUDA device of `inputs`; a second device (CPU included) is torch's error."""
    seen = [t for t in inputs if t.is_cuda or not is_host_scalar(t)]
    first = seen[0].device
    for t in seen[1:]:
        if t.device != first:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"{first} and {t.device}!")
    return next(t for t in inputs if t.is_cuda)._data.dev


# ---------------------------------------------------------------- moving tensors


def to_device(t: Tensor, d) -> Tensor:
    """t on device `d` ("cpu", "cuda", "cuda:0", a torch.device): t itself when it is there already.

    Differentiable, like torch's `.to()`: the gradient is copied back to t's device."""
    from .autograd.grad_mode import is_grad_enabled
    from .dispatch import attach_custom

    d = torch_device("cuda", d) if isinstance(d, int) else torch_device(d)
    dev = resolve(d) if d.type == "cuda" else None
    if (t._data.dev if t.is_cuda else None) is dev:
        return t
    if t._node is not None:
        raise NotImplementedError("graphtorch cannot trace .to(device)/.cuda(): compile models that stay on the CPU")
    host = t._data.to_host() if t.is_cuda else t._data
    out = Tensor._wrap(host if dev is None else rt.DeviceArray.from_host(host, dev))
    if t.requires_grad and is_grad_enabled():
        back = t.device
        attach_custom(out, "ToCopyBackward0", lambda grad, saved: [to_device(grad, back)], [], [t])
    return out


def on_device(fn: Callable) -> Callable:
    """A creation function that also takes device=: it makes the tensor on the CPU, then moves it."""

    @functools.wraps(fn)
    def placed(*args, device=None, **kwargs):
        if device is None or torch_device(device).type == "cpu":
            return fn(*args, **kwargs)
        resolve(device)  # fail before making anything: torch's error without CUDA
        requires_grad = kwargs.pop("requires_grad", False)
        out = to_device(fn(*args, **kwargs), device)
        return out.requires_grad_(True) if requires_grad else out

    return placed


def assign(dst: Tensor, src: Tensor) -> None:
    """dst's device bytes := src's values (broadcast to dst's shape): in-place ops on CUDA tensors."""
    from .dispatch import apply

    if not dst.is_cuda:
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{dst.device} and {src.device}!")
    if dst._base is not None and dst._data is not dst._base._data:
        raise NotImplementedError("in-place writes through a view of a CUDA tensor are not supported: graphtorch's "
                                  "CUDA views are copies, the write would miss the base tensor. Write to the base, "
                                  "or call .cpu() first")
    if src.is_cuda:
        data = src._data if tuple(src.shape) == tuple(dst.shape) else apply("expand", src, shape=tuple(dst.shape))._data
    else:
        common_device([dst, src])  # only a one-value CPU tensor may be written into a CUDA tensor
        data = rt.DeviceArray.from_host(np.broadcast_to(src._data, dst.shape).astype(dst.dtype.np), dst._data.dev)
    dst._data.copy_from(data)


# ---------------------------------------------------------------- running a primitive


def apply_cuda(p, inputs, attrs: dict) -> Tensor:
    """Run primitive `p` on `inputs` (at least one on a CUDA device) as a cached single-op kernel."""
    dev = common_device(inputs)
    if p.data_dependent:
        raise NotImplementedError(f"'{p.name}' has an output shape that depends on the values, which graphtorch "
                                  "cannot compute on a CUDA device; call .cpu() on its inputs first")
    scalars = tuple(not t.is_cuda for t in inputs)
    key = (p.name, _freeze(attrs), tuple((tuple(t.shape), t.dtype) for t in inputs), scalars, dev.ordinal)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _EagerKernel(p, inputs, attrs, scalars, dev)
        stats["built"] += 1
    else:
        stats["hits"] += 1
    out = Tensor._wrap(kernel(inputs))
    if p.may_alias:  # a copy standing for a view: assign() refuses writes through it
        src = inputs[0]
        out._base = src._base if src._base is not None else src
        out._version = src._version
    return out


def _freeze(value):
    """A hashable key for attrs; the type is part of it (True == 1 == 1.0 as dict keys)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, value.dtype.str, value.tobytes())
    return (type(value).__name__, value)


def image_for(module, arch: str) -> bytes:
    """The loadable image of an emitted module: a cubin (PTX when only that was produced)."""
    from .compiler.cuda import compile_module

    compiled = compile_module(module, arch=arch)
    return compiled.cubin or compiled.ptx.encode() + b"\0"


class _EagerKernel:
    """One primitive at fixed input types: the emitted module, loaded, plus an arena for its scratch."""

    def __init__(self, p, inputs, attrs: dict, scalars: tuple[bool, ...], dev: rt.Device):
        from .compiler.cuda import emit
        from .compiler.dtypes import TensorType
        from .compiler.fusion import fuse, single_groups
        from .compiler.ir import Graph

        g = Graph()
        operands = []
        for k, (t, scalar) in enumerate(zip(inputs, scalars)):
            if scalar:  # one value: a 0-d input broadcast inside the kernel
                node = g.input(f"in{k}", TensorType((), t.dtype))
                if t.ndim:
                    node = g.call("expand", [node], dict(shape=tuple(t.shape)))
            else:
                node = g.input(f"in{k}", TensorType(tuple(t.shape), t.dtype))
            operands.append(node)
        out = g.call(p.name, operands, dict(attrs))
        g.outputs = [out]
        groups = fuse(g).groups if any(scalars) else single_groups(g)
        self.module = emit(g, groups, name=f"eager_{p.name}")
        self.out_shape, self.out_dtype = out.type.shape, out.type.dtype.np
        self.dev = dev
        names = sorted({la.kernel for la in self.module.launches})
        self.kernels = rt.Kernels(image_for(self.module, dev.arch), names, dev) if names else None
        self.arena = rt.DeviceArray((self.module.arena_bytes,), np.uint8, dev)
        for number, value in self.module.constants.items():
            b = self.module.buffers[number]
            _check_fits(b, value)
            self.arena.write(b.offset, np.ascontiguousarray(value, dtype=b.dtype))

    def __call__(self, inputs) -> rt.DeviceArray:
        m = self.module
        out = rt.DeviceArray(self.out_shape, self.out_dtype, self.dev)
        staged = []  # one-value CPU operands, uploaded for this call; alive until the launches finish
        pointers = {}
        for t, number in zip(inputs, m.inputs):
            data = t._data
            if not t.is_cuda:
                value = data.reshape(-1)[:1].reshape(()) if data.size else np.zeros((), data.dtype)
                data = rt.DeviceArray.from_host(value, self.dev)
                staged.append(data)
            _check_fits(m.buffers[number], data)
            pointers[number] = data.ptr
        (out_number,) = m.outputs
        _check_fits(m.buffers[out_number], out)
        pointers[out_number] = out.ptr
        if self.kernels is not None:
            launches = [(la.kernel, la.grid, la.block, [self._pointer(a, pointers) for a in la.args])
                        for la in m.launches]
            _raise_status(self.kernels.run(launches))
        return out

    def _pointer(self, number: int, pointers: dict[int, int]) -> int:
        """An input's or the output's own array; temps, constants and scratch live in the arena."""
        return pointers[number] if number in pointers else self.arena.ptr + self.module.buffers[number].offset


def _check_fits(buffer, data) -> None:
    """The kernels trust the module's layout for their bounds: the array must be exactly that big."""
    nbytes = data.nbytes
    if nbytes != buffer.nbytes:
        raise rt.CudaError(f"buffer {buffer.name} holds {buffer.nbytes} bytes, the array has {nbytes}")


def _raise_status(status: np.ndarray) -> None:
    from .compiler.cuda.prelude import ERROR_CODE, ERROR_DIM, ERROR_INDEX, ERROR_SIZE

    if status[ERROR_CODE]:
        raise IndexError(f"index {status[ERROR_INDEX]} is out of bounds for dimension {status[ERROR_DIM]} "
                         f"with size {status[ERROR_SIZE]}")


def cache_clear() -> None:
    _KERNELS.clear()
    stats.update(built=0, hits=0)
