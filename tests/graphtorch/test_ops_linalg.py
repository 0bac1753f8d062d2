"""Matrix products against torch: matmul/mm/bmm/dot/mv/outer/@ over 1-D, 2-D and broadcast batches."""

import pytest
from conftest import compare, raises_like, randn

import graphtorch as gt

MATMUL_SHAPES = [((5,), (5,)), ((3, 5), (5,)), ((5,), (5, 7)), ((3, 5), (5, 7)), ((2, 3, 5), (5, 7)),
                 ((5,), (2, 5, 7)), ((2, 3, 5), (5,)), ((4, 1, 3, 5), (2, 5, 7)), ((2, 3, 5), (2, 5, 7)),
                 ((1, 3, 5), (4, 5, 2))]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_broadcasting_and_grads(torch, sa, sb):
    a, b = randn(*sa, seed=1), randn(*sb, seed=2)
    compare(lambda L, x, y: x @ y, a, b, rtol=1e-5, atol=1e-5)
    compare(lambda L, x, y: L.matmul(x, y), a.astype("float64"), b.astype("float64"), rtol=1e-12, atol=1e-12)


def test_mm_bmm_dot_mv_outer(torch):
    compare(lambda L, x, y: L.mm(x, y), randn(3, 5), randn(5, 7, seed=3), rtol=1e-5, atol=1e-5)
    compare(lambda L, x, y: x.mm(y.t()), randn(3, 5), randn(7, 5, seed=3), rtol=1e-5, atol=1e-5)
    compare(lambda L, x, y: L.bmm(x, y), randn(2, 3, 5), randn(2, 5, 4, seed=3), rtol=1e-5, atol=1e-5)
    compare(lambda L, x, y: L.dot(x, y), randn(7), randn(7, seed=3), rtol=1e-5, atol=1e-5)
    compare(lambda L, x, y: x.mv(y), randn(3, 7), randn(7, seed=3), rtol=1e-5, atol=1e-5)
    compare(lambda L, x, y: L.outer(x, y), randn(3), randn(4, seed=3), rtol=1e-5, atol=1e-5)
    compare(lambda L, x, y: x @ y, randn(4, 3)[::2], randn(5, 4)[:, 1:].T, rtol=1e-5, atol=1e-5)
    compare(lambda L, x, y: x @ y, randn(3, 4).astype("int64"), randn(4, 2).astype("int64"), grad=False)


def test_matmul_errors(torch):
    pairs = [((3, 4), (5, 6)), ((4,), (5,)), ((3, 4), (5,)), ((2, 3, 4), (2, 5, 6)), ((), (3,)), ((4,), (5, 6)), ((2, 3, 4), (5,)),
             ((4,), (2, 5, 6)), ((2, 3, 4), (5, 6))]
    for sa, sb in pairs:
        raises_like(lambda sa=sa, sb=sb: torch.ones(sa) @ torch.ones(sb), lambda sa=sa, sb=sb: gt.ones(sa) @ gt.ones(sb))
    raises_like(lambda: torch.ones(2, 3) @ torch.ones(3, 2, dtype=torch.float64),
                lambda: gt.ones(2, 3) @ gt.ones(3, 2, dtype=gt.float64))
    raises_like(lambda: torch.mm(torch.ones(3), torch.ones(3, 2)), lambda: gt.mm(gt.ones(3), gt.ones(3, 2)))
    raises_like(lambda: torch.bmm(torch.ones(2, 3, 4), torch.ones(3, 4, 2)),
                lambda: gt.bmm(gt.ones(2, 3, 4), gt.ones(3, 4, 2)))
    raises_like(lambda: torch.dot(torch.ones(3), torch.ones(4)), lambda: gt.dot(gt.ones(3), gt.ones(4)))
