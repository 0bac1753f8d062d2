"""The disjoint-tile fast path of the max-pooling numpy kernels (kernel == stride, no padding or
dilation) against the general tap-by-tap scan, bit for bit: ties (first maximum), NaN (last NaN),
-inf, -0.0 gradients, integer dtypes, and inputs whose last rows/columns no window covers."""

import numpy as np
import pytest

from graphtorch.compiler import pooling

RNG = np.random.default_rng(11)


def attrs_for(size, k) -> dict:
    out = tuple(n // kk for n, kk in zip(size, k))
    return dict(out=out, kernel=k, stride=k, padding=(0, 0), dilation=(1, 1), adaptive=False)


def scan_and_tiles(monkeypatch, fn, *args, **attrs):
    fast = fn(*args, **attrs)
    with monkeypatch.context() as m:
        m.setattr(pooling, "tiles", lambda *a: False)
        slow = fn(*args, **attrs)
    return fast, slow


def assert_same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("shape,k", [((2, 3, 8, 8), (2, 2)), ((1, 2, 9, 11), (2, 3)), ((2, 1, 7, 7), (3, 3)),
                                     ((1, 1, 5, 4), (1, 1)), ((0, 2, 4, 4), (2, 2))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8, np.int8])
def test_tiled_max_pool_equals_the_scan(monkeypatch, shape, k, dtype):
    attrs = attrs_for(shape[2:], k)
    assert pooling.tiles(attrs, shape[2:])
    x = RNG.integers(0, 3, shape).astype(dtype)  # few distinct values: many ties
    if np.dtype(dtype).kind == "f" and x.size:
        x.flat[::7] = np.nan
        x.flat[1::11] = -np.inf
    g = RNG.standard_normal((*shape[:2], *attrs["out"])).astype(dtype)
    if np.dtype(dtype).kind == "f":
        g.flat[::3] = -0.0
    for fn, args in ((pooling.max_pool, (x,)), (pooling.max_pool_index, (x,)), (pooling.max_pool_grad, (x, g))):
        assert_same_bits(*scan_and_tiles(monkeypatch, fn, *args, **attrs))


def test_nan_tile_takes_its_last_nan_and_ties_the_first_max():
    x = np.array([[[[1.0, np.nan], [np.nan, 5.0]], [[2.0, 2.0], [1.0, 2.0]]]], np.float32)
    attrs = attrs_for((2, 2), (2, 2))
    assert pooling.max_pool_index(x, **attrs).ravel().tolist() == [2, 0]


@pytest.mark.parametrize("attrs", [dict(attrs_for((8, 8), (2, 2)), stride=(1, 1)),
                                   dict(attrs_for((8, 8), (2, 2)), padding=(1, 0)),
                                   dict(attrs_for((8, 8), (2, 2)), dilation=(2, 1)),
                                   dict(attrs_for((8, 8), (2, 2)), out=(5, 4)),
                                   dict(attrs_for((8, 8), (2, 2)), adaptive=True)], ids=str)
def test_other_windows_are_not_tiles(attrs):
    assert not pooling.tiles(attrs, (8, 8))


def test_matches_torch_max_pool_and_gradient():
    torch = pytest.importorskip("torch")
    import graphtorch
    x = RNG.standard_normal((4, 3, 11, 10)).astype(np.float32)
    x[0, 0, 0, :2] = 1.5  # a tie inside one tile
    tx = torch.from_numpy(x).requires_grad_()
    gx = graphtorch.from_numpy(x).requires_grad_()
    ty = torch.nn.functional.max_pool2d(tx, 2)
    gy = graphtorch.nn.functional.max_pool2d(gx, 2)
    np.testing.assert_array_equal(gy.detach().numpy(), ty.detach().numpy())
    (ty * torch.arange(ty.numel()).reshape(ty.shape)).sum().backward()
    (gy * graphtorch.arange(gy.numel()).reshape(gy.shape)).sum().backward()
    np.testing.assert_array_equal(gx.grad.numpy(), tx.grad.numpy())
