"""Random numbers: shapes, dtypes, ranges, reproducibility under manual_seed, rough statistics.
The stream is graphtorch's own (counter-based), so values are compared with themselves, not torch."""

import numpy as np
import pytest

import graphtorch as gt


@pytest.mark.parametrize("fn", [gt.rand, gt.randn])
@pytest.mark.parametrize("size", [(3, 5), ((2, 3, 4),), (0,), (7,)])
@pytest.mark.parametrize("dtype", [None, gt.float64, gt.float16])
def test_rand_randn_shapes_and_dtypes(fn, size, dtype):
    x = fn(*size, dtype=dtype)
    shape = size[0] if isinstance(size[0], tuple) else size
    assert tuple(x.shape) == tuple(shape)
    assert x.dtype is (dtype or gt.float32)
    assert not x.requires_grad and x.is_leaf


def test_rand_range_and_statistics():
    gt.manual_seed(0)
    u = gt.rand(100_000, dtype=gt.float64).numpy()
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    z = gt.randn(100_000).numpy()
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert abs(np.mean(np.abs(z) < 1.0) - 0.6827) < 0.01


def test_manual_seed_reproduces_every_generator():
    def draw():
        return [gt.rand(4).numpy().copy(), gt.randn(2, 3).numpy().copy(), gt.randint(0, 10, (5,)).numpy().copy(),
                gt.randperm(6).numpy().copy()]

    gt.manual_seed(123)
    first = draw()
    gt.manual_seed(123)
    second = draw()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    gt.manual_seed(124)
    assert not np.array_equal(gt.rand(4).numpy(), first[0])
    assert gt.initial_seed() == 124


def test_successive_draws_differ_and_state_round_trips():
    gt.manual_seed(5)
    a = gt.rand(3).numpy().copy()
    state = gt.get_rng_state()
    b = gt.rand(3).numpy().copy()
    assert not np.array_equal(a, b)
    gt.set_rng_state(state)
    np.testing.assert_array_equal(gt.rand(3).numpy(), b)


def test_generator_objects_are_independent():
    g1, g2 = gt.Generator().manual_seed(7), gt.Generator().manual_seed(7)
    np.testing.assert_array_equal(gt.rand(5, generator=g1).numpy(), gt.rand(5, generator=g2).numpy())


@pytest.mark.parametrize("args", [(10, (1000,)), (-3, 4, (50, 3)), (0, 1, (7,))])
def test_randint_range_dtype_and_coverage(args):
    low, high = (0, args[0]) if len(args) == 2 else args[:2]
    x = gt.randint(*args)
    assert x.dtype is gt.int64 and tuple(x.shape) == tuple(args[-1])
    v = x.numpy()
    assert v.min() >= low and v.max() < high
    if v.size >= 100:
        assert set(np.unique(v)) == set(range(low, high))
    assert gt.randint(0, 5, (3,), dtype=gt.int32).dtype is gt.int32


def test_randperm_is_a_permutation():
    for n in [0, 1, 10, 257]:
        p = gt.randperm(n)
        assert p.dtype is gt.int64
        np.testing.assert_array_equal(np.sort(p.numpy()), np.arange(n))


def test_like_variants_and_requires_grad():
    base = gt.zeros(2, 3, dtype=gt.float64)
    assert gt.rand_like(base).dtype is gt.float64 and tuple(gt.randn_like(base).shape) == (2, 3)
    r = gt.randint_like(gt.zeros(4, dtype=gt.int32), 3)
    assert r.dtype is gt.int32 and r.numpy().max() < 3
    w = gt.randn(3, requires_grad=True)
    assert w.requires_grad and w.is_leaf and w.grad_fn is None


def test_rand_of_integer_dtype_is_refused(torch):
    with pytest.raises(RuntimeError):
        torch.rand(2, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="not implemented for"):
        gt.rand(2, dtype=gt.int64)


def test_in_place_initializers():
    gt.manual_seed(1)
    x = gt.empty(1000).uniform_(-2, 3)
    assert x.numpy().min() >= -2 and x.numpy().max() < 3
    y = gt.empty(5000, dtype=gt.float64).normal_(4.0, 0.5)
    assert abs(y.numpy().mean() - 4.0) < 0.05 and abs(y.numpy().std() - 0.5) < 0.05
    b = gt.empty(2000).bernoulli_(0.25)
    assert set(np.unique(b.numpy())) <= {0.0, 1.0} and abs(b.numpy().mean() - 0.25) < 0.05
