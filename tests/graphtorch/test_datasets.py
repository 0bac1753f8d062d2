"""The shipped data sets: shapes, dtypes, value ranges and class counts."""

import numpy as np

import graphtorch
from graphtorch.datasets import Digits, Iris, load_digits, load_iris
from graphtorch.utils.data import DataLoader


def test_iris():
    x, y = load_iris()
    assert x.shape == (150, 4) and x.dtype == graphtorch.float32
    assert y.shape == (150,) and y.dtype == graphtorch.int64
    assert np.bincount(y.numpy()).tolist() == [50, 50, 50]
    assert y[:50].eq(0).all() and y[50:100].eq(1).all()
    assert x[0].tolist() == [5.099999904632568, 3.5, 1.399999976158142, 0.20000000298023224]
    assert float(x.min()) > 0 and float(x.max()) < 8


def test_digits():
    x, y = load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == graphtorch.float32
    assert y.shape == (1797,) and y.dtype == graphtorch.int64
    assert float(x.min()) == 0 and float(x.max()) == 16 and bool((x == x.round()).all())
    counts = np.bincount(y.numpy())
    assert len(counts) == 10 and counts.sum() == 1797 and counts.min() >= 170


def test_loaders_return_fresh_tensors():
    a, _ = load_iris()
    a.add_(100)
    assert float(load_iris()[0].max()) < 8


def test_dataset_classes_with_transforms_batch_through_a_dataloader():
    ds = Digits(transform=lambda img: img / 16)
    img, label = ds[5]
    assert len(ds) == 1797 and img.shape == (1, 8, 8) and float(img.max()) <= 1 and label.dtype == graphtorch.int64
    images, labels = next(iter(DataLoader(ds, batch_size=32)))
    assert images.shape == (32, 1, 8, 8) and labels.shape == (32,)
    iris = Iris(target_transform=lambda t: int(t) == 0)
    assert len(iris) == 150 and iris[0][1] is True and iris[60][1] is False and Iris.classes[2] == "virginica"
