"""The Tensor object against torch: attributes, conversions, new_* constructors, copying."""

import copy
import pickle

import numpy as np
import pytest
from conftest import assert_same, raises_like

import graphtorch as gt


def test_attributes(torch):
    g, t = gt.ones(2, 3, dtype=gt.float64), torch.ones(2, 3, dtype=torch.float64)
    assert str(g.device) == str(t.device) and g.is_cuda == t.is_cuda
    assert g.is_floating_point() == t.is_floating_point() and gt.is_tensor(g) and not gt.is_tensor([1])
    assert g.nelement() == t.nelement() and gt.numel(g) == torch.numel(t)
    assert g.ndimension() == t.ndimension()
    assert_same(g.T, t.T)
    assert isinstance(g, gt.Tensor) and type(g).__name__ == "Tensor"
    assert hash(g) != hash(gt.ones(2))


def test_new_constructors_keep_dtype(torch):
    g, t = gt.ones(2, dtype=gt.int32), torch.ones(2, dtype=torch.int32)
    assert_same(g.new_zeros(3), t.new_zeros(3))
    assert_same(g.new_ones((2, 2)), t.new_ones((2, 2)))
    assert_same(g.new_full((2,), 7), t.new_full((2,), 7))
    assert_same(g.new_tensor([1, 2]), t.new_tensor([1, 2]))
    assert tuple(g.new_empty(4).shape) == (4,) and g.new_empty(4).dtype is gt.int32
    assert_same(g.type_as(gt.ones(1)), t.type_as(torch.ones(1)))


def test_device_handling(torch):
    assert gt.device("cpu") == "cpu" and gt.ones(1).cpu().device == gt.device("cpu")
    assert repr(gt.device("cuda:1")) == repr(torch.device("cuda:1"))
    assert gt.cuda.is_available() is False
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        gt.ones(1).cuda()
    assert gt.ones(2).to("cpu").dtype is gt.float32


def test_pickle_and_deepcopy():
    x = gt.tensor([[1.5, 2.0]], requires_grad=True)
    y = pickle.loads(pickle.dumps(x))
    assert y.tolist() == x.tolist() and y.requires_grad and y.is_leaf
    z = copy.deepcopy(x)
    assert z.tolist() == x.tolist() and not np.shares_memory(z._data, x._data) and z.requires_grad


def test_iteration_and_indexing_protocols(torch):
    g, t = gt.tensor([[1, 2], [3, 4]]), torch.tensor([[1, 2], [3, 4]])
    for a, b in zip(g, t):
        assert_same(a, b)
    raises_like(lambda: iter(torch.tensor(1)), lambda: iter(gt.tensor(1)))
    raises_like(lambda: [0, 1][torch.tensor(1.0)], lambda: [0, 1][gt.tensor(1.0)])
    assert np.asarray(g).tolist() == [[1, 2], [3, 4]]
    assert np.array(g, dtype=np.float32).dtype == np.float32


def test_grad_assignment_checks_shape(torch):
    x = gt.ones(2, requires_grad=True)
    x.grad = gt.ones(2)
    raises_like(lambda: setattr(torch.ones(2, requires_grad=True), "grad", torch.ones(3)),
                lambda: setattr(x, "grad", gt.ones(3)))
