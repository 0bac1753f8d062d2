"""group_norm and instance_norm (the functional forms): mean and biased variance over groups of
channels or over each instance's spatial dims, then the per-channel affine."""

from __future__ import annotations

from ..autograd.grad_mode import no_grad
from ..dispatch import op
from ..ops.elementwise import rsqrt
from ..tensor import Tensor


def _normalize(x: Tensor, dims: tuple, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(x - mean) / sqrt(var + eps) over dims; also the mean and biased variance (keepdim)."""
    mean = x.mean(dims, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(dims, keepdim=True)
    return centered * rsqrt(var + eps), mean, var


def _affine(out: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    shape = (1, -1, *([1] * (out.ndim - 2)))
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


@op("NativeGroupNormBackward0", origin="group_norm")
def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.ndim}")
    n, c = input.shape[:2]
    if c % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input of "
                           f"shape {list(input.shape)} and num_groups={num_groups}")
    grouped, _, _ = _normalize(input.reshape(n, num_groups, -1), (2,), eps)
    return _affine(grouped.reshape(input.shape), weight, bias)


@op("NativeBatchNormBackward0", origin="instance_norm")
def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    spatial = tuple(range(2, input.ndim))
    if use_input_stats:
        if input.ndim < 3 or input[0, 0].numel() <= 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got input size {input.shape}")
        out, mean, var = _normalize(input, spatial, eps)
        if running_mean is not None:
            _update_running(running_mean, running_var, mean, var, momentum, input[0, 0].numel())
        return _affine(out, weight, bias)
    if running_mean is None or running_var is None:
        raise RuntimeError("Expected running_mean and running_var to be defined when use_input_stats is false")
    shape = (1, -1, *([1] * len(spatial)))
    out = (input - running_mean.reshape(shape)) * rsqrt(running_var.reshape(shape) + eps)
    return _affine(out, weight, bias)


def _update_running(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor, momentum: float,
                    n: int) -> None:
    """torch's rule: the batch average of each instance's mean and unbiased variance."""
    with no_grad():
        c = running_mean.shape[0]
        batch_mean = mean.detach().reshape(-1, c).mean(0)
        batch_var = var.detach().reshape(-1, c).mean(0) * (n / (n - 1))
        running_mean.copy_(running_mean * (1 - momentum) + batch_mean * momentum)
        running_var.copy_(running_var * (1 - momentum) + batch_var * momentum)
