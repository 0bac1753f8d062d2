"""default_collate / default_convert: turn a list of samples into a batch, as torch does.

Tensors are stacked; Python ints become int64 tensors, floats float64, bools bool; numpy arrays
and scalars become tensors; strings stay a list; tuples and lists are transposed and collated per
position; dicts per key; namedtuples keep their type.
"""

from __future__ import annotations

import collections.abc
import copy
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ... import dispatch
from ... import dtypes as dt
from ...ops.creation import as_tensor, tensor
from ...ops.shape import stack
from ...tensor import Tensor

__all__ = ["collate", "default_collate", "default_convert", "default_collate_fn_map"]

# numpy dtypes of strings and objects, which have no tensor form
_np_str_obj = re.compile(r"[SaUO]")
_err = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"

CollateMap = dict  # type -> fn(batch, *, collate_fn_map)


def collate(batch, *, collate_fn_map: CollateMap | None = None) -> Any:
    """Collate by the type of the first element: `collate_fn_map` first, then containers."""
    elem = batch[0]
    if collate_fn_map is not None:
        if type(elem) in collate_fn_map:
            return collate_fn_map[type(elem)](batch, collate_fn_map=collate_fn_map)
        for kind, fn in collate_fn_map.items():
            if isinstance(elem, kind):
                return fn(batch, collate_fn_map=collate_fn_map)

    def rec(samples):  # zip's tuples pass through as they are: torch returns strings in a tuple
        return collate(samples, collate_fn_map=collate_fn_map)

    if isinstance(elem, collections.abc.Mapping):
        return _rebuild_mapping(elem, {key: rec([d[key] for d in batch]) for key in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(rec(s) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [rec(s) for s in zip(*batch)]
        # tuples come back as lists (torch keeps this for backwards compatibility)
        return columns if isinstance(elem, tuple) else _rebuild_sequence(elem, columns)
    raise TypeError(_err.format(type(elem)))


def _rebuild_mapping(like, items: dict):
    """A mapping of `like`'s type holding `items` (a plain dict where the type cannot be rebuilt)."""
    try:
        if isinstance(like, collections.abc.MutableMapping):
            clone = copy.copy(like)  # keeps extra attributes of dict subclasses
            clone.update(items)
            return clone
        return type(like)(items)
    except TypeError:
        return items


def _rebuild_sequence(like, items: list):
    try:
        if isinstance(like, collections.abc.MutableSequence):
            clone = copy.copy(like)
            for i, v in enumerate(items):
                clone[i] = v
            return clone
        return type(like)(items)
    except TypeError:
        return items


def _collate_tensors(batch, *, collate_fn_map=None):
    if dispatch._tracer is None and not any(t.requires_grad for t in batch) and \
            all(type(t) is Tensor and t._data is not None for t in batch):
        # the hot path of every DataLoader: one numpy stack instead of an op per sample
        return Tensor._wrap(np.stack([t._data for t in batch]))
    return stack(batch, 0)  # autograd or tracing must see the op


def _collate_numpy_arrays(batch, *, collate_fn_map=None):
    if _np_str_obj.search(batch[0].dtype.str) is not None:
        raise TypeError(_err.format(batch[0].dtype))
    return collate([as_tensor(b) for b in batch], collate_fn_map=collate_fn_map)


def _collate_numpy_scalars(batch, *, collate_fn_map=None):
    return as_tensor(np.array(batch))


def _collate_floats(batch, *, collate_fn_map=None):
    return tensor(batch, dtype=dt.float64)


def _collate_ints(batch, *, collate_fn_map=None):
    return tensor(batch)  # int64, or bool when the elements are bools


def _collate_strings(batch, *, collate_fn_map=None):
    return batch


default_collate_fn_map: dict[type | tuple[type, ...], Callable] = {
    Tensor: _collate_tensors,
    np.ndarray: _collate_numpy_arrays,
    (np.bool_, np.number, np.object_): _collate_numpy_scalars,
    float: _collate_floats,
    int: _collate_ints,
    str: _collate_strings,
    bytes: _collate_strings,
}


def default_collate(batch: list) -> Any:
    """Stack a list of samples into a batch (the DataLoader's collate_fn when batching)."""
    return collate(batch, collate_fn_map=default_collate_fn_map)


def default_convert(data: Any) -> Any:
    """Turn numpy arrays and scalars inside `data` into tensors, leaving everything else (the
    DataLoader's collate_fn when batch_size=None)."""
    if isinstance(data, Tensor):
        return data
    kind = type(data)
    if kind.__module__ == "numpy" and kind.__name__ not in ("str_", "bytes_"):
        if isinstance(data, np.ndarray) and _np_str_obj.search(data.dtype.str) is not None:
            return data
        return as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, {key: default_convert(data[key]) for key in data})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return kind(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data
