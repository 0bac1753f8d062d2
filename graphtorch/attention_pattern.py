"""While tracing, attention written out by hand becomes the fused `attention` op.

    att = (q @ k.transpose(-2, -1)) * scale        # or / scale, or no scale
    att = att.masked_fill(mask, float("-inf"))      # optional
    out = F.softmax(att, dim=-1) @ v

is what a GPT, nanoGPT and many tutorials write. `matmul(probs, v)` asks `fused_matmul` first:
it reads the graph recorded so far backwards from `probs` (the softmax node, the where of
masked_fill, the scaling mul) down to the scores' matmul, and when every step
matches it returns attention(q, k, v, bias) instead, with `masked_rows="nan"` so a row masked
whole gives NaN as the softmax written out does. The recognized nodes stay in the graph; if
nothing else reads them, dead-code elimination drops them. Only the trace is rewritten: eager
mode runs the user's ops as written, and compiled results equal them within float tolerance
(another summation order). Anything else (a finite fill value, softmax over another dim, a
score used twice in between) is left alone.
"""

from __future__ import annotations

import math

from . import dispatch
from .compiler.ir import Node
from .tensor import Tensor


def fused_matmul(probs: Tensor, value: Tensor) -> Tensor | None:
    """attention(q, k, v) for `probs @ value` when probs is a recognized softmax of scores."""
    tracer = dispatch._tracer
    if tracer is None or probs._node is None or probs.ndim < 2 or value.ndim != probs.ndim:
        return None
    scores = _softmax_input(probs._node)
    masked = _unmask(scores) if scores is not None else None
    if masked is None:
        return None
    scaled, blocked = masked
    unscaled = _unscale(scaled)
    if unscaled is None or unscaled[0].target != "matmul":
        return None
    (q_node, kt_node), scale = unscaled[0].inputs, unscaled[1]
    q, kt = tracer.outputs.get(q_node), tracer.outputs.get(kt_node)
    mask = tracer.outputs.get(blocked) if blocked is not None else None
    if q is None or kt is None or q._node is not q_node or kt._node is not kt_node or (
            blocked is not None and (mask is None or mask._node is not blocked)):
        return None
    if tuple(value.shape[:-1]) != tuple(kt.shape[:-2]) + (kt.shape[-1],) or value.dtype is not q.dtype:
        return None
    return _attend(q, kt.transpose(-2, -1), value, mask, scale)


def _attend(q: Tensor, k: Tensor, v: Tensor, blocked: Tensor | None, scale: float) -> Tensor:
    from .nn._attention import NEG_INF, fused_attention
    from .ops.creation import zeros

    if blocked is None:
        bias = zeros(*(1,) * q.ndim, dtype=q.dtype)
    else:
        bias = zeros(*blocked.shape, dtype=q.dtype).masked_fill(blocked, NEG_INF)
        bias = bias.reshape(*(1,) * (q.ndim - bias.ndim), *bias.shape)
    return fused_attention(q, k, v, bias, scale, causal=False, masked_rows="nan")


def _call(n: Node, target: str) -> bool:
    return n.op == "call" and n.target == target


def _unexpand(n: Node) -> Node:
    return n.inputs[0] if _call(n, "expand") else n


def _constant(n: Node) -> float | None:
    """The value of a scalar `full` (expanded or not)."""
    n = _unexpand(n)
    return float(n.attrs["value"]) if _call(n, "full") and n.type.numel == 1 else None


def _softmax_input(p: Node) -> Node | None:
    """x for p = softmax(x) over the last dim (the `softmax` primitive, F.softmax(x, -1)'s)."""
    return p.inputs[0] if _call(p, "softmax") and not p.attrs["log"] else None


def _unmask(x: Node) -> tuple[Node, Node | None] | None:
    """(scores, blocked) for x = where(blocked, -inf, scores), or (x, None) when x is no where."""
    if not _call(x, "where"):
        return x, None
    cond, fill, scores = x.inputs
    if _constant(fill) != -math.inf:
        return None
    return scores, _unexpand(cond)


def _unscale(x: Node) -> tuple[Node, float] | None:
    """(raw, scale) for x = raw * c, raw / c or raw itself."""
    if _call(x, "mul") or _call(x, "div"):
        c = _constant(x.inputs[1])
        if c is None or c == 0.0:
            return None
        return x.inputs[0], c if x.target == "mul" else 1.0 / c
    return x, 1.0
