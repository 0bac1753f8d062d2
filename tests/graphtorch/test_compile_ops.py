"""User-level ops through graphtorch.compile equal eager: odd shapes, broadcasting, non-contiguous inputs.

Between them the functions below reach every primitive that can be traced (a test checks that),
so each primitive is proven through the whole front end: tracer, passes, fusion and backend.
"""

import numpy as np
import pytest

import graphtorch as gt
import graphtorch.nn.functional as F
from graphtorch.compiled import flatten, trace
from graphtorch.compiler.primitives import PRIMITIVES

ODD = (3, 5, 7)


def _x(shape=ODD, seed=0):
    return gt.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _transposed(shape=(7, 5), seed=1):
    return _x(shape, seed).t()  # non-contiguous


OPS = {
    "arith_broadcast": (lambda a, b: (a + b) * (a - b) / (b.abs() + 1) ** 2, lambda: (_x(), _x((5, 1), 2))),
    "unary_math": (lambda a: a.exp().log1p() + a.sin() * a.cos() - a.tanh().sigmoid() + a.abs().sqrt(), lambda: (_x(),)),
    "erf_sign_round": (lambda a: gt.erf(a) + a.sign() + (a * 3).round() + a.floor() - a.ceil(), lambda: (_x(),)),
    "compare_where": (lambda a, b: gt.where((a > b) & (a != 0) | ~(b <= 0.5) | (a >= 2), a, b * 2).clone(),
                      lambda: (_x(), _x(ODD, 3))),
    "minmax_clamp": (lambda a, b: gt.maximum(a, b) - gt.minimum(a, b) + a.clamp(-0.5, 0.5), lambda: (_x(), _x(ODD, 4))),
    "pow_div_mod": (lambda a: (a.abs() + 1) ** 1.5 + a.floor_divide(0.7) + a.remainder(0.7), lambda: (_x(),)),
    "int_and_cast": (lambda a: (a * 10).long().float() + (a > 0).sum(1, keepdim=True).float(), lambda: (_x(),)),
    "reductions": (lambda a: a.sum(0) + a.mean(0) + a.amax(0) - a.amin(0) * a.prod(0).abs().sqrt()
                   + a.sum(2, keepdim=True).mean(0), lambda: (_x(),)),
    "argmax_max_dim": (lambda a: a.max(2).values + a.argmax(2).float() - a.argmin(0).float().sum(), lambda: (_x(),)),
    "softmax_logsumexp": (lambda a: a.softmax(-1) + a.log_softmax(0) + a.logsumexp(1, keepdim=True), lambda: (_x(),)),
    "layout": (lambda a: a.permute(2, 0, 1).reshape(7, 15)[1:6:2, ::3].flatten() * 2, lambda: (_x(),)),
    "non_contiguous_matmul": (lambda a, b: a @ b + a.sum(), lambda: (_transposed(), _x((7, 4), 5))),
    "batched_matmul": (lambda a, b: gt.matmul(a, b).relu(), lambda: (_x((2, 3, 5), 6), _x((5, 4), 7))),
    "cat_stack_split": (lambda a: gt.cat([a, a * 2], 1) + gt.stack([a, -a], 1).sum(1).repeat(1, 2, 1)
                        + gt.cat(a.split(2, 1), 1).repeat(1, 2, 1), lambda: (_x(),)),
    "pad_gather_index": (lambda a: F.pad(a, (1, 2)).gather(2, gt.from_numpy(np.arange(6)[None, None].repeat(3, 0)
                                                                           .repeat(5, 1) % 9)) + a[:, [0, 2, 2], :6].sum(1, keepdim=True)
                         , lambda: (_x(),)),
    "scatter_add_cumsum": (lambda a: gt.zeros(3, 5, 7).scatter_add(2, gt.from_numpy(np.arange(105).reshape(3, 5, 7) % 7), a)
                           + a.cumsum(1), lambda: (_x(),)),
    "conv_pool": (lambda a, w: F.avg_pool2d(F.max_pool2d(F.conv2d(a, w, padding=1, stride=2, dilation=1), 2, ceil_mode=True), 1)
                  , lambda: (_x((2, 3, 9, 11), 8), _x((4, 3, 3, 3), 9))),
    "pools_backward": (lambda a: F.max_pool2d(a, 3, 2, 1, return_indices=True)[1].float().sum()
                       + F.adaptive_max_pool2d(a, (2, 3)).sum() + F.avg_pool2d(a, 2, ceil_mode=True).sum(),
                       lambda: (_x((2, 3, 9, 11), 14).requires_grad_(),)),
    "conv_groups_fold": (lambda a, w: F.unfold(F.conv2d(a, w, groups=2, dilation=2), 2).sum(), lambda: (_x((1, 4, 9, 9), 10),
                                                                                                     _x((6, 2, 2, 2), 11))),
    # inputs that require grad: the compiled backward too (a strided conv's input gradient: one
    # stride-1 conv per phase, interleaved by concat; unfold's gradient is fold)
    "conv_stride2_backward": (lambda a, w: F.conv2d(a, w, stride=2).tanh(),
                              lambda: (_x((2, 3, 9, 8), 12).requires_grad_(), _x((4, 3, 3, 3), 13).requires_grad_())),
    "unfold_backward": (lambda a: F.unfold(a, 2, stride=(2, 1)).tanh(), lambda: (_x((2, 3, 5, 6), 14).requires_grad_(),)),
    "rand_dropout": (lambda a: F.dropout(a, 0.5, training=True) + gt.rand(3, 5, 7) * 0, lambda: (_x(),)),
    "iota_onehot": (lambda t: F.one_hot(t, 6).float().cumsum(0), lambda: (gt.from_numpy(np.array([0, 5, 3, 2])),)),
    # no generated kernel: the numpy kernel runs from the native code (compiler/llvm/host.py)
    "inverse_backward": (lambda a: (a + gt.eye(3) * 4).inverse().tanh(), lambda: (_x((2, 3, 3)).requires_grad_(),)),
    "sort_scan_backward": (lambda a: gt.sort(a, 1, descending=True).values + gt.topk(a, 2, 2).values.sum(-1, True)
                           + gt.cummax(a, 0).values * a.cumprod(1) + gt.roll(a, 2, 2) + gt.diagonal(a, 1, 1, 2).sum(),
                           lambda: (_x().requires_grad_(),)),
    "linalg_backward": (lambda a: gt.linalg.det(a) + gt.linalg.slogdet(a).logabsdet
                        + gt.linalg.cholesky(a @ a.transpose(-1, -2) + gt.eye(3) * 3).sum((-1, -2))
                        + gt.einsum("bij,bjk->b", a, a), lambda: ((_x((2, 3, 3)) + gt.eye(3) * 2).requires_grad_(),)),
    "tril_triu_backward": (lambda a: a.tril(-1) * 2 + gt.triu(a, 2).exp(), lambda: (_x().requires_grad_(),)),
    "qr_svd_backward": (lambda a: (gt.linalg.qr(a).R.sum((-2, -1)) + gt.linalg.matrix_norm(a, "nuc")).unsqueeze(-1)
                        + (gt.linalg.svd(a, full_matrices=False).U ** 2).sum(-1),
                        lambda: (_x((2, 4, 3)).requires_grad_(),)),
    "layer_norm_backward": (lambda a, w: F.layer_norm(a, (a.shape[-1],), w) + F.layer_norm(a, a.shape[-2:]),
                            lambda: (_x().requires_grad_(), _x(ODD[-1:], 15).requires_grad_())),
    # fused attention: 70 x 70 scores run the attention kernel and its attention_grad kernels, 8 x 8
    # (short) attention_probs and a matmul
    "attention_backward": (lambda q, k, v: gt.cat([F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                                   F.scaled_dot_product_attention(q[:, :, :8], k[:, :, :8], v[:, :, :8])], 2),
                           lambda: tuple(_x((1, 2, 70, 4), 14 + i).requires_grad_() for i in range(3))),
}


def _run(fn, backend, args):
    compiled = gt.compile(fn, backend=backend)
    gt.manual_seed(7)
    compiled(*args)  # a function's first call runs eagerly
    gt.manual_seed(7)
    return compiled(*args)


@pytest.mark.parametrize("backend", ["interpreter", "llvm"])
@pytest.mark.parametrize("name", list(OPS))
def test_compiled_op_equals_eager(name, backend):
    fn, make = OPS[name]
    args = make()
    gt.manual_seed(7)
    want = fn(*args)
    got = _run(fn, backend, args)
    assert got.dtype is want.dtype and tuple(got.shape) == tuple(want.shape)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=2e-5, atol=2e-5)
    if want.requires_grad:
        grads = [gt.autograd.grad(out.sum(), args) for out in (want, got)]
        for a, b in zip(*grads):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5)


def test_the_ops_above_reach_every_traceable_primitive():
    seen = set()
    for fn, make in OPS.values():
        args = make()
        flat, spec = flatten((args, {}))
        seen |= {n.target for n in trace(fn, flat, spec, None, "f").graph.nodes if n.op == "call"}
    # all_reduce needs a process group: tests/graphtorch/distributed compiles it under mpiexec
    untraceable = {p.name for p in PRIMITIVES.values() if p.data_dependent} | {"all_reduce"}
    assert set(PRIMITIVES) - untraceable - seen == set()
