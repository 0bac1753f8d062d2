"""Element types and tensor types: the vocabulary shared by eager tensors and the graph IR.

`graphtorch.float32` and friends are the objects defined here; the compiler sees the same
objects in its IR, so no translation layer exists between the two halves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class DType:
    name: str  # PyTorch's name: "float32"
    short: str  # the IR's name: "f32"
    np: np.dtype
    is_floating_point: bool
    is_signed: bool
    legacy_type: str  # what Tensor.type() returns: "torch.FloatTensor"

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def category(self) -> int:
        """0 bool, 1 integer, 2 floating: the order of PyTorch's type promotion."""
        if self is bool_:
            return 0
        return 2 if self.is_floating_point else 1

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __reduce__(self):  # dtypes are singletons, also across processes
        return (from_name, (self.name,))


def _dtype(name, short, npdt, floating, signed, legacy):
    return DType(name, short, np.dtype(npdt), floating, signed, f"torch.{legacy}")


float32 = _dtype("float32", "f32", np.float32, True, True, "FloatTensor")
float64 = _dtype("float64", "f64", np.float64, True, True, "DoubleTensor")
float16 = _dtype("float16", "f16", np.float16, True, True, "HalfTensor")
int64 = _dtype("int64", "i64", np.int64, False, True, "LongTensor")
int32 = _dtype("int32", "i32", np.int32, False, True, "IntTensor")
int16 = _dtype("int16", "i16", np.int16, False, True, "ShortTensor")
int8 = _dtype("int8", "i8", np.int8, False, True, "CharTensor")
uint8 = _dtype("uint8", "u8", np.uint8, False, False, "ByteTensor")
bool_ = _dtype("bool", "b8", np.bool_, False, False, "BoolTensor")

ALL = (float32, float64, float16, int64, int32, int16, int8, uint8, bool_)
_BY_NAME = {d.name: d for d in ALL}
_BY_SHORT = {d.short: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}


def from_name(name: str) -> DType:
    return _BY_NAME[name]


def from_short(short: str) -> DType:
    return _BY_SHORT[short]


def from_numpy(npdtype) -> DType:
    """The DType of a numpy dtype; TypeError for dtypes graphtorch does not have."""
    try:
        return _BY_NP[np.dtype(npdtype)]
    except (KeyError, TypeError):
        raise TypeError(
            f"can't convert np.ndarray of type {np.dtype(npdtype)}. The only supported types are: "
            "float64, float32, float16, int64, int32, int16, int8, uint8, and bool."
        ) from None


@dataclass(frozen=True)
class TensorType:
    """What the compiler knows of a value before any data exists: its shape and dtype."""

    shape: tuple[int, ...]
    dtype: DType

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype.short}[{','.join(map(str, self.shape))}]"


def row_major_strides(shape: tuple[int, ...]) -> list[int]:
    """Element strides of a contiguous (row-major) tensor of `shape`: every backend's layout."""
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return out[::-1]
