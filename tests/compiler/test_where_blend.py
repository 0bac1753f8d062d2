"""The where primitive's numpy kernel: on large inputs an integer blend, which must give np.where's
bits exactly (NaN payloads, -0.0, inf), for every dtype, strided and broadcast operands."""

import numpy as np
import pytest

from graphtorch.compiler import primitives as P

RNG = np.random.default_rng(3)
SHAPE = (70, 80)  # above the blend's size threshold


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8,
                                   np.bool_, np.complex64])
def test_blend_gives_np_where_bits(dtype):
    assert np.prod(SHAPE) >= P._BLEND_MIN_SIZE
    a = (RNG.standard_normal(SHAPE) * 10).astype(dtype)
    b = (RNG.standard_normal(SHAPE) * 10).astype(dtype)
    if np.dtype(dtype).kind == "f":
        a.flat[::5] = np.nan
        a.flat[1::5] = -0.0
        b.flat[2::7] = -np.inf
        a.flat[3::11] = np.nan
        a.view(np.dtype(f"u{a.itemsize}")).flat[3::11] |= 1  # another NaN payload, which must survive
        assert np.isnan(a.flat[3])
    c = RNG.random(SHAPE) > 0.5
    zero = np.broadcast_to(np.zeros((), dtype), SHAPE)
    for x, y in ((a, b), (a, zero), (zero, b), (np.asfortranarray(a), b[::-1]), (a, a)):
        got, want = P._where(c, x, y), np.where(c, x, y)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


def test_strided_condition_and_small_inputs():
    a, b = RNG.standard_normal((100, 100)), RNG.standard_normal((100, 100))
    c = (RNG.random((100, 200)) > 0.3)[:, ::2]
    assert P._where(c, a, b).tobytes() == np.where(c, a, b).tobytes()
    small = RNG.random((3, 4)) > 0.5
    assert P._where(small, a[:3, :4], b[:3, :4]).tobytes() == np.where(small, a[:3, :4], b[:3, :4]).tobytes()
