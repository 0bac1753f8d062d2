"""Finite-difference (float64) gradient checks of the composite nn.functional ops."""

import numpy as np
import pytest
from conftest import gradcheck

import graphtorch as gt
import graphtorch.nn.functional as F


def rand64(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("kwargs,w_shape", [
    (dict(), (3, 2, 3, 3)),
    (dict(stride=2, padding=1), (2, 2, 3, 2)),
    (dict(dilation=2, padding=(2, 1), groups=2), (4, 1, 2, 2)),
    (dict(padding="same"), (2, 2, 2, 3)),
])
def test_conv2d(kwargs, w_shape):
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kwargs), [rand64(1, 2, 5, 5), rand64(*w_shape, seed=1),
                                                             rand64(w_shape[0], seed=2)])


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                    dict(kernel_size=2, dilation=2)])
def test_pools(kwargs):
    x = rand64(1, 2, 6, 5)  # distinct values: max is differentiable there
    gradcheck(lambda a: F.max_pool2d(a, **kwargs), [x])
    kwargs.pop("dilation", None)
    gradcheck(lambda a: F.avg_pool2d(a, **kwargs, count_include_pad=False), [x])
    gradcheck(lambda a: F.adaptive_avg_pool2d(a, (4, 3)), [x])


def test_batch_norm_training_and_eval():
    x, w, b = rand64(4, 3, 2, 2), rand64(3, seed=1), rand64(3, seed=2)
    gradcheck(lambda a, w_, b_: F.batch_norm(a, None, None, w_, b_, training=True), [x, w, b])
    mean, var = gt.tensor(rand64(3, seed=3)), gt.tensor(np.abs(rand64(3, seed=4)) + 0.5)
    gradcheck(lambda a, w_: F.batch_norm(a, mean, var, w_, None, training=False), [x, w])


def test_layer_norm():
    gradcheck(lambda a, w, b: F.layer_norm(a, (4,), w, b), [rand64(3, 4), rand64(4, seed=1), rand64(4, seed=2)])


def test_cross_entropy_variants():
    target = gt.tensor([0, 2, 1, 2])
    weight = gt.tensor(np.array([0.3, 1.0, 2.0]))
    gradcheck(lambda a: F.cross_entropy(a, target), [rand64(4, 3)])
    gradcheck(lambda a: F.cross_entropy(a, target, weight=weight, label_smoothing=0.2, ignore_index=1), [rand64(4, 3)])
    probs = np.abs(rand64(4, 3, seed=5))
    gradcheck(lambda a, p: F.cross_entropy(a, p / p.sum(1, keepdim=True)), [rand64(4, 3), probs])


def test_losses_and_activations():
    x, y = rand64(3, 4), np.abs(rand64(3, 4, seed=1)) % 1
    gradcheck(lambda a: F.binary_cross_entropy_with_logits(a, gt.tensor(y), pos_weight=gt.tensor(np.full(4, 2.0))),
              [x])
    gradcheck(lambda a: F.binary_cross_entropy(gt.sigmoid(a), gt.tensor(y)), [x])
    for fn in (F.gelu, lambda a: F.gelu(a, approximate="tanh"), F.silu, F.softplus, lambda a: F.leaky_relu(a, 0.2)):
        gradcheck(fn, [x])
    gradcheck(lambda a: F.pad(a, (1, 2, 2, 1), mode="reflect"), [rand64(1, 1, 3, 4)])
