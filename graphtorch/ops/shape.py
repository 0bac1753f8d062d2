"""Views and layout: view/reshape, permute/transpose, squeeze/unsqueeze, expand, cat/stack/split."""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from ..compiler.primitives import _norm_dim
from ..dispatch import apply, op
from ..tensor import Tensor
from .elementwise import cast, expand_to


def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def infer_shape(shape: tuple, numel: int) -> tuple:
    """Resolve one -1 in `shape`, with PyTorch's errors."""
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    if math.prod(shape) != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def reshape(input, *shape) -> Tensor:
    shape = infer_shape(_shape_arg(shape), input.numel())
    return apply("reshape", input, shape=shape)


@op("ViewBackward0")
def view(input, *shape) -> Tensor:
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list, np.integer)):
        return input.to(shape[0])  # view(dtype): only same-size reinterpretation in torch; we convert
    shape = infer_shape(_shape_arg(shape), input.numel())
    if isinstance(input._data, np.ndarray):  # device arrays are contiguous: every view is valid
        probe = input._data.view()
        try:
            probe.shape = shape  # numpy refuses exactly when strides cannot express the view
        except AttributeError:
            raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one "
                               "dimension spans across two contiguous subspaces). Use .reshape(...) instead.") from None
    return apply("reshape", input, shape=shape)


def view_as(input, other) -> Tensor:
    return view(input, *other.shape)


def reshape_as(input, other) -> Tensor:
    return reshape(input, *other.shape)


@op("PermuteBackward0")
def permute(input, *dims) -> Tensor:
    dims = _shape_arg(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
                           f"length of the desired ordering of dimensions i.e. input.dim() = {input.ndim} is not "
                           f"equal to len(dims) = {len(dims)}")
    dims = tuple(_norm_dim(d, input.ndim) for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return apply("permute", input, dims=dims)


@op("TransposeBackward0")
def transpose(input, dim0: int, dim1: int) -> Tensor:
    if input.ndim == 0:
        return input.view(())
    dims = list(range(input.ndim))
    a, b = _norm_dim(dim0, input.ndim), _norm_dim(dim1, input.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    return apply("permute", input, dims=tuple(dims))


swapaxes = swapdims = transpose


@op("TBackward0")
def t(input) -> Tensor:
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return transpose(input, 0, 1) if input.ndim == 2 else input.view(tuple(input.shape))


def movedim(input, source: int, destination: int) -> Tensor:
    dims = list(range(input.ndim))
    s = dims.pop(_norm_dim(source, input.ndim))
    dims.insert(_norm_dim(destination, input.ndim), s)
    return permute(input, *dims)


@op("SqueezeBackward0")
def squeeze(input, dim=None) -> Tensor:
    if dim is None:
        dims = {i for i, s in enumerate(input.shape) if s == 1}
    else:
        dims = {_norm_dim(d, input.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        dims = {d for d in dims if input.ndim and input.shape[d] == 1}
    return apply("reshape", input, shape=tuple(s for i, s in enumerate(input.shape) if i not in dims))


@op("UnsqueezeBackward0")
def unsqueeze(input, dim: int) -> Tensor:
    d = _norm_dim(dim, input.ndim + 1)
    shape = list(input.shape)
    shape.insert(d, 1)
    return apply("reshape", input, shape=tuple(shape))


def flatten(input, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if input.ndim == 0:
        return reshape(input, 1)
    a, b = _norm_dim(start_dim, input.ndim), _norm_dim(end_dim, input.ndim)
    if a > b:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = tuple(input.shape)
    return reshape(input, *shape[:a], math.prod(shape[a:b + 1]), *shape[b + 1:])


def unflatten(input, dim: int, sizes) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    shape = tuple(input.shape)
    inner = infer_shape(tuple(sizes), shape[d])
    return reshape(input, *shape[:d], *inner, *shape[d + 1:])


def ravel(input) -> Tensor:
    return reshape(input, -1)


@op("ExpandBackward0")
def expand(input, *sizes) -> Tensor:
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(f"expand(torch.FloatTensor{{{list(input.shape)}}}, size={list(sizes)}): the number of "
                           f"sizes provided ({len(sizes)}) must be greater or equal to the number of dimensions in "
                           f"the tensor ({input.ndim})")
    lead = len(sizes) - input.ndim
    shape = tuple(input.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    for i, n in enumerate(input.shape):
        if n != 1 and n != shape[i + lead]:
            raise RuntimeError(f"The expanded size of the tensor ({shape[i + lead]}) must match the existing size "
                               f"({n}) at non-singleton dimension {i + lead}.  Target sizes: {list(sizes)}.  "
                               f"Tensor sizes: {list(input.shape)}")
    return expand_to(input, shape) if shape != tuple(input.shape) else apply("expand", input, shape=shape)


def expand_as(input, other) -> Tensor:
    return expand(input, *other.shape)


def broadcast_to(input, shape) -> Tensor:
    return expand(input, *shape)


def broadcast_tensors(*tensors) -> tuple:
    from .elementwise import broadcast_shapes

    shape = broadcast_shapes(*(t.shape for t in tensors))
    return tuple(expand_to(t, shape) for t in tensors)


@op("SliceBackward0")
def narrow(input, dim: int, start: int, length: int) -> Tensor:
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    start = start + n if start < 0 else start
    if not (0 <= start and start + length <= n):
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return slice_dim(input, d, start, start + length, 1)


def slice_dim(input, dim: int, start: int, stop: int, step: int) -> Tensor:
    starts = [0] * input.ndim
    stops = list(input.shape)
    steps = [1] * input.ndim
    starts[dim], stops[dim], steps[dim] = start, stop, step
    return apply("slice", input, starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))


def contiguous(input, memory_format=None) -> Tensor:
    if input.is_contiguous():
        return input
    return apply("copy", input)


def clone(input, *, memory_format=None) -> Tensor:
    return apply("copy", input)


@op("CatBackward0")
def cat(tensors, dim: int = 0) -> Tensor:
    tensors = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)] or list(tensors)[:1]
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    from .. import dtypes as dt

    dtype = dt.result_type(*tensors)
    d = _norm_dim(dim, tensors[0].ndim)
    for i, x in enumerate(tensors):
        if x.ndim != tensors[0].ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {tensors[0].ndim} and {x.ndim}")
        for k in range(x.ndim):
            if k != d and x.shape[k] != tensors[0].shape[k]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {d}. Expected size "
                                   f"{tensors[0].shape[k]} but got size {x.shape[k]} for tensor number {i} in the list.")
    return apply("concat", *(cast(x, dtype) for x in tensors), dim=d)


concat = concatenate = cat


@op("StackBackward0")
def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    for i, x in enumerate(tensors):
        if tuple(x.shape) != tuple(tensors[0].shape):
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(tensors[0].shape)} at "
                               f"entry 0 and {list(x.shape)} at entry {i}")
    d = _norm_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(x, d) for x in tensors], d)


def hstack(tensors) -> Tensor:
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors) -> Tensor:
    return cat([x.reshape(1, -1) if x.ndim == 1 else x for x in tensors], 0)


def split(tensor, split_size_or_sections, dim: int = 0) -> tuple:
    d = _norm_dim(dim, tensor.ndim)
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sizes = [min(step, n - i) for i in range(0, n, step)] if step else [n]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's size at "
                               f"dimension {d}), but got split_sizes={sizes}")
    out, start = [], 0
    name = "SplitBackward0" if isinstance(split_size_or_sections, int) else "SplitWithSizesBackward0"
    for s in sizes:
        out.append(_named(slice_dim(tensor, d, start, start + s, 1), name))
        start += s
    return tuple(out)


def _named(piece: Tensor, name: str) -> Tensor:
    if piece.grad_fn is not None:
        piece.grad_fn.rename(name)
    return piece


def chunk(input, chunks: int, dim: int = 0) -> tuple:
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0, got: 0")
    n = input.shape[_norm_dim(dim, input.ndim)]
    return split(input, max(1, -(-n // chunks)), dim)


def unbind(input, dim: int = 0) -> tuple:
    d = _norm_dim(dim, input.ndim)
    return tuple(_named(squeeze(x, d), "UnbindBackward0") for x in split(input, 1, d))


@op("RepeatBackward0")
def repeat(input, *sizes) -> Tensor:
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    x = reshape(input, *([1] * (len(sizes) - input.ndim) + list(input.shape)))
    # (a, b) repeated (r, s): view as (1, a, 1, b), expand to (r, a, s, b), flatten pairs
    inter = []
    for s in x.shape:
        inter += [1, s]
    big = []
    for r, s in zip(sizes, x.shape):
        big += [r, s]
    out = expand_to(reshape(x, *inter), tuple(big))
    return reshape(out, *(r * s for r, s in zip(sizes, x.shape)))


def tile(input, dims) -> Tensor:
    dims = tuple(dims)
    return repeat(input, *((1,) * (input.ndim - len(dims)) + dims))


def flip(input, dims) -> Tensor:
    from .creation import arange
    from .indexing import index_select

    out = input
    for d in (dims if isinstance(dims, (tuple, list)) else (dims,)):
        d = _norm_dim(d, input.ndim)
        out = index_select(out, d, arange(input.shape[d] - 1, -1, -1, device=input.device))
    return out


def roll(input, shifts, dims=None) -> Tensor:
    """Elements shifted along dims, wrapping around: two slices joined in the other order."""
    shifts = shifts if isinstance(shifts, (tuple, list)) else (shifts,)
    if dims is None:  # torch rolls the flattened tensor
        if len(shifts) != 1:
            _roll_error(shifts, ())
        return roll(input.flatten(), shifts[0], 0).reshape(input.shape)
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    if len(shifts) != len(dims):
        _roll_error(shifts, dims)
    out = input
    for s, d in zip(shifts, dims):
        d = _norm_dim(d, input.ndim)
        n = input.shape[d]
        if n and s % n:
            cut = n - s % n
            out = cat([slice_dim(out, d, cut, n, 1), slice_dim(out, d, 0, cut, 1)], d)
    return out


def _roll_error(shifts, dims):
    raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")


def diagonal(input, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of the (dim1, dim2) planes as a last dim: the planes flattened, then every
    (columns + 1)-th element from the first one on the diagonal."""
    d1, d2 = _norm_dim(dim1, input.ndim), _norm_dim(dim2, input.ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    rest = [d for d in range(input.ndim) if d not in (d1, d2)]
    planes = permute(input, *rest, d1, d2)
    rows, cols = input.shape[d1], input.shape[d2]
    length = max(min(rows, cols - offset) if offset >= 0 else min(rows + offset, cols), 0)
    flat = planes.reshape(*planes.shape[:-2], rows * cols)
    if not length:  # (a strided empty slice would have no adjoint)
        return slice_dim(flat, flat.ndim - 1, 0, 0, 1)
    start = offset if offset >= 0 else -offset * cols
    return slice_dim(flat, flat.ndim - 1, start, start + (length - 1) * (cols + 1) + 1, cols + 1)


_diagonal = diagonal  # diag's argument is named `diagonal`, as torch's


def diag(input, diagonal: int = 0) -> Tensor:
    """A vector's diagonal matrix (value j at row j, column j + diagonal), or a matrix's diagonal."""
    from .creation import zeros
    from .elementwise import eq, sub, where

    if input.ndim == 2:
        return _diagonal(input, diagonal)
    if input.ndim != 1:
        raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
    k = abs(diagonal)
    size = input.shape[0] + k
    padded = cat([zeros(k, dtype=input.dtype, device=input.device), input]) if k else input  # padded[j] = v[j - k]
    along = (1, size) if diagonal >= 0 else (size, 1)  # a value per column above the main diagonal, per row below
    values = padded.reshape(*along).expand(size, size)
    offsets = sub(apply("iota", shape=(size, size), dim=1, dtype=dt.int64),
                  apply("iota", shape=(size, size), dim=0, dtype=dt.int64))
    return where(eq(offsets, diagonal), values, zeros((), dtype=input.dtype, device=input.device))
