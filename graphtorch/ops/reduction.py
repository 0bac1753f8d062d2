"""Reductions and the ops built from them: sum/mean/max/..., std/var/norm, softmax."""

from __future__ import annotations

import math
from collections import namedtuple

from .. import dtypes as dt
from ..compiler.primitives import _norm_dim, _pretty
from ..dispatch import apply, op
from ..tensor import Tensor
from . import _eager_softmax
from .elementwise import cast, div, exp, expand_to, log, mul, scalar, sqrt, sub


def _return_type(name: str, fields: tuple[str, str] = ("values", "indices")) -> type:
    base = namedtuple(name, fields)

    def __repr__(self):
        return f"torch.return_types.{name}(\n" + ",\n".join(f"{f}={v!r}" for f, v in zip(fields, self)) + ")"

    return type(name, (base,), {"__repr__": __repr__, "__str__": __repr__, "__slots__": ()})


_RETURN_TYPES = {name: _return_type(name) for name in ("max", "min", "sort", "topk", "mode", "kthvalue", "median",
                                                       "cummax", "cummin")}
_RETURN_TYPES["slogdet"] = _return_type("slogdet", ("sign", "logabsdet"))


def return_types(name: str, first, second):
    """torch.return_types.<name>: a named pair, (values, indices) for most."""
    return _RETURN_TYPES[name](first, second)


def _dims(input, dim) -> tuple:
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(input.ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    out = tuple(sorted({_norm_dim(d, input.ndim) for d in dims}))
    return out if input.ndim else ()


def sum(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    # torch: SumBackward0 for the full sum, SumBackward1 with dims
    return (_sum_all if dim is None else _sum_dims)(input, dim, keepdim, dtype=dtype)


def _sum(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    if dtype is None and not input.dtype.is_floating_point:
        dtype = dt.int64  # sums of bool and integers are int64, as in torch
    x = cast(input, dtype) if dtype is not None else input
    return apply("sum", x, dims=_dims(input, dim), keepdim=keepdim)


_sum_all = op("SumBackward0", "sum")(_sum)
_sum_dims = op("SumBackward1", "sum")(_sum)


def mean(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    return (_mean_all if dim is None else _mean_dims)(input, dim, keepdim, dtype=dtype)


def _mean(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a floating point or "
                           f"complex dtype. Got: {_pretty(input.dtype)}")
    dims = _dims(input, dim)
    n = math.prod(input.shape[d] for d in dims)
    total = apply("sum", input, dims=dims, keepdim=keepdim)
    return mul(total, 1.0 / n if n else float("nan"))


_mean_all = op("MeanBackward0", "mean")(_mean)
_mean_dims = op("MeanBackward1", "mean")(_mean)


@op("ProdBackward0")
def prod(input, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    if dtype is None and not input.dtype.is_floating_point:
        dtype = dt.int64
    x = cast(input, dtype) if dtype is not None else input
    return apply("prod", x, dims=_dims(input, dim) if dim is not None else tuple(range(input.ndim)), keepdim=keepdim)


def _extreme(name, prim, argprim):
    def fn(input, dim=None, keepdim: bool = False):
        if isinstance(dim, Tensor):  # torch.max(a, b) is maximum
            from .elementwise import maximum, minimum

            return (maximum if name == "max" else minimum)(input, dim)
        if dim is None:
            if input.numel() == 0:
                raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                                   "Specify the reduction dim with the 'dim' argument.")
            return apply(prim, input, dims=tuple(range(input.ndim)), keepdim=False)
        d = _norm_dim(dim, input.ndim)
        if input.ndim == 0:
            return return_types(name, input.clone(), apply(argprim, input, dim=d, keepdim=keepdim))
        # values gathered at the indices: the gradient goes to that one element, as in torch
        indices = apply(argprim, input, dim=d, keepdim=True)
        values = apply("gather", input, indices, dim=d)
        if not keepdim:
            values, indices = values.squeeze(d), indices.squeeze(d)
        return return_types(name, values, indices)
    fn.__name__ = name
    return fn


def _by_dim(name, prim, argprim):
    # torch: MaxBackward1 for the full reduction, MaxBackward0 for max(dim)
    full = op(f"{name.capitalize()}Backward1", name)(_extreme(name, prim, argprim))
    along = op(f"{name.capitalize()}Backward0", name)(_extreme(name, prim, argprim))

    def fn(input, dim=None, keepdim: bool = False):
        if isinstance(dim, Tensor):  # torch.max(a, b) is maximum, with its own grad_fn name
            from .elementwise import maximum, minimum

            return (maximum if name == "max" else minimum)(input, dim)
        return (full if dim is None else along)(input, dim, keepdim)
    fn.__name__ = name
    return fn


max = _by_dim("max", "max", "argmax")
min = _by_dim("min", "min", "argmin")


def amax(input, dim=(), keepdim: bool = False) -> Tensor:
    return apply("max", input, dims=_dims(input, dim), keepdim=keepdim)


def amin(input, dim=(), keepdim: bool = False) -> Tensor:
    return apply("min", input, dims=_dims(input, dim), keepdim=keepdim)


def _arg(prim):
    def fn(input, dim=None, keepdim: bool = False) -> Tensor:
        if dim is None:
            flat = input.reshape(-1)
            out = apply(prim, flat, dim=0, keepdim=False)
            return out.reshape([1] * input.ndim) if keepdim else out
        return apply(prim, input, dim=_norm_dim(dim, input.ndim), keepdim=keepdim)
    fn.__name__ = prim
    return fn


argmax = _arg("argmax")
argmin = _arg("argmin")


def any(input, dim=None, keepdim: bool = False) -> Tensor:
    out = apply("max", cast(input, dt.bool_), dims=_dims(input, dim), keepdim=keepdim)
    return cast(out, dt.uint8) if input.dtype is dt.uint8 else out  # torch keeps uint8


def all(input, dim=None, keepdim: bool = False) -> Tensor:
    out = apply("min", cast(input, dt.bool_), dims=_dims(input, dim), keepdim=keepdim)
    return cast(out, dt.uint8) if input.dtype is dt.uint8 else out


def count_nonzero(input, dim=None) -> Tensor:
    from .elementwise import ne

    return sum(ne(input, 0), dim)


@op("VarBackward0")
def var(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    if isinstance(dim, bool):  # var(x, False): the old positional `unbiased`
        unbiased, dim = dim, None
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    dims = _dims(input, dim)
    n = math.prod(input.shape[d] for d in dims)
    centered = sub(input, mean(input, dims, keepdim=True))
    total = apply("sum", mul(centered, centered), dims=dims, keepdim=keepdim)
    return div(total, builtin_max(n - correction, 0))


def builtin_max(a, b):
    return a if a > b else b


@op("StdBackward0")
def std(input, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    return sqrt(var(input, dim, unbiased, keepdim, correction=correction))


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


@op("LinalgVectorNormBackward0")
def norm(input, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    return vector_norm(input, 2 if p == "fro" else p, dim, keepdim, dtype=dtype)


def vector_norm(input, ord=2, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """torch.linalg.vector_norm: max|x| for inf, min|x| for -inf, the count of non-zeros for 0,
    else (sum |x|^ord)^(1/ord)."""
    from .elementwise import abs, pow

    if dtype is not None:
        input = cast(input, dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError("linalg.vector_norm: Expected a floating point or complex tensor as input. "
                           f"Got {_pretty(input.dtype)}")
    dims = dim if dim is not None else ()
    if ord == float("inf"):
        return amax(abs(input), dims, keepdim)
    if ord == float("-inf"):
        return amin(abs(input), dims, keepdim)
    if ord == 0:
        return _count_nonzero_norm(input, dim, keepdim)
    if ord == 2:
        return _sqrt_zero_subgradient(sum(mul(input, input), dim, keepdim))
    if ord == 1:
        return sum(abs(input), dim, keepdim)
    return pow(sum(pow(abs(input), ord), dim, keepdim), 1.0 / ord)


def _sqrt_zero_subgradient(s: Tensor) -> Tensor:
    """sqrt(s) whose gradient is 0 (not NaN) where s == 0: torch's 2-norm subgradient at the origin."""
    from .elementwise import ne, scalar, where

    nonzero = ne(s, 0)
    return where(nonzero, sqrt(where(nonzero, s, scalar(1, s.dtype))), scalar(0, s.dtype))


def _count_nonzero_norm(input: Tensor, dim, keepdim: bool) -> Tensor:
    """The 0-"norm". Like torch, it has history when input does, but no gradient reaches input."""
    from ..autograd.grad_mode import is_grad_enabled
    from ..dispatch import attach_custom
    from .elementwise import ne

    out = sum(cast(ne(input, 0), input.dtype), dim, keepdim)
    if is_grad_enabled() and input.requires_grad:
        attach_custom(out, "LinalgVectorNormBackward0", lambda grad, saved: [None], [], [input])
    return out


def _scan(prim: str, input, dim: int, dtype) -> Tensor:
    """cumsum and cumprod: integers and bools accumulate in int64, as torch's."""
    if dtype is None and not input.dtype.is_floating_point:
        dtype = dt.int64
    x = cast(input, dtype) if dtype is not None else input
    return apply(prim, x, dim=_norm_dim(dim, input.ndim))


@op("CumsumBackward0")
def cumsum(input, dim: int, *, dtype=None) -> Tensor:
    return _scan("cumsum", input, dim, dtype)


@op("CumprodBackward0")
def cumprod(input, dim: int, *, dtype=None) -> Tensor:
    return _scan("cumprod", input, dim, dtype)


def _cumextreme(input: Tensor, dim: int, largest: bool, name: str):
    d = _norm_dim(dim, input.ndim)
    idx = apply("cumextreme_index", input, dim=d, largest=largest)
    return return_types(name, apply("gather", input, idx, dim=d) if input.ndim else input.clone(), idx)


@op("CummaxBackward0")
def cummax(input, dim: int):
    return _cumextreme(input, dim, True, "cummax")


@op("CumminBackward0")
def cummin(input, dim: int):
    return _cumextreme(input, dim, False, "cummin")


@op("LogsumexpBackward0")
def logsumexp(input, dim, keepdim: bool = False) -> Tensor:
    dims = _dims(input, dim)
    m = apply("max", input, dims=dims, keepdim=True)
    from .elementwise import isinf, where

    m = where(isinf(m), scalar(0.0, m.dtype), m).detach()
    out = log(apply("sum", exp(sub(input, m)), dims=dims, keepdim=True))
    out = out + m
    return out if keepdim else out.squeeze(dims) if dims else out


def _softmax_dim(input, dim):
    if dim is None:  # the implicit choice of old torch versions
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return _norm_dim(dim, input.ndim)


@op("SoftmaxBackward0")
def softmax(input, dim=None, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError(f'"softmax_lastdim_kernel_impl" not implemented for \'{_pretty(input.dtype)}\'')
    d = _softmax_dim(input, dim)
    if input.ndim and d == input.ndim - 1:  # one row kernel (compiler/primitives.py)
        return apply("softmax", input, log=False)
    shifted = sub(input, apply("max", input, dims=(d,), keepdim=True).detach())
    e = exp(shifted)
    return div(e, expand_to(apply("sum", e, dims=(d,), keepdim=True), e.shape))


@op("LogSoftmaxBackward0")
def log_softmax(input, dim=None, dtype=None) -> Tensor:
    if dtype is not None:
        input = cast(input, dtype)
    if not input.dtype.is_floating_point:
        raise RuntimeError(f'"log_softmax_lastdim_kernel_impl" not implemented for \'{_pretty(input.dtype)}\'')
    d = _softmax_dim(input, dim)
    if _eager_softmax.applies(input):
        return _eager_softmax.log_softmax(input, d)  # one op instead of six (performance only)
    if input.ndim and d == input.ndim - 1:  # traced or on CUDA: one row kernel
        return apply("softmax", input, log=True)
    shifted = sub(input, apply("max", input, dims=(d,), keepdim=True).detach())
    return sub(shifted, log(apply("sum", exp(shifted), dims=(d,), keepdim=True)))
