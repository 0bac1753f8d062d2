"""Tensor: a numpy array (eager), a device array (CUDA), or a graph value (tracing), plus autograd metadata.

The math lives in graphtorch/ops; methods here are thin bindings so that `x.sum()` and
`torch.sum(x)` are the same code.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext

import numpy as np

from . import dispatch
from . import dtypes as dt
from ._tensor_str import tensor_repr
from .autograd.grad_mode import is_grad_enabled, no_grad
from .autograd.graph import AccumulateGrad
from .runtime.cuda import DeviceArray


class Size(tuple):
    """torch.Size: a tuple that prints as `torch.Size([2, 3])`."""

    def __repr__(self) -> str:
        return f"torch.Size({list(self)})"

    __str__ = __repr__

    def numel(self) -> int:
        n = 1
        for s in self:
            n *= s
        return n

    def __getitem__(self, i):
        out = super().__getitem__(i)
        return Size(out) if isinstance(i, slice) else out


class device:
    """torch.device: "cpu", or "cuda" (with an index) for tensors in a GPU's memory (cuda_tensor.py)."""

    def __init__(self, type: str | device = "cpu", index: int | None = None):
        if isinstance(type, device):
            type, index = type.type, type.index
        if ":" in type:
            type, idx = type.split(":")
            index = int(idx)
        if type not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device string: {type}")
        self.type, self.index = type, index

    def __repr__(self) -> str:
        return f"device(type='{self.type}')" if self.index is None else f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        other = device(other) if isinstance(other, str) else other
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = device("cpu")


def check_device(d) -> None:
    """Refuse a CUDA device where a function only makes CPU tensors (cuda_tensor.on_device adds it)."""
    if d is not None and device(d).type == "cuda":
        from . import cuda

        if not cuda.is_available():
            raise AssertionError("Torch not compiled with CUDA enabled")
        raise NotImplementedError(f"this function cannot create a tensor on {device(d)} yet: create it on the CPU "
                                  "and call .cuda()")


class Tensor:
    # numpy data in eager mode (a DeviceArray on CUDA); in tracing mode _data is None and _node is the graph value
    _data: np.ndarray | DeviceArray | None
    _node = None
    grad_fn = None
    _base: Tensor | None = None
    _grad_accumulator = None
    _retains_grad = False

    def __init__(self, *args, dtype=None, device=None):
        from .ops.creation import legacy_constructor

        check_device(device)
        t = legacy_constructor(dt.float32 if dtype is None else dtype, *args)
        self._init_from(t._data)

    @classmethod
    def _wrap(cls, data: np.ndarray, requires_grad: bool = False) -> Tensor:
        t = object.__new__(cls)
        t._init_from(data)  # requires_grad False: the setter's checks only matter for True
        if requires_grad:
            t.requires_grad = True
        if dispatch._tracer is not None:  # made inside a traced function: a constant of the graph
            dispatch._tracer.created[id(t)] = t
        return t

    def _init_from(self, data: np.ndarray) -> None:
        self._data = data
        self._dtype = dt.from_numpy(data.dtype)
        self._version = [0]  # shared with views, so in-place writes through a view are seen
        self._requires_grad = False
        self._grad = None
        self._hooks = []

    # ------------------------------------------------------------ attributes
    @property
    def shape(self) -> Size:
        return Size(self._data.shape if self._node is None else self._node.type.shape)

    @property
    def dtype(self) -> dt.DType:
        return self._dtype

    @property
    def device(self) -> device:
        return device("cuda", self._data.dev.ordinal) if self.is_cuda else CPU

    @property
    def is_cuda(self) -> bool:
        return isinstance(self._data, DeviceArray)

    @property
    def ndim(self) -> int:  # without building a Size: dtype promotion asks every operand per op
        return len(self._data.shape if self._node is None else self._node.type.shape)

    def dim(self) -> int:
        return self.ndim

    def ndimension(self) -> int:
        return self.ndim

    def size(self, dim: int | None = None):
        if dim is None:
            return self.shape
        from .compiler.primitives import _norm_dim

        return self.shape[_norm_dim(dim, self.ndim)]

    def numel(self) -> int:
        return self.shape.numel()

    nelement = numel

    def element_size(self) -> int:
        return self.dtype.itemsize

    def type(self, dtype=None):
        if dtype is None:
            return self.dtype.legacy_type
        if isinstance(dtype, str):
            dtype = next(d for d in dt.ALL if d.legacy_type == dtype)
        return self.to(dtype)

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and not self.dtype.is_floating_point:
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        if not value and self.grad_fn is not None:
            raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to use a "
                               "computed variable in a subgraph that doesn't require differentiation use "
                               "var_no_grad = var.detach().")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def grad(self) -> Tensor | None:
        if self.grad_fn is not None and not self._retains_grad and self._grad is None:
            warnings.warn("The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
                          "attribute won't be populated during autograd.backward(). If you indeed want the .grad "
                          "field to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. "
                          "If you access the non-leaf Tensor by mistake, make sure you access the leaf Tensor "
                          "instead.", UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None and value.shape != self.shape:
            raise RuntimeError(f"attempting to assign a gradient of size '{list(value.shape)}' to a tensor of size "
                               f"'{list(self.shape)}'. Please ensure that the gradient and the tensor are the same size")
        if dispatch._tracer is not None and self._node is None:
            dispatch._tracer.grad_written(self)  # a traced backward() sets an outside tensor's .grad
        self._grad = value

    @property
    def data(self) -> Tensor:
        return self.detach()

    @data.setter
    def data(self, new: Tensor) -> None:
        self._data = new._data
        self._dtype = new._dtype
        self._node = new._node
        if self._node is not None and dispatch._tracer is not None:
            dispatch._tracer.adopt(self)

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def mT(self) -> Tensor:
        return self.transpose(-2, -1)

    @property
    def is_tracer(self) -> bool:
        return self._node is not None

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __hash__(self) -> int:
        return id(self)

    # ------------------------------------------------------------ autograd
    def _accumulator(self) -> AccumulateGrad:
        if self._grad_accumulator is None:
            self._grad_accumulator = AccumulateGrad(self)
        return self._grad_accumulator

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None) -> None:
        from .autograd.functional import backward

        backward([self], None if gradient is None else [gradient], retain_graph, create_graph, inputs)

    def retain_grad(self) -> None:
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.is_leaf or self._retains_grad:
            return
        self._retains_grad = True

        def keep(grad):
            self._grad = grad.detach()._owned() if self._grad is None else self._grad + grad.detach()
        self.grad_fn.register_prehook(keep)

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def register_hook(self, hook):
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        node = self._accumulator() if self.grad_fn is None else self.grad_fn
        node.register_prehook(hook)
        return _RemovableHandle(node._pre_hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """hook(tensor) runs after backward has accumulated into this leaf's .grad."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        hooks = self._accumulator().post_hooks
        hooks.append(hook)
        return _RemovableHandle(hooks, hook)

    def detach(self) -> Tensor:
        out = object.__new__(type(self) if type(self) is Tensor else Tensor)
        out._data, out._dtype, out._node = self._data, self._dtype, self._node
        out._version = self._version
        out._base = self._base if self._base is not None else self
        out._requires_grad, out._grad, out._hooks = False, None, []
        if out._node is not None and dispatch._tracer is not None:
            dispatch._tracer.adopt(out)  # a graph break must give it values too (segments.py)
        return out

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self._requires_grad = False
        return self

    def _owned(self) -> Tensor:
        """This tensor if it owns a writable contiguous array, else a copy that does."""
        d = self._data
        if not isinstance(d, np.ndarray) or (d.flags.owndata and d.flags.writeable and d.flags.c_contiguous):
            return self
        return Tensor._wrap(np.array(d))

    # ------------------------------------------------------------ in place
    def _assign(self, result: Tensor) -> Tensor:
        """Make self hold `result`'s values: the one path every in-place op takes."""
        if self.is_leaf and self.requires_grad and is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        if result.dtype is not self.dtype:
            from .ops.elementwise import check_inplace_cast

            check_inplace_cast(result.dtype, self.dtype)
            with no_grad() if not result.requires_grad else nullcontext():
                result = result.to(self.dtype)
        if result.requires_grad and is_grad_enabled() and self._base is not None and self._base.requires_grad:
            raise RuntimeError("graphtorch does not yet support an in-place operation that needs grad on a view "
                               "of a tensor that requires grad; use an out-of-place operation instead.")
        if self._node is not None or result._node is not None:
            dispatch.current_tracer().assign(self, result)
        elif self.is_cuda or result.is_cuda:
            from .cuda_tensor import assign

            assign(self, result)
        else:
            try:
                src = result._data
                np.copyto(self._data, src if src.shape == self._data.shape else np.broadcast_to(src, self._data.shape))
            except ValueError as e:
                if "read-only" not in str(e):
                    raise
                raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers "
                                   "to a single memory location. Please clone() the tensor before performing the "
                                   "operation.") from None
        self._version[0] += 1
        if result.requires_grad and is_grad_enabled():
            self.grad_fn = result.grad_fn
            self._requires_grad = True
        return self

    # ------------------------------------------------------------ conversion
    def numpy(self, *, force: bool = False) -> np.ndarray:
        self._require_data("numpy()")
        self._require_cpu()
        if self.requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return self._data

    def item(self):
        self._require_data("item()")
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self._host().reshape(()).item()

    def tolist(self):
        self._require_data("tolist()")
        return self._host().tolist()

    def _require_cpu(self) -> None:
        if self.is_cuda:
            raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to copy the "
                            "tensor to host memory first.")

    def _host(self) -> np.ndarray:
        """The values in host memory: the array itself on the CPU, a copy from a CUDA device."""
        return self._data.to_host() if self.is_cuda else self._data

    def __array__(self, dtype=None, copy=None):
        self._require_data("__array__")
        self._require_cpu()
        return self._data if dtype is None else self._data.astype(dtype)

    def _require_data(self, what: str) -> None:
        if self._node is not None:
            dispatch.current_tracer().data_access(self, what)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.is_floating_point or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self):
        if self._node is not None:
            dispatch.current_tracer().data_access(self, "bool()")
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __repr__(self) -> str:
        return tensor_repr(self)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        if self._node is None and self.ndim == 0:  # torch formats 0-d tensors as their number
            return format(self.item(), spec)
        return format(str(self), spec)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __reduce_ex__(self, protocol):
        # DataLoader workers send tensors between processes: data only, never code
        return (_rebuild, (np.array(self._data), self.requires_grad))

    def __deepcopy__(self, memo):
        data = self._data.copy() if self.is_cuda else np.array(self._data)
        out = Tensor._wrap(data, self.requires_grad) if type(self) is Tensor else \
            type(self)(Tensor._wrap(data), self.requires_grad)
        memo[id(self)] = out
        return out


Tensor.__module__ = "graphtorch"


def _rebuild(data: np.ndarray, requires_grad: bool) -> Tensor:
    return Tensor._wrap(data, requires_grad)


class _RemovableHandle:
    def __init__(self, hooks: list, hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)
