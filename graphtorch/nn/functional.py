"""torch.nn.functional: activations, linear, dropout, embedding and normalization here;
convolution/padding, pooling and losses live in _conv.py, _pooling.py and _losses.py.

Every function is ops over primitives, so a model's forward traces into the graph IR.
"""

from __future__ import annotations

import math
import warnings

from .. import dtypes as dt
from ..autograd.grad_mode import no_grad
from ..dispatch import apply, op
from ..ops.creation import full
from ..ops.elementwise import eq, erf, gt, rsqrt, sigmoid, tanh, where
from ..ops.elementwise import relu as _relu
from ..ops.indexing import index_select
from ..ops.indexing import one_hot as _one_hot
from ..ops.linalg import matmul
from ..ops.random import rand
from ..ops.reduction import log_softmax as _log_softmax
from ..ops.reduction import softmax as _softmax
from ..tensor import Tensor
from . import _eager_linear
from ._activations import cosine_similarity, elu, glu, hardswish, hardtanh, mish, prelu
from ._attention import multi_head_attention_forward, scaled_dot_product_attention
from ._conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d, pad, unfold
from ._losses import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from ._normalization import group_norm, instance_norm
from ._pooling import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)
from ._resample import interpolate, pixel_shuffle, pixel_unshuffle, upsample

__all__ = [
    "adaptive_avg_pool2d", "avg_pool2d", "batch_norm", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "conv2d", "cross_entropy", "dropout", "embedding", "gelu", "l1_loss", "layer_norm", "leaky_relu", "linear",
    "log_softmax", "max_pool2d", "mse_loss", "nll_loss", "one_hot", "pad", "relu", "relu_", "sigmoid", "silu",
    "softmax", "softplus", "tanh", "unfold",
]
__all__ += ["multi_head_attention_forward", "scaled_dot_product_attention"]
__all__ += ["cosine_similarity", "elu", "glu", "hardswish", "hardtanh", "huber_loss", "kl_div", "mish", "prelu",
            "smooth_l1_loss"]
__all__ += ["conv1d", "conv_transpose1d", "conv_transpose2d"]
__all__ += ["adaptive_avg_pool1d", "adaptive_max_pool2d", "avg_pool1d", "group_norm", "instance_norm", "max_pool1d"]
__all__ += ["interpolate", "pixel_shuffle", "pixel_unshuffle", "upsample"]

# ---------------------------------------------------------------- activations


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu_() if inplace else _relu(input)


def relu_(input: Tensor) -> Tensor:
    return input.relu_()


@op("LeakyReluBackward0", origin="leaky_relu")
def _leaky_relu(input: Tensor, negative_slope: float) -> Tensor:
    return where(gt(input, 0), input, input * negative_slope)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    out = _leaky_relu(input, negative_slope)
    return input._assign(out) if inplace else out


@op("GeluBackward0", origin="gelu")
def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate == "none":
        return input * 0.5 * (1 + erf(input * math.sqrt(0.5)))
    if approximate == "tanh":
        inner = (input + input * input * input * 0.044715) * math.sqrt(2 / math.pi)
        return input * 0.5 * (1 + tanh(inner))
    raise RuntimeError("approximate argument must be either none or tanh.")


@op("SiluBackward0", origin="silu")
def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return input * sigmoid(input)


@op("SoftplusBackward0", origin="softplus")
def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    scaled = input * beta
    # above the threshold softplus is the identity (and exp would overflow)
    return where(gt(scaled, threshold), input, (scaled.exp() + 1).log() / beta)


def _softmax_dim(name: str, ndim: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include dim=X as an "
                  "argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: dt.DType | None = None) -> Tensor:
    if dim is None:
        dim = _softmax_dim("softmax", input.ndim)
    return _softmax(input, dim, dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: dt.DType | None = None) -> Tensor:
    if dim is None:
        dim = _softmax_dim("log_softmax", input.ndim)
    return _log_softmax(input, dim, dtype)


# ---------------------------------------------------------------- linear


@op("AddmmBackward0", origin="linear")
def _addmm(input: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    out = matmul(input, weight.t())
    if bias.ndim > out.ndim or any(b not in (1, o) for b, o in zip(reversed(bias.shape), reversed(out.shape))):
        bias.expand(out.shape)  # raises torch's error: addmm expands the bias, it never grows the output
    return out + bias


@op("MmBackward0", origin="linear")
def _mm(input: Tensor, weight: Tensor) -> Tensor:
    return matmul(input, weight.t())


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ W^T + b. N-d inputs are flattened to 2-d and back, as torch does (grad_fn ViewBackward0)."""
    if _eager_linear.applies(input, weight, bias):
        return _eager_linear.linear(input, weight, bias)  # one op instead of four (performance only)
    if input.ndim == 2:
        return _mm(input, weight) if bias is None else _addmm(input, weight, bias)
    if input.ndim == 0:
        raise RuntimeError("both arguments to linear need to be at least 1D, but they are 0D and 2D")
    flat = input.reshape(-1, input.shape[-1])
    out = _mm(flat, weight) if bias is None else _addmm(flat, weight, bias)
    return out.reshape(*input.shape[:-1], weight.shape[0]) if weight.ndim == 2 else out.reshape(*input.shape[:-1])


# ---------------------------------------------------------------- dropout and embedding


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * 0.0
    else:
        keep = rand(*input.shape, dtype=input.dtype, device=input.device) < 1 - p
        out = input * (keep.to(input.dtype) / (1 - p))
    return input._assign(out) if inplace else out


@op("EmbeddingBackward0", origin="embedding")
def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    if input.dtype not in (dt.int64, dt.int32):
        raise RuntimeError("Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {input.type()} instead (while checking arguments for embedding)")
    if max_norm is not None:
        raise NotImplementedError("graphtorch: embedding(max_norm=...) is not supported")
    n = weight.shape[0]
    padding_idx = _padding_index(padding_idx, n)
    idx = input.reshape(-1).to(dt.int64)
    if not idx.is_tracer and bool(((idx < 0) | (idx >= n)).any()):
        raise IndexError("index out of range in self")
    rows = index_select(weight, 0, idx)
    if padding_idx is not None and weight.requires_grad:
        # the padding row's value is returned, but it receives no gradient (torch's rule)
        rows = where(eq(idx, padding_idx).unsqueeze(1), rows.detach(), rows)
    return rows.reshape(*input.shape, weight.shape[1])


def _padding_index(padding_idx: int | None, n: int) -> int | None:
    if padding_idx is None:
        return None
    if padding_idx > 0 and padding_idx >= n or padding_idx < 0 and padding_idx < -n:
        raise AssertionError("Padding_idx must be within num_embeddings")
    return padding_idx % n


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    if num_classes != -1 and not tensor.is_tracer and tensor.numel() and bool((tensor >= num_classes).any()):
        raise RuntimeError("Class values must be smaller than num_classes.")
    return _one_hot(tensor, num_classes)


# ---------------------------------------------------------------- normalization


def _channel_view(t: Tensor, ndim: int) -> Tensor:
    return t.reshape(1, -1, *([1] * (ndim - 2)))


@op("NativeBatchNormBackward0", origin="batch_norm")
def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum: float = 0.1,
               eps: float = 1e-5) -> Tensor:
    if training:
        n = input.numel() // input.shape[1]
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {input.shape}")
        dims = (0, *range(2, input.ndim))
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)  # biased: what normalizes
        if running_mean is not None:
            _update_running_stats(running_mean, running_var, mean, var, momentum, n)
        out = centered * rsqrt(var + eps)
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
        out = (input - _channel_view(running_mean, input.ndim)) * rsqrt(_channel_view(running_var, input.ndim) + eps)
    if weight is not None:
        out = out * _channel_view(weight, input.ndim)
    if bias is not None:
        out = out + _channel_view(bias, input.ndim)
    return out


def _update_running_stats(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor, momentum: float,
                          n: int) -> None:
    # in place through copy_ (= _assign), so a tracer records the buffer mutation; the running
    # variance is the unbiased one, as in torch
    with no_grad():
        c = running_mean.shape[0]
        running_mean.copy_(running_mean * (1 - momentum) + mean.detach().reshape(c) * momentum)
        running_var.copy_(running_var * (1 - momentum) + var.detach().reshape(c) * (momentum * n / (n - 1)))


def _row_layer_norm(input: Tensor, shape: tuple, weight: Tensor | None, bias: Tensor | None) -> bool:
    """Over the last dim, with weight and bias (if any) of that shape and the input's dtype."""
    return len(shape) == 1 and input.dtype.is_floating_point and all(
        p is None or (tuple(p.shape) == shape and p.dtype is input.dtype) for p in (weight, bias))


@op("NativeLayerNormBackward0", origin="layer_norm")
def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(shape):]) != shape or len(shape) > input.ndim:
        raise RuntimeError(f"Given normalized_shape={list(shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, shape))}], but got input of size{list(input.shape)}")
    if _row_layer_norm(input, shape, weight, bias):  # one kernel per row (the layer_norm primitive)
        constant = lambda v: full(shape, v, dtype=input.dtype, device=input.device)  # noqa: E731
        return apply("layer_norm", input, constant(1.0) if weight is None else weight,
                     constant(0.0) if bias is None else bias, eps=float(eps))
    dims = tuple(range(input.ndim - len(shape), input.ndim))
    centered = input - input.mean(dims, keepdim=True)
    out = centered * rsqrt((centered * centered).mean(dims, keepdim=True) + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out

