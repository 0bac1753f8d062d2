"""Causal attention forward + backward, graphtorch compiled vs PyTorch eager (its fused SDPA): the
tiny GPT's shape (b16 h4 t32 d16: the short path, attention_probs + a GEMM) and a long sequence
(b2 h4 t1024 d32: the attention kernel, which never writes the 1024 x 1024 scores).

Run alone: python3 -m benchmarks.attention [--quick]
"""

from __future__ import annotations

import sys

import numpy as np

SHAPES = [("attention b16 h4 t32 d16", (16, 4, 32, 16)), ("attention b2 h4 t1024 d32", (2, 4, 1024, 32))]


def _step(framework, compiled: bool):
    F = framework.nn.functional
    loss = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True).sum()  # noqa: E731
    loss = framework.compile(loss) if compiled else loss

    def step(q, k, v):
        for t in (q, k, v):
            t.grad = None
        loss(q, k, v).backward()
    return step


def _inputs(framework, shape):
    rng = np.random.default_rng(0)
    return [framework.from_numpy(rng.standard_normal(shape).astype(np.float32)).requires_grad_() for _ in range(3)]


def main(repeat: int = 20) -> None:
    import graphtorch

    from .__main__ import _torch, median_ms, report

    torch = _torch()
    for name, shape in SHAPES:
        xs = _inputs(graphtorch, shape)
        gt_eager = median_ms(max(3, repeat // 4), _step(graphtorch, False), *xs)
        gt_compiled = median_ms(repeat, _step(graphtorch, True), *xs)
        t_eager = median_ms(repeat, _step(torch, False), *_inputs(torch, shape)) if torch else None
        report(name, gt_eager, gt_compiled, t_eager, None)


if __name__ == "__main__":
    main(5 if "--quick" in sys.argv else 20)
