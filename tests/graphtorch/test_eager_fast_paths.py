"""Eager mode's fast paths against torch: the conv2d numpy kernel's two im2col layouts, ... .

Each fast path is only a cheaper way to run an op's one definition, so every test compares
values, dtypes and gradients with torch on the cases the fast path takes and on those it leaves."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import compare, randn

from graphtorch.compiler.primitives import _conv2d_one_gemm, _conv2d_per_image

CONVS = [  # (input, weight, stride, padding, dilation, groups)
    ((2, 3, 9, 9), (4, 3, 3, 3), 1, 1, 1, 1),  # rows longer than the kernel: one GEMM per image
    ((2, 4, 11, 10), (6, 2, 3, 2), 2, (1, 0), (2, 1), 2),  # strided, dilated, grouped
    ((1, 3, 12, 12), (2, 3, 10, 10), 1, 0, 1, 1),  # a kernel wider than the output: one tall GEMM
    ((3, 6, 8, 8), (6, 2, 7, 7), 1, 1, 1, 3),  # the tall GEMM, grouped
]


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", CONVS)
def test_conv2d_both_layouts_match_torch(torch, xs, ws, stride, padding, dilation, groups):
    def conv(lib, x, w):
        return lib.nn.functional.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)

    compare(conv, randn(*xs), randn(*ws, seed=3), rtol=2e-5, atol=2e-5)
    compare(conv, randn(*xs, dtype=np.float64), randn(*ws, dtype=np.float64, seed=3), rtol=1e-12, atol=1e-12)


def test_conv2d_layouts_agree_with_each_other():
    from graphtorch.compiler.primitives import _unfold

    x, w = randn(2, 4, 9, 7), randn(6, 2, 3, 3, seed=1)
    win = _unfold(x, kernel=(3, 3), stride=(1, 2), dilation=(2, 1))
    wm = w.reshape(2, 3, -1)
    np.testing.assert_allclose(_conv2d_per_image(win, wm), _conv2d_one_gemm(win, wm), rtol=1e-5, atol=1e-5)
