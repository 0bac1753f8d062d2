"""Compiled scaled_dot_product_attention on the long path (the blocked kernels of
compiler/llvm/flash.py) against torch 2.13: output and q/k/v gradients for lengths around the
64-row block, head sizes off the vector width, causal or not, boolean and float masks, float32
and float64, at 1 and 2 threads; and float64 finite differences of the compiled function."""

import numpy as np
import pytest

import graphtorch as gt
import graphtorch.nn.functional as F
from graphtorch.compiler.attention import SAVED_PROBS_LIMIT

torch = pytest.importorskip("torch")

SHAPES = [(65, 65, 5, 33), (130, 130, 33, 5), (130, 65, 32, 16), (65, 130, 1, 1)]  # (Tq, Tk, D, Dv)
assert all(tq * tk > SAVED_PROBS_LIMIT for tq, tk, _, _ in SHAPES)  # each takes the attention kernel


def _arrays(tq, tk, d, dv, dtype, mask):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(dtype) for s in ((2, 2, tq, d), (2, 2, tk, d), (2, 2, tk, dv))]
    arrays.append(rng.standard_normal((2, 2, tq, dv)).astype(dtype))  # the weights of the summed output
    if mask == "bool":
        m = rng.random((tq, tk)) > 0.3
        m[min(70, tq - 1)] = False  # a row in the second query block that attends nowhere
        return arrays, m
    if mask == "float":
        m = rng.standard_normal((2, 1, tq, tk)).astype(dtype)
        m[..., 3, :] = -np.inf
        return arrays, m
    return arrays, None


def _run(fw, arrays, mask, causal, compiled):
    F_ = F if fw is gt else torch.nn.functional
    q, k, v = (fw.tensor(a, requires_grad=True) for a in arrays[:3])
    w, m = fw.tensor(arrays[3]), None if mask is None else fw.tensor(mask)
    fn = lambda q, k, v: F_.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=causal)  # noqa: E731
    out = (gt.compile(fn) if compiled else fn)(q, k, v)
    (out * w).sum().backward()
    return [t.detach().numpy() for t in (out, q.grad, k.grad, v.grad)]


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request):
    old = gt.get_num_threads()
    gt.set_num_threads(request.param)
    yield request.param
    gt.set_num_threads(old)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mask", [None, "causal", "bool", "float"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_compiled_long_sdpa_matches_torch(shape, mask, dtype, threads):
    arrays, m = _arrays(*shape, dtype, mask)
    causal = mask == "causal"
    got = _run(gt, arrays, m, causal, compiled=True)
    want = _run(torch, arrays, m, causal, compiled=False)
    tol = 1e-4 if dtype == np.float32 else 1e-10  # float32: exp within 1 ulp, sums in another order
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert g.dtype == w.dtype, name
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=name)


def test_compiled_long_sdpa_gradients_match_finite_differences():
    """float64 central differences of the compiled causal attention (Tq 65, Tk 70: two blocks each)."""
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(s) for s in ((1, 1, 65, 3), (1, 1, 70, 3), (1, 1, 70, 2))]
    weights = rng.standard_normal((1, 1, 65, 2))
    fn = gt.compile(lambda q, k, v: (F.scaled_dot_product_attention(q, k, v, is_causal=True) * gt.tensor(weights)).sum())
    args = [gt.tensor(a, requires_grad=True) for a in arrays]
    fn(*args).backward()
    eps = 1e-6
    value = lambda which, x: fn(*[gt.tensor(x if n == which else a) for n, a in enumerate(arrays)]).item()  # noqa: E731
    for which, (arg, array) in enumerate(zip(args, arrays)):
        for index in [(0, 0, 0, 0), (0, 0, 64, 1), (0, 0, array.shape[2] - 1, array.shape[3] - 1)]:
            plus, minus = array.copy(), array.copy()
            plus[index] += eps
            minus[index] -= eps
            numeric = (value(which, plus) - value(which, minus)) / (2 * eps)
            np.testing.assert_allclose(arg.grad.numpy()[index], numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("wanted", ["k", "v", "kv", "qv"])
def test_compiled_long_sdpa_gradients_of_some_inputs(wanted):
    """Only some of q, k, v require grad: the backward runs the one kernel per gradient (dk or dv
    alone) or the shared dk|dv kernel, and matches torch."""
    arrays, _ = _arrays(*SHAPES[0], np.float64, None)
    results = []
    for fw in (gt, torch):
        q, k, v = (fw.tensor(a, requires_grad=name in wanted) for name, a in zip("qkv", arrays[:3]))
        if fw is gt:
            out = gt.compile(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True))(q, k, v)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        (out * fw.tensor(arrays[3])).sum().backward()
        results.append([t.grad.numpy() if name in wanted else t.grad for name, t in zip("qkv", (q, k, v))])
    for name, got, want in zip("qkv", *results):
        assert (got is None) == (want is None) == (name not in wanted), name
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10, err_msg=name)
