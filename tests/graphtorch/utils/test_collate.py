"""default_collate / default_convert against torch's, for every kind of batch element."""

from collections import OrderedDict, namedtuple

import numpy as np
import pytest
from data_helpers import assert_same_batch, to_torch
from torch.utils.data import default_collate as torch_collate
from torch.utils.data import default_convert as torch_convert

import graphtorch
from graphtorch.utils.data import default_collate, default_convert

Point = namedtuple("Point", ["x", "y"])

BATCHES = {
    "tensors": [graphtorch.tensor([1.0, 2.0]), graphtorch.tensor([3.0, 4.0])],
    "int_tensors_0d": [graphtorch.tensor(1), graphtorch.tensor(2)],
    "ints": [1, 2, 3],
    "floats": [0.5, 1.5],
    "bools": [True, False],
    "strings": ["a", "bc"],
    "numpy_arrays": [np.arange(3, dtype=np.float32), np.arange(3, 6, dtype=np.float32)],
    "numpy_int_arrays": [np.array([[1, 2]], dtype=np.int32), np.array([[3, 4]], dtype=np.int32)],
    "numpy_float_scalars": [np.float32(1.5), np.float32(2.5)],
    "numpy_int_scalars": [np.int64(7), np.int64(8)],
    "numpy_bool_scalars": [np.bool_(True), np.bool_(False)],
    "tuples": [(graphtorch.ones(2), 0), (graphtorch.zeros(2), 1)],
    "lists": [[1.0, "x"], [2.0, "y"]],
    "dicts": [{"img": graphtorch.ones(2, 2), "label": 3}, {"img": graphtorch.zeros(2, 2), "label": 4}],
    "ordered_dicts": [OrderedDict(a=1, b=2.0), OrderedDict(a=3, b=4.0)],
    "namedtuples": [Point(1, 2.0), Point(3, 4.0)],
    "nested": [{"pair": (np.int32(1), [graphtorch.tensor([1])])}, {"pair": (np.int32(2), [graphtorch.tensor([2])])}],
}


@pytest.mark.parametrize("name", BATCHES)
def test_collate_matches_torch(name):
    batch = BATCHES[name]
    assert_same_batch(default_collate(batch), torch_collate(to_torch(batch)))


CONVERTS = {
    "numpy_array": np.array([1, 2]),
    "numpy_scalar": np.float64(2.5),
    "int": 3,
    "string": "s",
    "tuple": (np.array([1.0]), 2),
    "namedtuple": Point(np.array(0), np.array(1)),
    "dict": {"a": np.zeros(2, dtype=np.float32), "b": "keep"},
    "list": [np.array([0, 1]), np.array([2, 3])],
    "tensor": graphtorch.tensor([1, 2]),
}


@pytest.mark.parametrize("name", CONVERTS)
def test_convert_matches_torch(name):
    sample = CONVERTS[name]
    assert_same_batch(default_convert(sample), torch_convert(to_torch(sample)))


def test_collate_refuses_what_torch_refuses():
    with pytest.raises(TypeError, match="batch must contain tensors, numpy arrays, numbers"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="batch must contain"):
        default_collate([np.array(["a"]), np.array(["b"])])
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [3]])


def test_collate_stacks_tensors_without_autograd_surprises():
    a = graphtorch.ones(3, requires_grad=True)
    out = default_collate([a, a * 2])
    assert out.shape == (2, 3) and out.requires_grad
