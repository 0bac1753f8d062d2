"""Fused attention: the `attention`, `attention_probs` and `attention_grad` primitives (type rules and numpy kernels).

`attention(q, k, v, bias, scale, causal)` is softmax(q k^T * scale + bias) v over the last two
dims, with keys after the query's position skipped when `causal` (torch's is_causal: top-left
aligned). A row whose every score is -inf (fully masked) gives zeros when `masked_rows="zero"`
(torch's SDPA CPU kernels) or NaN when "nan" (softmax written out: graphtorch/attention_pattern.py).
A group has one output, so the row's logsumexp rides along as one extra last column:
the result is (..., Tq, Dv + 1), the user-level op slices off the first Dv columns and the
backward reads the last one. The backends compute it per query row with an online softmax over
blocks of keys, so the (Tq, Tk) score matrix is never written (compiler/llvm/attention.py,
compiler/cuda/attention.py); these numpy kernels (eager mode, the interpreter) materialize it.

`attention_grad(q, k, v, bias, fwd, dout, delta, ..., wrt)` is the gradient with respect to one of
q, k, v ("q", "k" or "v"), or to k and v at once ("kv": (..., Tk, D + Dv), dk's columns then dv's,
so one kernel shares the probabilities and dS of each block between them): it recomputes the probabilities from the saved logsumexp (the last
column of `fwd`); `delta` is rowsum(dout * out), the softmax backward's row term.

`attention_probs(q, k, bias, ...)` is the softmax alone, (..., Tq, Tk): for short sequences
(SAVED_PROBS_LIMIT scores per head) the user-level op runs it and a matmul with v, so the
backward reads the saved probabilities with GEMMs instead of recomputing an exp per (query, key)
pair in each of three attention_grad kernels; its scores, mask and softmax are still one kernel.

`bias` is additive (a boolean mask arrives as 0 / -inf) and broadcasts: it has q's rank and each
dim is 1 or q's (Tk for the last), so a (T, T) mask is read in place, never expanded.
"""

from __future__ import annotations

import numpy as np

from .dtypes import TensorType
from .primitives import Kind, _register, check

SAVED_PROBS_LIMIT = 4096  # scores per head (64 x 64) up to which attention_probs + matmul run instead
WRT = ("q", "k", "v", "kv")
MASKED_ROWS = ("zero", "nan")


def operands(node) -> tuple:
    """(q, k, v, bias) of an attention, attention_grad or attention_probs node; attention_probs has no
    v, so k stands in for it (its head size is then k's, which its kernels never read)."""
    if node.target == "attention_probs":
        q, k, bias = node.inputs
        return q, k, k, bias
    return tuple(node.inputs[:4])


def head_dims(node) -> tuple[tuple[int, ...], int, int, int, int]:
    """(batch dims, Tq, D, Tk, Dv) of an attention-family node."""
    q, k, v, _ = operands(node)
    *batch, tq, d = q.type.shape
    return tuple(batch), tq, d, k.type.shape[-2], v.type.shape[-1]


def _check_operands(q: TensorType, k: TensorType, v: TensorType, bias: TensorType) -> None:
    check(q.dtype.is_floating_point and q.dtype is k.dtype is v.dtype is bias.dtype,
          f"attention: q, k, v and bias must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}, "
          f"{bias.dtype}")
    check(q.ndim >= 2 and q.ndim == k.ndim == v.ndim == bias.ndim,
          f"attention: q, k, v and bias must have one rank >= 2, got {q.shape}, {k.shape}, {v.shape}, {bias.shape}")
    check(q.shape[:-2] == k.shape[:-2] == v.shape[:-2] and k.shape[-2] == v.shape[-2] and q.shape[-1] == k.shape[-1],
          f"attention: expected q (..., Tq, D), k (..., Tk, D), v (..., Tk, Dv) with equal batch dims, got "
          f"{q.shape}, {k.shape}, {v.shape}")
    full = q.shape[:-1] + k.shape[-2:-1]
    check(all(b in (1, f) for b, f in zip(bias.shape, full)),
          f"attention: bias {bias.shape} must broadcast to the scores {full} (each dim 1 or equal)")


def _attention_infer(q, k, v, bias, *, scale, causal, masked_rows):
    _check_operands(q, k, v, bias)
    check(masked_rows in MASKED_ROWS, f"attention: masked_rows must be one of {MASKED_ROWS}, got {masked_rows!r}")
    return TensorType(q.shape[:-1] + (v.shape[-1] + 1,), q.dtype)


def _probs_infer(q, k, bias, *, scale, causal, masked_rows):
    _check_operands(q, k, k, bias)
    check(masked_rows in MASKED_ROWS, f"attention: masked_rows must be one of {MASKED_ROWS}, got {masked_rows!r}")
    return TensorType(q.shape[:-1] + k.shape[-2:-1], q.dtype)


def _grad_infer(q, k, v, bias, fwd, dout, delta, *, scale, causal, masked_rows, wrt):
    _check_operands(q, k, v, bias)
    check(wrt in WRT, f"attention_grad: wrt must be one of {WRT}, got {wrt!r}")
    check(fwd.shape == q.shape[:-1] + (v.shape[-1] + 1,) and dout.shape == q.shape[:-1] + v.shape[-1:]
          and delta.shape == q.shape[:-1],
          f"attention_grad: fwd {fwd.shape}, dout {dout.shape}, delta {delta.shape} do not match q {q.shape}, "
          f"v {v.shape}")
    if wrt == "kv":
        return TensorType(k.shape[:-1] + (k.shape[-1] + v.shape[-1],), k.dtype)
    return {"q": q, "k": k, "v": v}[wrt]


def _scores(q, k, bias, scale, causal) -> np.ndarray:
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * q.dtype.type(scale) + bias
    if causal:
        tq, tk = s.shape[-2:]
        s = np.where(np.tril(np.ones((tq, tk), dtype=bool)), s, -np.inf).astype(q.dtype)
    return s


def _attention(q, k, v, bias, *, scale, causal, masked_rows):
    s = _scores(q, k, bias, scale, causal)
    m = s.max(-1, keepdims=True)
    dead = m == -np.inf
    e = np.exp(s - np.where(dead, 0, m))
    total = e.sum(-1, keepdims=True)
    out = np.matmul(e / np.where(total == 0, 1, total), v)
    nan = masked_rows == "nan"
    out = np.where(dead, np.nan if nan else 0, out)
    lse = np.where(dead, np.nan if nan else -np.inf, m + np.log(np.where(total == 0, 1, total)))
    return np.concatenate([out, lse], -1).astype(q.dtype)


def _attention_probs(q, k, bias, *, scale, causal, masked_rows):
    s = _scores(q, k, bias, scale, causal)
    m = s.max(-1, keepdims=True)
    dead = m == -np.inf
    e = np.exp(s - np.where(dead, 0, m))
    total = e.sum(-1, keepdims=True)
    p = np.where(dead, np.nan if masked_rows == "nan" else 0, e / np.where(total == 0, 1, total))
    return p.astype(q.dtype)


def _probabilities(q, k, bias, fwd, scale, causal) -> np.ndarray:
    """exp(score - logsumexp): 0 on a row masked whole with zeros, NaN on one masked with NaN."""
    lse = fwd[..., -1:]
    p = np.exp(_scores(q, k, bias, scale, causal) - np.where(lse == -np.inf, 0, lse))
    return np.where(lse == -np.inf, 0, p).astype(q.dtype)


def _attention_grad(q, k, v, bias, fwd, dout, delta, *, scale, causal, masked_rows, wrt):
    p = _probabilities(q, k, bias, fwd, scale, causal)
    dv = np.matmul(np.swapaxes(p, -1, -2), dout)
    if wrt == "v":
        return dv
    ds = p * (np.matmul(dout, np.swapaxes(v, -1, -2)) - delta[..., None]) * q.dtype.type(scale)
    if wrt == "q":
        return np.matmul(ds, k)
    dk = np.matmul(np.swapaxes(ds, -1, -2), q)
    return dk if wrt == "k" else np.concatenate([dk, dv], -1)


def register() -> None:
    _register("attention", Kind.OPAQUE, _attention_infer, _attention,
              "softmax(q k^T * scale + bias, causal) v per query row, its logsumexp as one extra last column",
              attrs=("scale", "causal", "masked_rows"))
    _register("attention_probs", Kind.OPAQUE, _probs_infer, _attention_probs,
              "softmax(q k^T * scale + bias, causal) alone, in one kernel (short sequences: then a matmul with v)",
              attrs=("scale", "causal", "masked_rows"))
    _register("attention_grad", Kind.OPAQUE, _grad_infer, _attention_grad,
              "the gradient of attention with respect to q, k, v or k and v side by side (wrt), recomputed from the saved logsumexp",
              attrs=("scale", "causal", "masked_rows", "wrt"))
