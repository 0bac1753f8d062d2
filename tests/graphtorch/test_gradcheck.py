"""Every primitive with a VJP rule against central finite differences, in float64, on odd
shapes with attributes that exercise broadcasting, strides, padding, dilation and groups."""

import numpy as np
import pytest
from conftest import gradcheck

import graphtorch as gt
from graphtorch import float32, float64, int64
from graphtorch.autograd_rules import RULES
from graphtorch.dispatch import apply


def r(*shape, seed=0, positive=False, away_from_ints=False):
    x = np.random.default_rng(seed).standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.5
    if away_from_ints:  # keep finite differences off the jumps of floor/round/...
        x = np.floor(x * 3) / 3 + 0.17
    return x


def idx(values):
    from graphtorch import tensor

    return tensor(np.array(values, dtype=np.int64))


_BIAS = gt.tensor(np.where(np.arange(20).reshape(1, 4, 5) % 7 == 3, -np.inf, np.linspace(-1, 1, 20).reshape(1, 4, 5)))
_BIAS[..., 2, :] = -np.inf  # a row masked whole: zeros, and no gradient

_POOL = dict(out=(4, 3), kernel=(3, 2), stride=(2, 2), padding=(1, 1), dilation=(1, 2), adaptive=False)
_AVG = dict(_POOL, dilation=(1, 1), count_include_pad=False, divisor=0)
_ADAPTIVE = dict(out=(3, 4), kernel=(0, 0), stride=(0, 0), padding=(0, 0), dilation=(1, 1), adaptive=True)

# primitive -> list of (fn over graphtorch tensors, inputs); float64 arrays are differentiated
CASES = {
    "add": [(lambda a, b: apply("add", a, b), [r(3, 5), r(3, 5, seed=1)])],
    "sub": [(lambda a, b: apply("sub", a, b), [r(3, 5), r(3, 5, seed=1)])],
    "mul": [(lambda a, b: apply("mul", a, b), [r(3, 5), r(3, 5, seed=1)])],
    "div": [(lambda a, b: apply("div", a, b), [r(3, 5), r(3, 5, seed=1, positive=True)])],
    "pow": [(lambda a, b: apply("pow", a, b), [r(2, 3, positive=True), r(2, 3, seed=1)])],
    "maximum": [(lambda a, b: apply("maximum", a, b), [r(3, 4), r(3, 4, seed=1)])],
    "minimum": [(lambda a, b: apply("minimum", a, b), [r(3, 4), r(3, 4, seed=1)])],
    "neg": [(lambda a: apply("neg", a), [r(3, 5)])],
    "exp": [(lambda a: apply("exp", a), [r(3, 5)])],
    "log": [(lambda a: apply("log", a), [r(3, 5, positive=True)])],
    "sqrt": [(lambda a: apply("sqrt", a), [r(3, 5, positive=True)])],
    "abs": [(lambda a: apply("abs", a), [r(3, 5)])],
    "sin": [(lambda a: apply("sin", a), [r(3, 5)])],
    "cos": [(lambda a: apply("cos", a), [r(3, 5)])],
    "tanh": [(lambda a: apply("tanh", a), [r(3, 5)])],
    "sigmoid": [(lambda a: apply("sigmoid", a), [r(3, 5) * 4])],
    "erf": [(lambda a: apply("erf", a), [r(3, 5)])],
    "sign": [(lambda a: apply("sign", a), [r(3, 5)])],
    "floor": [(lambda a: apply("floor", a), [r(3, 5, away_from_ints=True)])],
    "ceil": [(lambda a: apply("ceil", a), [r(3, 5, away_from_ints=True)])],
    "round": [(lambda a: apply("round", a), [r(3, 5, away_from_ints=True)])],
    "floor_divide": [(lambda a, b: apply("floor_divide", a, b), [r(3, 4, away_from_ints=True), np.full((3, 4), 2.0)])],
    "remainder": [(lambda a, b: apply("remainder", a, b), [r(3, 4, away_from_ints=True), np.full((3, 4), 1.3)])],
    "copy": [(lambda a: apply("copy", a), [r(3, 5).T])],
    # float32 in the middle: a coarser step, or rounding swamps the difference quotient
    "cast": [(lambda a: apply("cast", apply("cast", a, dtype=float32), dtype=float64), [r(3, 5)],
              dict(eps=1e-3, rtol=1e-3, atol=1e-4)),
             (lambda a: apply("cast", a, dtype=float32), [r(3, 5)], dict(eps=1e-3, rtol=1e-3, atol=1e-4))],
    "where": [(lambda a, b: apply("where", apply("gt", a, b), a, b), [r(3, 5), r(3, 5, seed=1)])],
    "expand": [(lambda a: apply("expand", a, shape=(2, 3, 4)), [r(3, 1)]),
               (lambda a: apply("expand", a, shape=(4, 5)), [r(5)])],
    "reshape": [(lambda a: apply("reshape", a, shape=(5, 3)), [r(3, 5)])],
    "permute": [(lambda a: apply("permute", a, dims=(2, 0, 1)), [r(2, 3, 5)])],
    "slice": [(lambda a: apply("slice", a, starts=(1, 0), stops=(6, 5), steps=(2, 3)), [r(7, 5)]),
              (lambda a: apply("slice", a, starts=(0, 2, 1), stops=(2, 3, 4), steps=(1, 1, 2)), [r(2, 3, 5)])],
    "pad": [(lambda a: apply("pad", a, pads=((1, 2), (0, 3)), value=0.5), [r(3, 4)])],
    "concat": [(lambda a, b, c: apply("concat", a, b, c, dim=1), [r(2, 3), r(2, 1, seed=1), r(2, 4, seed=2)])],
    "gather": [(lambda a: apply("gather", a, idx([[0, 2, 2], [1, 0, 1]]), dim=1), [r(3, 4)]),
               (lambda a: apply("gather", a, idx([[2, 0], [0, 0]]), dim=0), [r(3, 3)])],
    "scatter_add": [(lambda a, s: apply("scatter_add", a, idx([[0, 2, 2], [1, 0, 1]]), s, dim=1),
                     [r(2, 4), r(2, 3, seed=1)])],
    "unfold": [(lambda a: apply("unfold", a, kernel=(2, 3), stride=(1, 2), dilation=(2, 1)), [r(2, 2, 5, 7)])],
    "fold": [(lambda c: apply("fold", c, size=(5, 7), stride=(1, 2), dilation=(2, 1)), [r(2, 2, 3, 3, 2, 3)])],
    "sum": [(lambda a: apply("sum", a, dims=(0, 2), keepdim=False), [r(3, 4, 5)]),
            (lambda a: apply("sum", a, dims=(1,), keepdim=True), [r(3, 4, 5)])],
    "prod": [(lambda a: apply("prod", a, dims=(1,), keepdim=False), [r(3, 4, positive=True)])],
    "max": [(lambda a: apply("max", a, dims=(1,), keepdim=False), [r(3, 5)]),
            (lambda a: apply("max", a, dims=(0, 1), keepdim=True), [r(3, 5)])],
    "min": [(lambda a: apply("min", a, dims=(0,), keepdim=True), [r(3, 5)])],
    "cumsum": [(lambda a: apply("cumsum", a, dim=1), [r(3, 5)])],
    "matmul": [(lambda a, b: apply("matmul", a, b), [r(3, 5), r(5, 2, seed=1)]),
               (lambda a, b: apply("matmul", a, b), [r(2, 3, 5), r(2, 5, 4, seed=1)])],
    "conv2d": [
        (lambda x, w: apply("conv2d", x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
         [r(2, 3, 5, 6), r(4, 3, 3, 2, seed=1)]),
        (lambda x, w: apply("conv2d", x, w, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=1),
         [r(1, 2, 7, 6), r(3, 2, 3, 3, seed=1)]),
        (lambda x, w: apply("conv2d", x, w, stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2),
         [r(2, 4, 6, 7), r(6, 2, 2, 3, seed=1)]),
    ],
    "inverse": [(lambda a: apply("inverse", a), [r(3, 3) + 3 * np.eye(3)])],
    "det": [(lambda a: apply("det", a), [r(2, 3, 3) + 3 * np.eye(3)])],
    "slogdet": [(lambda a: apply("slogdet", a), [r(2, 3, 3) + 3 * np.eye(3)])],
    # cholesky reads the lower triangle: differentiate through a symmetric function of a
    "cholesky": [(lambda a: apply("cholesky", a @ a.transpose(-1, -2) + gt.eye(3, dtype=gt.float64) * 3), [r(3, 3)])],
    "qr": [(lambda a, mode=mode, part=part: apply("qr", a, mode=mode, part=part), [r(*shape)])
           for shape, mode in [((4, 3), "reduced"), ((3, 5), "reduced"), ((2, 3, 3), "complete")] for part in "QR"],
    # U and Vh are unique up to the signs of their columns/rows: differentiate a sign-free function
    "svd": [(lambda a, part=part: apply("svd", a, full_matrices=False, part=part) ** 2, [r(*shape)])
            for shape in [(4, 3), (2, 3, 5)] for part in ("U", "S", "Vh")],
    "cumprod": [(lambda a: apply("cumprod", a, dim=1), [r(3, 4)]), (lambda a: apply("cumprod", a, dim=0), [r(4)])],
    # the output's first Dv columns (the logsumexp column is the backward's own: no gradient flows back
    # through it); a bias with -inf entries (one row masked whole), causal rows; both backwards: the
    # attention_grad kernels' numpy forms, and attention_probs' GEMM one
    "attention": [(lambda q, k, v, causal=causal: apply("attention", q, k, v, _BIAS, scale=0.7, causal=causal, masked_rows="zero")
                   [..., :3], [r(2, 4, 2), r(2, 5, 2, seed=1), r(2, 5, 3, seed=2)]) for causal in (False, True)],
    "layer_norm": [(lambda x, w, b: apply("layer_norm", x, w, b, eps=1e-5), [r(3, 5), r(5, seed=1), r(5, seed=2)])],
    "softmax": [(lambda a, log=log: apply("softmax", a, log=log), [r(3, 5)]) for log in (False, True)],
    "attention_probs": [(lambda q, k, causal=causal: apply("attention_probs", q, k, _BIAS, scale=0.7, causal=causal,
                                            masked_rows="zero"), [r(2, 4, 2), r(2, 5, 2, seed=1)])
                        for causal in (False, True)],
    # pooling (compiler/pooling.py): distinct values, so the max is differentiable; the gradients'
    # own VJPs (double backward) by differentiating them in the output gradient g
    "max_pool": [(lambda a: apply("max_pool", a, **_POOL), [r(2, 2, 7, 6)]),
                 (lambda a: apply("max_pool", a, **_ADAPTIVE), [r(1, 2, 5, 7)])],
    "max_pool_grad": [(lambda x, g: apply("max_pool_grad", x, g, **_POOL), [gt.tensor(r(2, 2, 7, 6)), r(2, 2, 4, 3)])],
    "avg_pool": [(lambda a: apply("avg_pool", a, **_AVG), [r(2, 2, 7, 6)]),
                 (lambda a: apply("avg_pool", a, **_ADAPTIVE, count_include_pad=False, divisor=0), [r(1, 2, 5, 7)])],
    "avg_pool_grad": [(lambda g: apply("avg_pool_grad", g, **_AVG, size=(7, 6)), [r(2, 2, 4, 3)])],
}


# all_reduce needs a process group: tests/graphtorch/distributed checks its derivative under mpiexec
NEEDS_MPI = {"all_reduce"}


def test_every_rule_is_checked():
    assert set(CASES) == set(RULES) - NEEDS_MPI, f"add gradcheck cases for {sorted(set(RULES) - NEEDS_MPI - set(CASES))}"


@pytest.mark.parametrize("case", [(p, k) for p in sorted(CASES) for k in range(len(CASES[p]))], ids=str)
def test_vjp_matches_finite_differences(case):
    prim, k = case
    fn, inputs, *options = CASES[prim][k]
    gradcheck(fn, inputs, **(options[0] if options else {}))


def test_gradcheck_catches_a_wrong_rule(monkeypatch):
    """The helper can fail: a rule off by a factor of 2 is caught."""
    from graphtorch import autograd_rules

    original = RULES["sin"]
    wrong = autograd_rules.Rule("SinBackward0", lambda g, s, attrs, t: (apply("mul", original.fn(g, s, attrs, t)[0],
                                                                                 apply("add", g, g)),), (0,))
    monkeypatch.setitem(RULES, "sin", wrong)
    with pytest.raises(AssertionError):
        gradcheck(lambda a: apply("sin", a), [r(4)])


def test_integer_index_inputs_get_no_gradient():
    assert idx([0]).dtype is int64
