"""Fused attention from the user's side: scaled_dot_product_attention on its two fused paths
(attention + attention_grad for long sequences, attention_probs + a GEMM for short ones) against
torch in values and gradients, float64 finite differences, compiled equal to eager with the fused
kernels in the `fused` dump, and the softmax(q k^T) @ v that a GPT writes out recognized while
tracing (and left alone where it differs); on CUDA tensors through the fake driver."""

import math

import numpy as np
import pytest
from conftest import gradcheck

import graphtorch as gt
import graphtorch.nn.functional as F
from graphtorch.compiler.attention import SAVED_PROBS_LIMIT

torch = pytest.importorskip("torch")

LONG, SHORT = 70, 9  # 70 x 70 scores per head run the attention kernel; 9 x 13, attention_probs
assert LONG * LONG > SAVED_PROBS_LIMIT >= SHORT * 13


def _qkv(tq, tk, dtype=np.float32, seed=0, d=5, dv=3):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in ((2, 3, tq, d), (2, 3, tk, d), (2, 3, tk, dv))]


def _mask(kind, tq, tk, dtype=np.float32):
    rng = np.random.default_rng(1)
    if kind == "bool":
        m = rng.random((tq, tk)) > 0.4
        m[min(1, tq - 1)] = False  # a row that attends nowhere: zeros, and no gradient
        return m
    if kind == "float":
        m = rng.standard_normal((3, tq, tk)).astype(dtype)
        m[:, 0, 1:] = -np.inf
        return m
    return None


def _both(arrays, mask, **kw):
    """(graphtorch, torch) outputs and q/k/v gradients for one weighted sum of the output."""
    results = []
    for fw, F_ in ((gt, F), (torch, torch.nn.functional)):
        q, k, v = (fw.tensor(a, requires_grad=True) for a in arrays)
        out = F_.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else fw.tensor(mask), **kw)
        w = np.random.default_rng(9).standard_normal(tuple(out.shape)).astype(arrays[0].dtype)
        (out * fw.tensor(w)).sum().backward()
        results.append([t.detach().numpy() for t in (out, q.grad, k.grad, v.grad)])
    return results


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask", [None, "bool", "float", "causal"])
@pytest.mark.parametrize("tq,tk", [(LONG, LONG), (LONG, 66), (SHORT, 13), (1, 1)])
def test_sdpa_matches_torch(tq, tk, mask, dtype):
    kw = {"is_causal": True} if mask == "causal" else {}
    got, want = _both(_qkv(tq, tk, dtype), None if mask == "causal" else _mask(mask, tq, tk, dtype), **kw)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert g.dtype == w.dtype, name
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("tq", [LONG - 5, 4])
def test_sdpa_gradients_match_finite_differences(tq):
    """float64 central differences through both backwards (attention_grad kernels, GEMMs on saved
    probabilities), with a causal mask and a boolean mask with a row masked whole."""
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal(s) for s in ((1, 1, tq, 2), (1, 1, tq, 2), (1, 1, tq, 2)))
    mask = gt.tensor(rng.random((tq, tq)) > 0.3)
    mask[0] = False
    gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), [q, k, v], atol=1e-6)
    gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=mask), [q, k, v], atol=1e-6)


def _fused_nodes(fn, args, tmp_path) -> tuple[str, list]:
    """The forward `fused` dump of compiled fn, and the compiled call's output and gradients."""
    compiled = gt.compile(fn, dump_dir=str(tmp_path))
    compiled(*args)
    out = compiled(*args)
    grads = gt.autograd.grad(out.sum(), args) if out.requires_grad else ()
    dump = tmp_path / "forward" / "fused.txt" if out.requires_grad else tmp_path / "fused.txt"
    return dump.read_text(), [out, *grads]


def _eager(fn, args) -> list:
    out = fn(*args)
    return [out, *(gt.autograd.grad(out.sum(), args) if out.requires_grad else ())]


def _assert_close(got, want, tol=2e-5):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.detach().numpy(), w.detach().numpy(), rtol=tol, atol=tol, equal_nan=True)


@pytest.mark.parametrize("t,kernel", [(32, "= attention_probs("), (LONG, "= attention(")])
def test_compiled_sdpa_is_one_fused_kernel_and_equals_eager(t, kernel, tmp_path):
    args = [gt.tensor(a, requires_grad=True) for a in _qkv(t, t)]
    fn = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
    dump, got = _fused_nodes(fn, args, tmp_path)
    assert kernel in dump and "matmul(%q" not in dump  # the scores never come from a GEMM
    _assert_close(got, _eager(fn, args))


def gpt_attention(mask: gt.Tensor, fill: float = -math.inf):
    """Attention as a GPT writes it (benchmarks/transformer.py, nanoGPT)."""
    def attend(q, k, v):
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        att = F.softmax(att.masked_fill(mask == 0, fill), dim=-1)
        return att @ v
    return attend


@pytest.mark.parametrize("t", [32, LONG])
def test_written_out_attention_is_recognized_while_tracing(t, tmp_path):
    args = [gt.tensor(a, requires_grad=True) for a in _qkv(t, t, d=16, dv=16)]
    fn = gpt_attention(gt.tril(gt.ones(t, t)))
    dump, got = _fused_nodes(fn, args, tmp_path)
    assert "masked_rows='nan'" in dump and " = exp(" not in dump
    _assert_close(got, _eager(fn, args))


def test_written_out_attention_with_a_row_masked_whole_gives_nan_as_eager(tmp_path):
    mask = gt.tril(gt.ones(8, 8))
    mask[3] = 0  # softmax over a row of -inf: NaN, in eager mode and compiled
    args = [gt.tensor(a) for a in _qkv(8, 8)]
    fn = gpt_attention(mask)
    dump, got = _fused_nodes(fn, args, tmp_path)
    want = _eager(fn, args)
    assert "= attention_probs(" in dump and np.isnan(want[0].numpy()[:, :, 3]).all()
    _assert_close(got, want)


@pytest.mark.parametrize("what", ["finite fill", "softmax over dim 2", "scores used twice"])
def test_other_shapes_of_the_pattern_are_left_alone(what, tmp_path):
    args = [gt.tensor(a, requires_grad=True) for a in _qkv(6, 6)]
    mask = gt.tril(gt.ones(6, 6))
    if what == "finite fill":  # where(-1e9) is not an additive -inf bias
        fn = gpt_attention(mask, fill=-1e9)
    elif what == "softmax over dim 2":
        fn = lambda q, k, v: F.softmax(q @ k.transpose(-2, -1), dim=2) @ v  # noqa: E731
    else:
        def fn(q, k, v):
            s = q @ k.transpose(-2, -1)
            return F.softmax(s, dim=-1) @ v + s.sum(-1, keepdim=True)
    dump, got = _fused_nodes(fn, args, tmp_path)
    if what == "scores used twice":  # still recognized (the scores' other use keeps its matmul)
        assert "= attention_probs(" in dump
    else:
        assert "= attention" not in dump
    _assert_close(got, _eager(fn, args))


@pytest.fixture
def fake_cuda(monkeypatch):
    from fake_cuda_driver import install, reset

    from graphtorch.compiler.cuda import hostcheck

    if not hostcheck.available():
        pytest.skip("g++ is needed: the fake driver runs the emitted kernels on the CPU")
    yield install(monkeypatch)
    reset()


@pytest.mark.parametrize("t", [SHORT, LONG])
def test_sdpa_on_cuda_tensors_equals_the_cpu(t, fake_cuda):
    arrays, mask = _qkv(t, t), _mask("bool", t, t)
    results = []
    for device in ("cpu", "cuda"):
        q, k, v = (gt.tensor(a).to(device).requires_grad_() for a in arrays)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=gt.tensor(mask).to(device))
        out.sum().backward()
        results.append([t.detach().cpu().numpy() for t in (out, q.grad, k.grad, v.grad)])
    for g, w in zip(*results):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
