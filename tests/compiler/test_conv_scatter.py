"""The numpy conv2d kernel's scatter (col2im) form, taken when the per-tap products are fewer than
im2col's columns (heavily padded convolutions such as input gradients), against torch's conv2d and
against the im2col form, over stride, padding, dilation and groups."""

import numpy as np
import pytest

from graphtorch.compiler import primitives as P

RNG = np.random.default_rng(5)

# (x shape, w shape, stride, padding, dilation, groups): the scatter form is chosen for each
CASES = [
    ((3, 16, 10, 10), (6, 16, 5, 5), (1, 1), (4, 4), (1, 1), 1),  # LeNet conv2's input gradient
    ((2, 8, 7, 9), (1, 8, 3, 2), (2, 3), (2, 1), (1, 1), 1),
    ((2, 8, 6, 6), (2, 8, 3, 3), (1, 2), (3, 2), (2, 1), 1),
    ((2, 12, 5, 6), (6, 4, 3, 3), (1, 1), (2, 2), (1, 1), 3),
    ((1, 9, 4, 4), (1, 9, 5, 5), (3, 3), (4, 4), (2, 2), 1),  # taps that read nothing
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_scatter_matches_torch_and_im2col(monkeypatch, xs, ws, stride, padding, dilation, groups):
    torch = pytest.importorskip("torch")
    assert P._scatter_is_smaller(xs, ws, stride, padding, dilation)
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = P._conv2d(x, w, **attrs)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), **attrs).numpy()
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(P, "_scatter_is_smaller", lambda *a: False)
    np.testing.assert_allclose(got, P._conv2d(x, w, **attrs), rtol=1e-12, atol=1e-12)


def test_float32_keeps_its_dtype_and_contiguity():
    x, w = RNG.standard_normal((2, 16, 10, 10)).astype(np.float32), RNG.standard_normal((6, 16, 5, 5)).astype(np.float32)
    got = P._conv2d(x, w, stride=(1, 1), padding=(4, 4), dilation=(1, 1), groups=1)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (2, 6, 14, 14)


def test_unpadded_forward_keeps_im2col():
    assert not P._scatter_is_smaller((64, 1, 32, 32), (6, 1, 5, 5), (1, 1), (0, 0), (1, 1))
