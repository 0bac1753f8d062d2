"""A character-level GPT trained on Python's own source: the stdlib's textwrap.py (no download).

The model is the usual decoder-only transformer: token and position embeddings, pre-norm blocks of
causal self-attention (F.scaled_dot_product_attention with is_causal=True) and a GELU MLP, AdamW.
The same seeded model trains eagerly and as one compiled step (graphtorch.compile of the whole
step: forward, backward and AdamW); both see the same batches, their losses agree, and the
speedup is printed. The compiled model then keeps training and writes a sample.
Run: OPENBLAS_NUM_THREADS=1 python examples/char_gpt.py [--steps 2000 --d-model 128 --blocks 4]
"""

from __future__ import annotations

import argparse
import math
import textwrap
import time
from pathlib import Path

import numpy as np
from _progress import epochs as step_bar

import graphtorch as torch
import graphtorch.nn as nn
import graphtorch.nn.functional as F
import graphtorch.optim as optim


def load_text() -> str:
    return Path(textwrap.__file__).read_text()


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (z.reshape(b, t, self.heads, c // self.heads).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d_model), CausalSelfAttention(d_model, heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, context: int, d_model: int, heads: int, blocks: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d_model), nn.Embedding(context, d_model)
        self.blocks = nn.Sequential(*[Block(d_model, heads) for _ in range(blocks)])
        self.ln, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, vocab)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return self.head(self.ln(self.blocks(x)))


def make_step(model, optimizer):
    def step(x, y):
        optimizer.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()
        optimizer.step()
        return loss
    return step


def batches(data: np.ndarray, context: int, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    while True:
        starts = rng.integers(0, len(data) - context - 1, batch)
        window = np.stack([data[s:s + context + 1] for s in starts])
        yield torch.from_numpy(window[:, :-1].copy()), torch.from_numpy(window[:, 1:].copy())


def build(vocab: int, args, seed: int):
    torch.manual_seed(seed)
    model = GPT(vocab, args.context, args.d_model, args.heads, args.blocks)
    return model, make_step(model, optim.AdamW(model.parameters(), lr=args.lr))


def timed(step, stream, n: int) -> tuple[list[float], float]:
    """n steps; the losses and the mean milliseconds per step after the first two (warm-up, compile)."""
    losses, start = [], None
    for i in range(n):
        if i == 2:
            start = time.perf_counter()
        losses.append(step(*next(stream)).item())
    return losses, (time.perf_counter() - start) * 1e3 / (n - 2)


def sample(model, stoi: dict, itos: list, context: int, length: int, seed: int) -> str:
    rng, idx = np.random.default_rng(seed), [stoi["\n"]]
    model.eval()
    with torch.no_grad():
        for _ in range(length):
            logits = model(torch.tensor([idx[-context:]]))[0, -1].numpy().astype(np.float64)
            p = np.exp(logits - logits.max())
            idx.append(int(rng.choice(len(p), p=p / p.sum())))
    return "".join(itos[i] for i in idx[1:])


def main(steps: int = 300, compare_steps: int = 12, seed: int = 0, progress: bool = True, **overrides) -> dict:
    args = argparse.Namespace(**{**dict(context=32, d_model=64, heads=4, blocks=2, batch=16, lr=3e-3), **overrides})
    text = load_text()
    itos = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(itos)}
    data = np.array([stoi[ch] for ch in text], dtype=np.int64)
    print(f"text: {textwrap.__file__} ({len(text)} characters, {len(itos)} distinct)")

    eager_model, eager_step = build(len(itos), args, seed)
    eager_losses, eager_ms = timed(eager_step, batches(data, args.context, args.batch, seed), compare_steps)
    model, step = build(len(itos), args, seed)
    compiled_step = torch.compile(step)
    stream = batches(data, args.context, args.batch, seed)
    losses, compiled_ms = timed(compiled_step, stream, compare_steps)
    print(f"eager {eager_ms:.1f} ms/step, compiled {compiled_ms:.1f} ms/step: speedup {eager_ms / compiled_ms:.1f}x; "
          f"largest loss difference over {compare_steps} steps {max(map(abs, np.subtract(losses, eager_losses))):.2e}")

    bar = step_bar(steps - compare_steps, "char gpt", progress)
    for i in bar:
        losses.append(compiled_step(*next(stream)).item())
        if (i + compare_steps + 1) % 50 == 0:
            print(f"step {i + compare_steps + 1}: loss {np.mean(losses[-10:]):.3f}")
    text_out = sample(model, stoi, itos, args.context, 200, seed)
    print(f"final loss {np.mean(losses[-10:]):.3f} (uniform guess {math.log(len(itos)):.3f}); sample:\n{text_out}")
    return {"first_loss": losses[0], "loss": float(np.mean(losses[-10:])), "eager_losses": eager_losses,
            "compiled_losses": losses[:compare_steps], "eager_ms": eager_ms, "compiled_ms": compiled_ms,
            "sample": text_out}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compare-steps", type=int, default=12, help="steps run both eagerly and compiled")
    for name, default in (("context", 32), ("d-model", 64), ("heads", 4), ("blocks", 2), ("batch", 16)):
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--lr", type=float, default=3e-3)
    cli = vars(parser.parse_args())
    main(cli.pop("steps"), cli.pop("compare_steps"), **cli)
