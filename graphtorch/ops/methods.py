"""Tensor methods and operators: bindings of the functions in graphtorch.ops onto Tensor.

In-place methods (`add_`, `clamp_`, ...) are the out-of-place op followed by `Tensor._assign`,
so the semantics of each op exist once.
"""

from __future__ import annotations

import numpy as np

from .. import dispatch
from .. import dtypes as dt
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..autograd.graph import Node, keep_originals
from ..cuda_tensor import to_device
from ..dispatch import attach_custom
from ..tensor import Tensor
from . import creation, elementwise, indexing, linalg, random, reduction, shape, sorting
from .elementwise import broadcast_shapes, constant, expand_to

E, R, S, L, I = elementwise, reduction, shape, linalg, indexing


def _bind(module, *names: str) -> None:
    for name in names:
        setattr(Tensor, name, getattr(module, name))


_bind(E, "add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid",
      "relu", "clamp", "clip", "clamp_min", "clamp_max", "sign", "round", "floor", "ceil", "trunc", "reciprocal",
      "rsqrt", "log1p", "expm1", "log2", "log10", "square", "maximum", "minimum", "masked_fill", "eq", "ne", "lt",
      "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf", "isfinite",
      "allclose", "isclose", "equal", "floor_divide", "remainder", "fmod", "erf", "true_divide", "multiply",
      "subtract", "divide", "negative", "absolute", "greater", "less", "greater_equal", "less_equal", "not_equal")
_bind(R, "sum", "mean", "max", "min", "argmax", "argmin", "prod", "std", "var", "norm", "cumsum", "any", "all",
      "amax", "amin", "logsumexp", "softmax", "log_softmax", "count_nonzero", "cumprod", "cummax", "cummin")
_bind(S, "view", "view_as", "reshape", "reshape_as", "permute", "transpose", "t", "squeeze", "unsqueeze", "flatten",
      "unflatten", "expand", "expand_as", "narrow", "contiguous", "clone", "repeat", "split", "chunk", "unbind",
      "flip", "movedim", "tile", "swapaxes", "swapdims", "ravel", "broadcast_to", "roll", "diag", "diagonal")
_bind(L, "matmul", "mm", "bmm", "dot", "mv", "inverse", "outer")
_bind(sorting, "sort", "argsort", "msort", "topk", "kthvalue", "median")
_bind(I, "gather", "scatter_add", "index_select", "masked_select", "nonzero", "index_add", "argwhere", "tril", "triu")


def _det(self) -> Tensor:
    from ..linalg import det

    return det(self)


def _where(self, condition, other):
    return E.where(condition, self, other)


def is_contiguous(self, memory_format=None) -> bool:
    return self._data is None or self.is_cuda or bool(self._data.flags.c_contiguous)


def stride(self, dim: int | None = None):
    if self.is_cuda:  # device arrays are always contiguous
        strides = tuple(int(np.prod(self.shape[d + 1:], dtype=np.int64)) for d in range(self.ndim))
    else:
        strides = tuple(s // self.dtype.itemsize for s in self._data.strides)
    return strides if dim is None else strides[dim]


def data_ptr(self) -> int:
    return self._data.ptr if self.is_cuda else self._data.__array_interface__["data"][0]


def parse_to(args, kwargs) -> tuple:
    """(dtype, device) from the arguments of Tensor.to / Module.to, in any of their forms."""
    dtype = kwargs.get("dtype")
    device = kwargs.get("device")
    for a in args:
        if isinstance(a, dt.DType):
            dtype = a
        elif isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif a is not None:
            device = a
    return dtype, device


def to(self, *args, **kwargs) -> Tensor:
    dtype, device = parse_to(args, kwargs)
    out = self if device is None else to_device(self, device)
    if dtype is None or dtype is out.dtype:
        return out.clone() if kwargs.get("copy") and out is self else out
    return E.cast(out, dtype)


def _converter(dtype):
    def fn(self, memory_format=None):
        return to(self, dtype)
    return fn


def type_as(self, other) -> Tensor:
    return to(self, other.dtype)


def cpu(self) -> Tensor:
    return to_device(self, "cpu")


def cuda(self, device=None, non_blocking=False) -> Tensor:
    return to_device(self, "cuda" if device is None else device)


def new_tensor(self, data, dtype=None, requires_grad=False) -> Tensor:
    return creation.tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)


def _new(fn):
    def method(self, *size, dtype=None, device=None, requires_grad=False):
        return fn(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)
    return method


def new_full(self, size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return creation.full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad)


# ---------------------------------------------------------------- in place


def _inplace(fn):
    def method(self, *args, **kwargs):
        first = Node.created
        result = fn(self, *args, **kwargs)
        keep_originals(result.grad_fn, first, self)
        return self._assign(result)
    method.__name__ = fn.__name__ + "_"
    return method


for _name in ["add", "sub", "mul", "div", "pow", "neg", "abs", "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid",
              "relu", "clamp", "clip", "clamp_min", "clamp_max", "sign", "round", "floor", "ceil", "trunc",
              "reciprocal", "rsqrt", "square", "masked_fill", "floor_divide", "remainder", "fmod", "log1p", "expm1",
              "logical_not", "erf", "maximum", "minimum"]:
    setattr(Tensor, _name + "_", _inplace(getattr(E, _name)))
for _name in ["index_add", "scatter_add", "tril", "triu"]:
    setattr(Tensor, _name + "_", _inplace(getattr(I, _name)))
for _name in ["cumsum", "cumprod"]:
    setattr(Tensor, _name + "_", _inplace(getattr(R, _name)))


def _overwriting(self, value: Tensor, name: str) -> Tensor:
    """`value` to be written over all of self: when self has history, the old values get a zero
    gradient (torch's FillBackward0/ZeroBackward0), rather than the write being invisible to autograd."""
    if not (is_grad_enabled() and self.requires_grad and not self.is_leaf) or value.requires_grad:
        return value
    out = value.detach()

    def vjp(grad, _saved):
        return [creation.zeros_like(self)]
    attach_custom(out, name, vjp, [], [self])
    return out


def fill_(self, value, _name: str = "FillBackward0") -> Tensor:
    v = expand_to(value.to(self.dtype), self.shape) if isinstance(value, Tensor) else \
        constant(value, self.dtype, self.shape)
    return self._assign(_overwriting(self, v, _name))


def zero_(self) -> Tensor:
    return fill_(self, 0, "ZeroBackward0")


def copy_(self, src, non_blocking: bool = False) -> Tensor:
    broadcast_shapes(self.shape, src.shape)
    src = src.to(device=self.device, dtype=self.dtype)  # torch copies across devices
    return self._assign(_overwriting(self, expand_to(src, tuple(self.shape)), "CopyBackwards"))


def _metadata_inplace(fn):
    """unsqueeze_/squeeze_/t_/transpose_: self becomes the view (same memory, new shape)."""
    def method(self, *args):
        out = fn(self, *args)
        self._data, self._node = out._data, out._node
        if self._node is not None and dispatch._tracer is not None:
            dispatch._tracer.adopt(self)  # a graph break must give it values too (segments.py)
        if out.grad_fn is not None:
            self.grad_fn = out.grad_fn
        return self
    method.__name__ = fn.__name__ + "_"
    return method


def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator=None) -> Tensor:
    with no_grad():
        u = random.rand(*self.shape, dtype=self.dtype, generator=generator)
        return self._assign(E.add(E.mul(u, b - a), a))


def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
    with no_grad():
        z = random.normal_sample(tuple(self.shape), self.dtype, generator)
        return self._assign(E.add(E.mul(z, std), mean))


def bernoulli_(self, p: float = 0.5, *, generator=None) -> Tensor:
    with no_grad():
        u = random.rand(*self.shape, dtype=dt.float64, generator=generator)
        return self._assign(E.lt(u, p).to(self.dtype))


def addcmul(self, tensor1, tensor2, *, value=1) -> Tensor:
    return E.add(self, E.mul(E.mul(tensor1, tensor2), value))


def addcdiv(self, tensor1, tensor2, *, value=1) -> Tensor:
    return E.add(self, E.mul(E.div(tensor1, tensor2), value))


def lerp(self, end, weight) -> Tensor:
    return E.add(self, E.mul(E.sub(end, self), weight))


def _setitem(self, index, value) -> None:
    I.setitem(self, index, value)


def _rpow(self, other):
    return E.pow(other, self)


def _invert(self):
    if self.dtype is not dt.bool_:
        raise TypeError("~ (bitwise_not) is supported for bool tensors only in graphtorch")
    return E.logical_not(self)


for _name, _fn in {
    "__add__": E.add, "__radd__": lambda s, o: E.add(o, s), "__sub__": E.sub, "__rsub__": E.rsub,
    "__mul__": E.mul, "__rmul__": lambda s, o: E.mul(o, s), "__truediv__": E.div,
    "__rtruediv__": lambda s, o: E.div(o, s), "__floordiv__": E.floor_divide,
    "__rfloordiv__": lambda s, o: E.floor_divide(o, s), "__mod__": E.remainder, "__rmod__": lambda s, o: E.remainder(o, s), "__pow__": E.pow,
    "__rpow__": _rpow, "__matmul__": L.matmul, "__rmatmul__": lambda s, o: L.matmul(o, s),
    "__neg__": E.neg, "__abs__": E.abs, "__pos__": lambda s: s, "__invert__": _invert,
    "__and__": E.logical_and, "__or__": E.logical_or, "__xor__": E.logical_xor,
    "__rand__": lambda s, o: E.logical_and(o, s), "__ror__": lambda s, o: E.logical_or(o, s),
    "__eq__": E.eq, "__ne__": E.ne, "__lt__": E.lt, "__le__": E.le, "__gt__": E.gt, "__ge__": E.ge,
    "__getitem__": I.getitem, "__setitem__": _setitem,
    "__iadd__": Tensor.add_, "__isub__": Tensor.sub_, "__imul__": Tensor.mul_, "__itruediv__": Tensor.div_,
    "__ipow__": Tensor.pow_, "__ifloordiv__": Tensor.floor_divide_, "__imod__": Tensor.remainder_,
    "where": _where, "det": _det, "is_contiguous": is_contiguous, "stride": stride, "data_ptr": data_ptr, "to": to,
    "float": _converter(dt.float32), "double": _converter(dt.float64), "half": _converter(dt.float16),
    "long": _converter(dt.int64), "int": _converter(dt.int32), "short": _converter(dt.int16),
    "char": _converter(dt.int8), "byte": _converter(dt.uint8), "bool": _converter(dt.bool_),
    "type_as": type_as, "cpu": cpu, "cuda": cuda, "new_tensor": new_tensor, "new_full": new_full,
    "new_zeros": _new(creation.zeros), "new_ones": _new(creation.ones), "new_empty": _new(creation.empty),
    "fill_": fill_, "zero_": zero_, "copy_": copy_, "uniform_": uniform_, "normal_": normal_,
    "bernoulli_": bernoulli_, "addcmul": addcmul, "addcdiv": addcdiv, "lerp": lerp,
    "addcmul_": _inplace(addcmul), "addcdiv_": _inplace(addcdiv), "lerp_": _inplace(lerp),
    "unsqueeze_": _metadata_inplace(S.unsqueeze), "squeeze_": _metadata_inplace(S.squeeze),
    "t_": _metadata_inplace(S.t), "transpose_": _metadata_inplace(S.transpose),
}.items():
    setattr(Tensor, _name, _fn)

