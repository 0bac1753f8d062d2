"""Sequence models, whole training step compiled vs PyTorch eager: a tiny GPT (2 blocks, d 64,
4 heads, ctx 32, batch 16, AdamW, the causal mask a buffer) and a 2-layer LSTM (input 8, hidden 64,
seq 32, batch 32, Adam, the last step into a Linear); plus the GPT step's cold compile time.

Run alone: python3 -m benchmarks.transformer [--quick]
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile

import numpy as np

VOCAB, CTX, D_MODEL, HEADS, BLOCKS, BATCH = 65, 32, 64, 4, 2, 16


def tiny_gpt(torch, vocab: int = VOCAB, ctx: int = CTX, d: int = D_MODEL, heads: int = HEADS, blocks: int = BLOCKS):
    """A GPT written as users write it, against either framework's API."""
    nn, F = torch.nn, torch.nn.functional

    class SelfAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.register_buffer("tril", torch.tril(torch.ones(ctx, ctx)))

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = (z.reshape(b, t, heads, c // heads).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // heads))
            att = F.softmax(att.masked_fill(self.tril[:t, :t] == 0, float("-inf")), dim=-1)
            return self.proj((att @ v).transpose(1, 2).reshape(b, t, c))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), SelfAttention(), nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
            self.blocks = nn.Sequential(*[Block() for _ in range(blocks)])
            self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
            return self.head(self.ln(self.blocks(x)))

    return GPT()


def lstm_regressor(torch, inputs: int = 8, hidden: int = 64, layers: int = 2):
    nn = torch.nn

    class LSTMRegressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = nn.LSTM(inputs, hidden, layers, batch_first=True), nn.Linear(hidden, 1)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

    return LSTMRegressor()


def _gpt_step(torch, model, opt):
    F = torch.nn.functional

    def step(x, y):
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss
    return step


def _lstm_step(torch, model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


WORKLOADS = [
    ("tiny GPT train b16 AdamW", tiny_gpt, _gpt_step, lambda fw, p: fw.optim.AdamW(p, lr=1e-3)),
    ("LSTM 2x64 train b32 Adam", lstm_regressor, _lstm_step, lambda fw, p: fw.optim.Adam(p, lr=1e-3)),
]


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if "GPT" in name:
        tokens = rng.integers(0, VOCAB, (BATCH, CTX + 1))
        return tokens[:, :-1].copy(), tokens[:, 1:].copy()
    x = rng.standard_normal((32, 32, 8)).astype(np.float32)
    return x, x[:, -1, :1].copy()


def _steps(framework, name, builder, make_step, make_opt, seed: int = 0):
    """The framework's step for the workload, on a model whose weights are seeded the same way."""
    import graphtorch

    from .models import copy_weights

    graphtorch.manual_seed(seed)
    reference = builder(graphtorch)
    model = builder(framework)
    if framework is not graphtorch:
        copy_weights(reference, model)
    return make_step(framework, model, make_opt(framework, model.parameters()))


def bench(repeat: int, report, median_ms, paired_ms) -> None:
    import graphtorch

    try:
        import torch
    except ImportError:
        torch = None
    for name, builder, make_step, make_opt in WORKLOADS:
        x, y = _data(name)
        eager = _steps(graphtorch, name, builder, make_step, make_opt)
        compiled = graphtorch.compile(_steps(graphtorch, name, builder, make_step, make_opt))
        gx, gy = graphtorch.from_numpy(x), graphtorch.from_numpy(y)
        gt_eager = median_ms(max(3, repeat // 4), eager, gx, gy)
        theirs = None
        if torch is not None:
            theirs = (_steps(torch, name, builder, make_step, make_opt), (torch.from_numpy(x), torch.from_numpy(y)))
        gt_comp, t_eager = paired_ms(repeat * 2, (compiled, (gx, gy)), theirs)
        report(name + " (whole step)", gt_eager, gt_comp, t_eager, None)


_COLD_SNIPPET = """
import time, graphtorch
import graphtorch.compiler.fusion, graphtorch.compiler.llvm  # module imports are not compile time
from benchmarks import transformer as tr
x, y = (graphtorch.from_numpy(a) for a in tr._data("GPT"))
step = graphtorch.compile(tr._steps(graphtorch, "GPT", *tr.WORKLOADS[0][1:]))
step(x, y)  # a compiled function's first call runs eagerly (warm-up); the second traces and compiles
t0 = time.perf_counter()
step(x, y)
print(time.perf_counter() - t0)
"""


def bench_cold_compile() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GRAPHTORCH_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, "-c", _COLD_SNIPPET], env=env, capture_output=True, text=True,
                             check=True, cwd=root)
    print(f"{'tiny GPT train-step compile':28s} cold {float(out.stdout.split()[-1]):7.3f} s", flush=True)


def main(repeat: int = 20) -> None:
    from .__main__ import median_ms, paired_ms, report

    bench(repeat, report, median_ms, paired_ms)
    bench_cold_compile()


if __name__ == "__main__":
    main(5 if "--quick" in sys.argv else 20)
