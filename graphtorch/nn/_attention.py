"""Attention: scaled_dot_product_attention and multi_head_attention_forward (the functional forms).

Without dropout, scaled_dot_product_attention runs the fused attention primitives (one kernel per
query row for the scores, the mask and the softmax: docs/attention.md); with dropout, broadcast batch
dims or a mask that needs a gradient it is composed of matmul, masking and softmax, as
multi_head_attention_forward is (while tracing, its softmax(q k^T) @ v is recognized and fused).
"""

from __future__ import annotations

import math

from .. import dtypes as dt
from ..compiler.attention import SAVED_PROBS_LIMIT
from ..dispatch import op
from ..ops.creation import arange, zeros
from ..ops.linalg import matmul
from ..ops.shape import cat
from ..tensor import Tensor

NEG_INF = float("-inf")


def causal_mask(rows: int, cols: int) -> Tensor:
    """Boolean (rows, cols), True where column <= row: torch's ones(L, S).tril() as a mask."""
    return arange(rows).unsqueeze(1) >= arange(cols).unsqueeze(0)


def _c_name(dtype: dt.DType) -> str:
    """torch's C++ scalar name as its messages print it: float, double, long."""
    return dtype.legacy_type.split(".")[-1].removesuffix("Tensor").lower()


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> None:
    if not (query.dtype == key.dtype == value.dtype):
        raise RuntimeError(f"Expected query, key, and value to have the same dtype, but got query.dtype: "
                           f"{_c_name(query.dtype)} key.dtype: {_c_name(key.dtype)} and value.dtype: "
                           f"{_c_name(value.dtype)} instead.")
    if min(query.ndim, key.ndim, value.ndim) < 2:
        raise RuntimeError(f"Expected query, key, and value to all be  at least 2 dimensional, but got query.dim: "
                           f"{query.ndim} key.dim: {key.ndim} and value.dim: {value.ndim} instead.")


def _blocked(attn_mask: Tensor | None, is_causal: bool, rows: int, cols: int) -> Tensor | None:
    """Where attention is forbidden (bool): a bool mask's False, a float mask's -inf, or causality."""
    if is_causal:
        return ~causal_mask(rows, cols)
    if attn_mask is None:
        return None
    return ~attn_mask if attn_mask.dtype is dt.bool_ else attn_mask == NEG_INF


def masked_softmax(scores: Tensor, blocked: Tensor | None) -> Tensor:
    """Softmax over the last dim that skips blocked entries; a row with nothing allowed gives zeros
    (torch's CPU kernels do this), with a zero gradient rather than NaN."""
    if blocked is None:
        return scores.softmax(-1)
    dead = blocked.all(-1, keepdim=True)
    weights = scores.masked_fill(blocked | dead, NEG_INF).masked_fill(dead, 0.0).softmax(-1)
    return weights.masked_fill(dead, 0.0)


def _share_heads(x: Tensor, query_heads: int) -> Tensor:
    """Grouped-query attention: each of x's heads serves query_heads / heads consecutive query heads."""
    heads = x.shape[-3]
    if query_heads % heads:
        raise RuntimeError(f"Number of heads in key and value must divide the number of heads in query, but got "
                           f"{heads} and {query_heads}")
    group = query_heads // heads
    shape = (*x.shape[:-3], heads, group, *x.shape[-2:])
    return x.unsqueeze(-3).expand(*shape).reshape(*x.shape[:-3], query_heads, *x.shape[-2:])


@op("ScaledDotProductFlashAttentionForCpuBackward0", origin="scaled_dot_product_attention")
def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(q k^T * scale + mask) v over the last two dims; attn_mask is bool (True = attend)
    or float (added to the scores); is_causal also forbids keys after the query's position."""
    from .functional import dropout

    _check_qkv(query, key, value)
    if is_causal and attn_mask is not None:
        raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True")
    if not 0.0 <= dropout_p <= 1.0:
        raise RuntimeError(f"dropout probability has to be between 0 and 1, but got {dropout_p}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa:
        key, value = _share_heads(key, query.shape[-3]), _share_heads(value, query.shape[-3])
    bias = _fusable_bias(query, key, value, attn_mask) if dropout_p == 0.0 else None
    if bias is not None:
        return fused_attention(query, key, value, bias, scale, is_causal)
    scores = matmul(query, key.transpose(-2, -1)) * scale
    if attn_mask is not None and attn_mask.dtype is not dt.bool_:
        scores = scores + attn_mask
    weights = masked_softmax(scores, _blocked(attn_mask, is_causal, query.shape[-2], key.shape[-2]))
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    return matmul(weights, value)


def _fusable_bias(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None) -> Tensor | None:
    """The additive bias the fused kernel reads (q's rank, dims 1 or the scores'), or None where
    the composed path must run: batch dims that broadcast, a mask that needs a gradient."""
    if not query.dtype.is_floating_point or not query.ndim == key.ndim == value.ndim:
        return None
    if not query.shape[:-2] == key.shape[:-2] == value.shape[:-2] or key.shape[-2] != value.shape[-2]:
        return None
    if attn_mask is None:
        return zeros(*(1,) * query.ndim, dtype=query.dtype, device=query.device)
    scores = (*query.shape[:-1], key.shape[-2])
    lead = (1,) * (query.ndim - attn_mask.ndim)
    if attn_mask.requires_grad or attn_mask.ndim > query.ndim or not (
            attn_mask.dtype is dt.bool_ or attn_mask.dtype is query.dtype):
        return None
    if not all(m in (1, s) for m, s in zip(lead + tuple(attn_mask.shape), scores)):
        return None
    if attn_mask.dtype is dt.bool_:
        attn_mask = zeros(*attn_mask.shape, dtype=query.dtype, device=query.device).masked_fill(~attn_mask, NEG_INF)
    return attn_mask.reshape(*lead, *attn_mask.shape)


def fused_attention(query: Tensor, key: Tensor, value: Tensor, bias: Tensor, scale: float, causal: bool,
                    masked_rows: str = "zero") -> Tensor:
    """softmax(q k^T * scale + bias) v as one `attention` kernel (compiler/attention.py), which also
    returns each row's logsumexp for the backward in a last column that is sliced off here; short
    sequences run `attention_probs` (scores, mask and softmax in one kernel) and a matmul."""
    from ..dispatch import apply

    attrs = {"scale": float(scale), "causal": bool(causal), "masked_rows": masked_rows}
    if query.shape[-2] * key.shape[-2] <= SAVED_PROBS_LIMIT:
        return apply("matmul", apply("attention_probs", query, key, bias, **attrs), value)
    out = apply("attention", query, key, value, bias, **attrs)
    return out[..., :value.shape[-1]]


# ---------------------------------------------------------------- multi-head attention


def canonical_mask(mask: Tensor | None, name: str, dtype: dt.DType) -> Tensor | None:
    """A bool mask (True = ignore) becomes an additive float mask with -inf; a float one stays."""
    if mask is None:
        return None
    if mask.dtype is dt.bool_:
        return zeros(*mask.shape, dtype=dtype).masked_fill(mask, NEG_INF)
    if not mask.dtype.is_floating_point:
        raise AssertionError(f"only bool and floating types of {name} are supported")
    return mask


def _check_attn_mask(attn_mask: Tensor, tgt_len: int, src_len: int, batch_heads: int) -> Tensor:
    if attn_mask.ndim == 2:
        if tuple(attn_mask.shape) != (tgt_len, src_len):
            raise RuntimeError(f"The shape of the 2D attn_mask is {attn_mask.shape}, but should be "
                               f"{(tgt_len, src_len)}.")
        return attn_mask.unsqueeze(0)
    if attn_mask.ndim == 3:
        if tuple(attn_mask.shape) != (batch_heads, tgt_len, src_len):
            raise RuntimeError(f"The shape of the 3D attn_mask is {attn_mask.shape}, but should be "
                               f"{(batch_heads, tgt_len, src_len)}.")
        return attn_mask
    raise RuntimeError(f"attn_mask's dimension {attn_mask.ndim} is not supported")


def _in_projection(query: Tensor, key: Tensor, value: Tensor, weights: tuple, bias: Tensor | None) -> tuple:
    from .functional import linear

    biases = (None, None, None) if bias is None else bias.chunk(3)
    return tuple(linear(x, w, b) for x, w, b in zip((query, key, value), weights, biases))


def _heads(x: Tensor, length: int, batch_heads: int, head_dim: int) -> Tensor:
    """(length, batch, embed) -> (batch * heads, length, head_dim)."""
    return x.reshape(length, batch_heads, head_dim).transpose(0, 1)


def _append_kv_bias(k: Tensor, v: Tensor, bias_k: Tensor, bias_v: Tensor, masks: list) -> tuple:
    from ._conv import pad

    bsz = k.shape[1]
    k = cat([k, bias_k.repeat(1, bsz, 1)])
    v = cat([v, bias_v.repeat(1, bsz, 1)])
    return k, v, [None if m is None else pad(m, (0, 1)) for m in masks]


def _append_zero_attn(k: Tensor, v: Tensor, masks: list) -> tuple:
    from ._conv import pad

    k = cat([k, zeros(k.shape[0], 1, k.shape[2], dtype=k.dtype)], 1)
    v = cat([v, zeros(v.shape[0], 1, v.shape[2], dtype=v.dtype)], 1)
    return k, v, [None if m is None else pad(m, (0, 1)) for m in masks]


def _check_ranks(query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None) -> bool:
    """torch's _mha_shape_check, in short: 3-D inputs are batched, 2-D unbatched; returns which."""
    if query.ndim not in (2, 3):
        raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D query "
                             "tensor")
    kind = "batched (3-D)" if query.ndim == 3 else "unbatched (2-D)"
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise AssertionError(f"For {kind} `query`, expected `key` and `value` to be {query.ndim}-D but found "
                             f"{key.ndim}-D and {value.ndim}-D tensors respectively")
    if key_padding_mask is not None and key_padding_mask.ndim != query.ndim - 1:
        raise AssertionError(f"For {kind} `query`, expected `key_padding_mask` to be `None` or {query.ndim - 1}-D "
                             f"but found {key_padding_mask.ndim}-D tensor instead")
    return query.ndim == 3


def _check_padding_shape(key_padding_mask: Tensor, bsz: int, src_len: int) -> None:
    for dim, want in enumerate((bsz, src_len)):
        if key_padding_mask.shape[dim] != want:
            raise AssertionError(f"Expected key_padded_mask.shape[{dim}] to be {want}, but got "
                                 f"{key_padding_mask.shape[dim]}")


def _merge_padding(attn_mask: Tensor | None, key_padding_mask: Tensor, bsz: int, num_heads: int) -> Tensor:
    src_len = key_padding_mask.shape[1]
    kpm = key_padding_mask.reshape(bsz, 1, 1, src_len).expand(-1, num_heads, -1, -1).reshape(
        bsz * num_heads, 1, src_len)
    return kpm if attn_mask is None else attn_mask + kpm


def multi_head_attention_forward(query: Tensor, key: Tensor, value: Tensor, embed_dim_to_check: int, num_heads: int,
                                 in_proj_weight: Tensor | None, in_proj_bias: Tensor | None, bias_k: Tensor | None,
                                 bias_v: Tensor | None, add_zero_attn: bool, dropout_p: float,
                                 out_proj_weight: Tensor, out_proj_bias: Tensor | None, training: bool = True,
                                 key_padding_mask: Tensor | None = None, need_weights: bool = True,
                                 attn_mask: Tensor | None = None, use_separate_proj_weight: bool = False,
                                 q_proj_weight: Tensor | None = None, k_proj_weight: Tensor | None = None,
                                 v_proj_weight: Tensor | None = None, static_k: Tensor | None = None,
                                 static_v: Tensor | None = None, average_attn_weights: bool = True,
                                 is_causal: bool = False) -> tuple:
    """torch's F.multi_head_attention_forward on (L, N, E) inputs (or unbatched (L, E))."""
    if static_k is not None or static_v is not None:
        raise NotImplementedError("graphtorch: multi_head_attention_forward(static_k/static_v) is not supported")
    batched = _check_ranks(query, key, value, key_padding_mask)
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}")
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    weights = ((q_proj_weight, k_proj_weight, v_proj_weight) if use_separate_proj_weight
               else tuple(in_proj_weight.chunk(3)))
    q, k, v = _in_projection(query, key, value, weights, in_proj_bias)
    masks = [canonical_mask(attn_mask, "attn_mask", q.dtype), canonical_mask(key_padding_mask, "key_padding_mask",
                                                                             q.dtype)]
    if masks[0] is not None:
        masks[0] = _check_attn_mask(masks[0], tgt_len, key.shape[0], bsz * num_heads)
    if bias_k is not None and bias_v is not None:
        k, v, masks = _append_kv_bias(k, v, bias_k, bias_v, masks)
    head_dim = embed_dim // num_heads
    q = _heads(q, tgt_len, bsz * num_heads, head_dim)
    k, v = _heads(k, k.shape[0], bsz * num_heads, head_dim), _heads(v, v.shape[0], bsz * num_heads, head_dim)
    if add_zero_attn:
        k, v, masks = _append_zero_attn(k, v, masks)
    attn_mask, key_padding_mask = masks
    if key_padding_mask is not None:
        _check_padding_shape(key_padding_mask, bsz, k.shape[1])
        attn_mask = _merge_padding(attn_mask, key_padding_mask, bsz, num_heads)
    return _attend(q, k, v, attn_mask, dropout_p if training else 0.0, (tgt_len, bsz, num_heads),
                   (out_proj_weight, out_proj_bias), need_weights, average_attn_weights, batched)


def _attend(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, dropout_p: float, sizes: tuple,
            out_proj: tuple, need_weights: bool, average: bool, batched: bool) -> tuple:
    from .functional import dropout, linear

    tgt_len, bsz, num_heads = sizes
    scores = matmul(q * math.sqrt(1.0 / q.shape[-1]), k.transpose(-2, -1))
    if attn_mask is not None:
        scores = scores + attn_mask
    # a fully masked row is NaN here, as in torch's need_weights path
    weights = scores.softmax(-1) if need_weights else masked_softmax(scores, None if attn_mask is None else
                                                                     attn_mask == NEG_INF)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    out = matmul(weights, v).transpose(0, 1).reshape(tgt_len * bsz, -1)
    out = linear(out, *out_proj).reshape(tgt_len, bsz, -1)
    if not need_weights:
        return (out if batched else out.squeeze(1)), None
    weights = weights.reshape(bsz, num_heads, tgt_len, -1)
    if average:
        weights = weights.mean(1)
    return (out, weights) if batched else (out.squeeze(1), weights.squeeze(0))
