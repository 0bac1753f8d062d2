"""Per-head attention written by hand, as the tiny GPT does (q @ k^T, softmax, @ v): its small batched
matmuls and their gradients take the GEMM's small path (A and B read in place), compiled equal to
eager and both equal to PyTorch, in float32 and float64."""

import math

import numpy as np
import pytest

import graphtorch as gt

torch = pytest.importorskip("torch")


def attention(fw, x, w):
    """x: (b, t, d) -> heads of x @ w split in q, k, v (transposed views, as the GPT makes them)."""
    b, t, d = x.shape
    heads = 2
    q, k, v = ((x @ w).split(d, dim=2)[i].reshape(b, t, heads, d // heads).transpose(1, 2) for i in range(3))
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // heads))
    return (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)


SHAPES = [(2, 9, 10), (4, 32, 32), (3, 33, 14), (1, 1, 2)]  # (batch, tokens, width): heads of width/2


def _inputs(fw, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((shape[2], 3 * shape[2])) / np.sqrt(shape[2])).astype(dtype)
    return [fw.from_numpy(a.copy()).requires_grad_() for a in (x, w)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_hand_written_attention_compiled_equals_eager_and_torch(shape, dtype):
    tol = 1e-5 if dtype == np.float32 else 1e-11
    inputs = {fw: _inputs(fw, shape, dtype, seed=sum(shape)) for fw in (gt, torch)}
    compiled = gt.compile(lambda x, w: attention(gt, x, w))
    compiled(*inputs[gt])  # the first call runs eagerly
    results = {"eager": attention(gt, *inputs[gt]), "compiled": compiled(*inputs[gt]),
               "torch": attention(torch, *inputs[torch])}
    upstream = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    want = results["torch"].detach().numpy()
    want_grads = torch.autograd.grad(results["torch"], inputs[torch], torch.from_numpy(upstream))
    for name in ("eager", "compiled"):
        got = results[name]
        assert got.dtype is inputs[gt][0].dtype, name
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=tol, atol=tol, err_msg=name)
        grads = gt.autograd.grad(got, inputs[gt], gt.from_numpy(upstream))
        for g, t in zip(grads, want_grads):
            np.testing.assert_allclose(g.numpy(), t.numpy(), rtol=10 * tol, atol=10 * tol, err_msg=name)
