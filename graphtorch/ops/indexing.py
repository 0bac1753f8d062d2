"""Indexing: basic slicing (views), advanced and boolean-mask indexing, index assignment.

Basic indices become one `slice` and one `reshape`. Integer index tensors become a `gather`
on a flattened dim; boolean masks become integer indices through `nonzero` (eager only: the
result's shape depends on the values).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np

from .. import dispatch
from .. import dtypes as dt
from ..autograd.grad_mode import is_grad_enabled, no_grad
from ..compiler.primitives import _norm_dim
from ..dispatch import apply, op
from ..tensor import Tensor
from .elementwise import add, broadcast_shapes, expand_to, lt, mul, where


def _as_index_tensor(i) -> Tensor | None:
    if isinstance(i, Tensor):
        return i
    if isinstance(i, (list, np.ndarray)):
        from .creation import tensor

        return tensor(i)
    return None


def _expand_ellipsis(index: tuple, ndim: int) -> tuple:
    used = sum(1 for i in index if i is not None and i is not Ellipsis and not (isinstance(i, Tensor) and i.dtype is dt.bool_))
    used += sum(i.ndim for i in index if isinstance(i, Tensor) and i.dtype is dt.bool_)
    if sum(1 for i in index if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if used > ndim:
        raise IndexError(f"too many indices for tensor of dimension {ndim}")
    k = next((n for n, i in enumerate(index) if i is Ellipsis), len(index))  # trailing dims: an implicit ...
    return index[:k] + (slice(None),) * (ndim - used) + index[k + 1:]


def _sequence_is_tuple(index) -> bool:
    """torch (like old numpy) reads x[[0, [1, 2]]] or x[[0, slice(1)]] as x[0, [1, 2]]."""
    return isinstance(index, list) and len(index) < 32 and any(
        isinstance(i, (list, tuple, Tensor, np.ndarray, slice)) or i is None or i is Ellipsis for i in index)


def _normalize(index) -> tuple:
    if _sequence_is_tuple(index):
        index = tuple(index)
    if not isinstance(index, tuple):
        index = (index,)
    out = []
    for i in index:
        t = _as_index_tensor(i) if not isinstance(i, (int, np.integer, slice, type(None))) and i is not Ellipsis else None
        if isinstance(i, bool):
            t = None
            out.append(i)
            continue
        out.append(t if t is not None else i)
    return tuple(out)


def getitem(x: Tensor, index) -> Tensor:
    index = _normalize(index)
    return _GETITEM[_grad_name(index)](x, index)


def _grad_name(index: tuple) -> str:
    """torch applies the indices one by one: the last one that does something names the grad_fn."""
    if any(isinstance(i, Tensor) and i.dtype is not dt.bool_ or isinstance(i, (Tensor, list, np.ndarray))
           for i in index):
        return "IndexBackward0"
    for i in reversed(index):
        if i is None or i is True:
            return "UnsqueezeBackward0"
        if isinstance(i, (int, np.integer)):
            return "SelectBackward0"
        if isinstance(i, slice) and i != slice(None):
            return "SliceBackward0"
    return "AliasBackward0"


def _getitem(x: Tensor, index: tuple) -> Tensor:
    if any(isinstance(i, bool) for i in index):
        from .creation import tensor

        # x[True] adds a dim like x[None]; x[False] adds it empty
        index = tuple(None if i is True else tensor(i) if isinstance(i, bool) else i for i in index)
        x = x.unsqueeze(0) if x.ndim == 0 and any(isinstance(i, Tensor) for i in index) else x
    index = _expand_ellipsis(index, x.ndim)
    x, rest = _basic(x, index)
    if not any(isinstance(i, Tensor) for i in rest):
        return x
    if x.is_cuda:  # torch accepts CPU index tensors for a CUDA tensor: they are copied over
        rest = tuple(i.to(x.device) if isinstance(i, Tensor) else i for i in rest)
    return _advanced(x, rest)


_GETITEM = {name: op(name, "getitem")(_getitem) for name in
            ("IndexBackward0", "UnsqueezeBackward0", "SelectBackward0", "SliceBackward0", "AliasBackward0")}


def _basic(x: Tensor, index: tuple):
    """Apply ints, slices and None; leave tensors for the advanced step (as full slices)."""
    starts, stops, steps, shape, rest = [], [], [], [], []
    dim = 0
    for i in index:
        if i is None:
            shape.append(1)
            rest.append(slice(None))
            continue
        n = x.shape[dim]
        if isinstance(i, (int, np.integer)):
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for dimension {dim} with size {n}")
            i %= n
            starts.append(i), stops.append(i + 1), steps.append(1)
        elif isinstance(i, slice):
            if i.step is not None and i.step <= 0:
                raise ValueError("step must be greater than zero")
            a, b, s = i.indices(n)
            b = max(a, b)
            starts.append(a), stops.append(b), steps.append(s)
            shape.append(max(0, -(-(b - a) // s)))
            rest.append(slice(None))
        elif isinstance(i, Tensor):
            starts.append(0), stops.append(n), steps.append(1)
            if i.dtype is dt.bool_:
                for k in range(i.ndim):
                    shape.append(x.shape[dim + k])
                    if k:
                        starts.append(0), stops.append(x.shape[dim + k]), steps.append(1)
                dim += i.ndim - 1
            else:
                shape.append(n)
            rest.append(i)
        else:
            raise IndexError("only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables are "
                             "valid indices (got " + type(i).__name__ + ")")
        dim += 1
    if (starts, stops, steps) != ([0] * x.ndim, list(x.shape), [1] * x.ndim):
        x = apply("slice", x, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    if tuple(shape) != tuple(x.shape):
        x = apply("reshape", x, shape=tuple(shape))
    return x, rest


def _advanced(x: Tensor, index: list) -> Tensor:
    """numpy/PyTorch advanced indexing over the dims that hold index tensors."""
    index = _masks_to_indices(x, index)
    dims = [d for d, i in enumerate(index) if isinstance(i, Tensor)]
    for d in dims:
        if index[d].dtype.is_floating_point:
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    idx_shape = broadcast_shapes(*(index[d].shape for d in dims))
    # move indexed dims to the front, flatten them to one, and gather along it
    rest = [d for d in range(x.ndim) if d not in dims]
    moved = x.permute(*dims, *rest) if dims != list(range(len(dims))) else x
    sizes = [x.shape[d] for d in dims]
    flat = moved.reshape(math.prod(sizes), *[x.shape[d] for d in rest])
    linear = None
    for d, size in zip(dims, sizes):
        i = index[d].to(dt.int64)
        _check_bounds(i, size, d)
        i = where(lt(i, 0), add(i, size), i)
        stride = math.prod(sizes[dims.index(d) + 1:])
        term = expand_to(mul(i, stride) if stride != 1 else i, idx_shape)
        linear = term if linear is None else add(linear, term)
    out = take_dim0(flat, linear.reshape(-1)).reshape(*idx_shape, *[x.shape[d] for d in rest])
    contiguous = dims == list(range(dims[0], dims[0] + len(dims)))
    if contiguous and dims[0] > 0:  # numpy keeps adjacent index dims in place
        k = len(idx_shape)
        order = list(range(k, k + dims[0])) + list(range(k)) + list(range(k + dims[0], out.ndim))
        out = out.permute(*order)
    return out


def _check_bounds(i: Tensor, size: int, dim: int) -> None:
    if isinstance(i._data, np.ndarray) and i.numel():  # on a device the gather kernel checks
        bad = i._data[(i._data < -size) | (i._data >= size)]
        if bad.size:
            raise IndexError(f"index {bad.flat[0]} is out of bounds for dimension {dim} with size {size}")


def _masks_to_indices(x: Tensor, index: list) -> list:
    out = []
    for i in index:
        if isinstance(i, Tensor) and i.dtype in (dt.bool_, dt.uint8):
            d = len(out)
            if tuple(i.shape) != tuple(x.shape[d:d + i.ndim]):
                raise IndexError(f"The shape of the mask {list(i.shape)} at index {d} does not match the shape of "
                                 f"the indexed tensor {list(x.shape)} at index {d}")
            coords = nonzero(i)
            out.extend(coords[:, k] for k in range(i.ndim))
        else:
            out.append(i)
    return out


def take_dim0(x: Tensor, idx: Tensor) -> Tensor:
    """x[idx] for a 1-D int64 idx: a gather with the index broadcast over the other dims."""
    shape = (idx.shape[0], *x.shape[1:])
    return apply("gather", x, expand_to(idx.reshape(-1, *([1] * (x.ndim - 1))), shape), dim=0)


def nonzero(input, *, as_tuple: bool = False):
    out = apply("nonzero", input)
    if as_tuple:
        return tuple(out[:, k] for k in range(input.ndim)) if input.ndim else (out.reshape(-1),)
    return out


def argwhere(input) -> Tensor:
    return nonzero(input)


def masked_select(input, mask) -> Tensor:
    shape = broadcast_shapes(input.shape, mask.shape)
    return getitem(expand_to(input, shape), expand_to(mask, shape))


@op("IndexSelectBackward0")
def index_select(input, dim: int, index) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    _check_bounds(index, input.shape[d], d)
    moved = input.movedim(d, 0)
    return take_dim0(moved, index.reshape(-1).to(dt.int64)).movedim(0, d)


@op("GatherBackward0")
def gather(input, dim: int, index, *, sparse_grad: bool = False) -> Tensor:
    return apply("gather", input, index, dim=_norm_dim(dim, input.ndim))


def take_along_dim(input, indices, dim: int) -> Tensor:
    return gather(input, dim, indices)


@op("ScatterAddBackward0")
def scatter_add(input, dim: int, index, src) -> Tensor:
    return apply("scatter_add", input, index, src, dim=_norm_dim(dim, input.ndim))


def index_add(input, dim: int, index, source, *, alpha=1) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    shape = list(source.shape)
    idx = expand_to(index.reshape(*[-1 if k == d else 1 for k in range(input.ndim)]), tuple(shape))
    return scatter_add(input, d, idx, source if alpha == 1 else mul(source, alpha))


def one_hot(tensor, num_classes: int = -1) -> Tensor:
    from .elementwise import eq

    if tensor.dtype is not dt.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        num_classes = int(tensor.max().item()) + 1
    classes = apply("iota", shape=(*tensor.shape, num_classes), dim=tensor.ndim, dtype=dt.int64)
    return eq(expand_to(tensor.unsqueeze(-1), classes.shape), classes).to(dt.int64)


def _triangle_mask(input: Tensor, diagonal: int, lower: bool, name: str) -> Tensor:
    """True where (row i, column j) of the last two dims is kept: j - i <= diagonal (lower) or >= (upper)."""
    from .elementwise import ge, le, sub

    if input.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
    shape = tuple(input.shape[-2:])
    offset = sub(apply("iota", shape=shape, dim=1, dtype=dt.int64), apply("iota", shape=shape, dim=0, dtype=dt.int64))
    keep = le(offset, int(diagonal)) if lower else ge(offset, int(diagonal))
    return keep.to(input.device) if input.is_cuda else keep


def _zero(input: Tensor) -> Tensor:
    from .elementwise import scalar

    return scalar(0, input.dtype)


@op()
def tril(input, diagonal: int = 0) -> Tensor:
    return where(_triangle_mask(input, diagonal, True, "tril"), input, _zero(input))


@op()
def triu(input, diagonal: int = 0) -> Tensor:
    return where(_triangle_mask(input, diagonal, False, "triu"), input, _zero(input))


# ---------------------------------------------------------------- assignment


def setitem(x: Tensor, index, value) -> None:
    """x[index] = value, in place."""
    if x.is_leaf and x.requires_grad and is_grad_enabled():  # torch writes through a view of x
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place operation.")
    value_t = value if isinstance(value, Tensor) else None
    needs_grad = is_grad_enabled() and (x.requires_grad or (value_t is not None and value_t.requires_grad))
    if x._node is None and not needs_grad and not x.is_cuda and dispatch._tracer is None:
        _setitem_numpy(x, index, value)
        return
    # with autograd, tracing or on a device: rebuild the whole tensor from flat positions, then assign
    from ..tracer import paused

    traced_index = any(isinstance(i, Tensor) and i._node is not None for i in _index_items(index))
    with no_grad(), nullcontext() if traced_index else paused():  # positions are values, not graph ops
        flat = Tensor._wrap(np.arange(x.numel(), dtype=np.int64).reshape(x.shape)).to(x.device)
        positions = getitem(flat, index)
    positions._require_data("indexed assignment with a traced index")  # a graph break when traced
    flat_pos = positions.reshape(-1)
    written = np.zeros(x.numel(), dtype=np.bool_)
    written[positions._host().reshape(-1)] = True
    from .creation import zeros

    v = value_t.to(x.dtype) if value_t is not None else expand_to(_scalar_tensor(value, x.dtype), ())
    v = expand_to(v.to(x.device), tuple(positions.shape)).reshape(-1)
    placed = scatter_add(zeros(x.numel(), dtype=x.dtype, device=x.device), 0, flat_pos, v)
    # where saves only the mask: x itself is not saved, so overwriting it below keeps backward valid
    result = where(Tensor._wrap(written).to(x.device), placed, x.reshape(-1)).reshape(*x.shape)
    x._assign(result)


def _index_items(index) -> tuple:
    return index if isinstance(index, tuple) else (index,)


def _scalar_tensor(value, dtype):
    from .elementwise import scalar

    return scalar(value, dtype)


def _setitem_numpy(x: Tensor, index, value) -> None:
    npindex = _numpy_index(_normalize(index))
    data = value._data if isinstance(value, Tensor) else value
    try:
        x._data[npindex] = data
    except IndexError as e:
        raise IndexError(str(e).replace("axis", "dimension")) from None
    except ValueError as e:
        if "read-only" in str(e):
            raise RuntimeError("unsupported operation: more than one element of the written-to tensor refers to a "
                               "single memory location. Please clone() the tensor before performing the operation.") from None
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(np.shape(data))} cannot be broadcast to "
                           f"indexing result of shape {list(x._data[npindex].shape)}") from None
    x._version[0] += 1


def _numpy_index(index: tuple):
    return tuple(i._data if isinstance(i, Tensor) else i for i in index)
