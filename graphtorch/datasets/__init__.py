"""Small public data sets shipped with graphtorch, for examples, tests and benchmarks (offline).

- Iris (data/iris.csv): R. A. Fisher (1936), "The use of multiple measurements in taxonomic
  problems"; UCI Machine Learning Repository. Public domain. 150 flowers, 4 features (sepal
  length, sepal width, petal length, petal width, in cm), classes 0 setosa, 1 versicolor,
  2 virginica. The first line is a header `150,4,setosa,versicolor,virginica`.
- Digits (data/digits.csv.gz): E. Alpaydin, C. Kaynak (1998), "Optical Recognition of
  Handwritten Digits"; UCI Machine Learning Repository. CC BY 4.0. 1797 8x8 images with pixel
  values 0..16, one row of 64 pixels then the label 0..9 per line, no header.

Files are read with numpy only, and arrays are cached after the first read.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Callable
from importlib import resources

import numpy as np

from ..tensor import Tensor
from ..utils.data import Dataset

__all__ = ["load_iris", "load_digits", "Iris", "Digits", "IRIS_CLASSES"]

IRIS_CLASSES = ("setosa", "versicolor", "virginica")


def _data_file(name: str):
    return resources.files(__name__).joinpath("data", name)


@functools.cache
def _iris_arrays() -> tuple[np.ndarray, np.ndarray]:
    with _data_file("iris.csv").open("r") as f:
        table = np.loadtxt(f, delimiter=",", skiprows=1, dtype=np.float64)
    return table[:, :4].astype(np.float32), table[:, 4].astype(np.int64)


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    with _data_file("digits.csv.gz").open("rb") as raw, gzip.open(raw, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return table[:, :64].reshape(-1, 8, 8).astype(np.float32), table[:, 64]


def load_iris() -> tuple[Tensor, Tensor]:
    """(features float32 [150, 4], labels int64 [150]); rows 0-49 setosa, 50-99 versicolor, 100-149 virginica."""
    x, y = _iris_arrays()
    return Tensor._wrap(x.copy()), Tensor._wrap(y.copy())


def load_digits() -> tuple[Tensor, Tensor]:
    """(images float32 [1797, 8, 8] with pixel values 0..16, labels int64 [1797])."""
    x, y = _digits_arrays()
    return Tensor._wrap(x.copy()), Tensor._wrap(y.copy())


class _Arrays(Dataset):
    """(features[i], label[i]) pairs; `transform` maps the features, `target_transform` the label."""

    def __init__(self, data: tuple[Tensor, Tensor], transform: Callable | None = None,
                 target_transform: Callable | None = None) -> None:
        self.data, self.targets = data
        self.transform, self.target_transform = transform, target_transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        x, y = self.data[index], self.targets[index]
        if self.transform is not None:
            x = self.transform(x)
        if self.target_transform is not None:
            y = self.target_transform(y)
        return x, y


class Iris(_Arrays):
    """Iris as a Dataset: sample i is (features float32 [4], label int64 0-d)."""

    classes = IRIS_CLASSES

    def __init__(self, transform: Callable | None = None, target_transform: Callable | None = None) -> None:
        super().__init__(load_iris(), transform, target_transform)


class Digits(_Arrays):
    """Digits as a Dataset: sample i is (image float32 [1, 8, 8] (a channel first, as a conv net
    wants), label int64 0-d)."""

    classes = tuple(range(10))

    def __init__(self, transform: Callable | None = None, target_transform: Callable | None = None) -> None:
        images, labels = load_digits()
        super().__init__((images.unsqueeze(1), labels), transform, target_transform)
