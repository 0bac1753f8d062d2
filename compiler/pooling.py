"""Pooling as windowed reductions: the window geometry and the numpy kernels (one definition).

Five primitives read their (N, C, H, W) input in place, window by window, never building the
unfold: `max_pool`, `max_pool_index` (torch's return_indices), `max_pool_grad` (recomputes each
window's argmax from the saved input instead of saving indices), `avg_pool` and `avg_pool_grad`.
They share the attributes

    out       (OH, OW), the output's spatial size (ceil_mode is already in it)
    kernel, stride, padding, dilation   per spatial dim; ignored when adaptive
    adaptive  windows [floor(o * n / out), ceil((o + 1) * n / out)) (adaptive pooling)

and the avg ones add `count_include_pad` and `divisor` (0: the window's count). `max_pool_grad`
may add `relu` (True: the gradient is 0 where x <= 0, relu's backward through the pool's input,
which cleanup.relu_into_max_pool_grad fuses in; absent: False). Padding is never
read: a tap outside the input is skipped. The scan rule is torch's: taps in row-major order, a tap
wins when it is greater than the best so far or NaN (so the first maximum wins a tie and the last
NaN wins), and a window whose taps are all outside has no winner (its gradient goes nowhere).
Sums run in tap order; a gradient adds into an input element in the order of the outputs.
The backends (llvm/pooling.py, cuda/pooling.py) follow these rules tap for tap.
Disjoint tiles (kernel == stride, no padding or dilation: MaxPool2d(k)) take a faster numpy path
that gives the same bits: each tap read as one strided view, not a gathered copy per window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from . import dtypes as dt
from .dtypes import TensorType

POOL_ATTRS = ("out", "kernel", "stride", "padding", "dilation", "adaptive")
AVG_ATTRS = POOL_ATTRS + ("count_include_pad", "divisor")
MAX_GRAD_ATTRS = POOL_ATTRS + ("relu",)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise RuntimeError(msg)


@dataclass(frozen=True)
class Axis:
    """One spatial dim of a pooling window: output o reads positions start(o) + t * dilation."""

    size: int
    out: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    adaptive: bool

    def start(self, o: int) -> int:
        return o * self.size // self.out if self.adaptive else o * self.stride - self.padding

    def taps(self, o: int) -> int:
        """The window's length in taps (in or out of the input)."""
        return -(-(o + 1) * self.size // self.out) - self.start(o) if self.adaptive else self.kernel

    @property
    def max_taps(self) -> int:
        return max((self.taps(o) for o in range(self.out)), default=0) if self.adaptive else self.kernel

    @property
    def step(self) -> int:
        return 1 if self.adaptive else self.dilation

    def inside(self) -> tuple[int, int]:
        """[lo, hi): the outputs whose every tap lies inside the input (the kernels' fast path)."""
        if self.adaptive:
            return 0, self.out
        lo = -(-self.padding // self.stride)
        last = self.size - 1 - (self.kernel - 1) * self.dilation + self.padding  # the largest start + padding
        hi = min(self.out, last // self.stride + 1) if last >= 0 else 0
        return min(lo, hi), hi

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(out, max_taps) input positions and whether each is a tap inside the input."""
        o = np.arange(self.out)[:, None]
        t = np.arange(self.max_taps)[None, :]
        starts = np.array([self.start(i) for i in range(self.out)])[:, None]
        lengths = np.array([self.taps(i) for i in range(self.out)])[:, None]
        pos = starts + t * self.step + 0 * o
        return pos, (pos >= 0) & (pos < self.size) & (t < lengths)

    def count(self, o: int, include_pad: bool) -> int:
        """torch's avg divisor along this dim: the taps inside the input, or up to the padded end."""
        lo = self.start(o)
        hi = lo + self.taps(o)
        if include_pad and not self.adaptive:
            return min(hi, self.size + self.padding) - lo
        return min(hi, self.size) - max(lo, 0)


def axes(attrs: dict, size: tuple[int, int]) -> tuple[Axis, Axis]:
    """The two spatial axes of a pooling primitive over an input of spatial `size`."""
    return tuple(Axis(size[d], attrs["out"][d], attrs["kernel"][d], attrs["stride"][d], attrs["padding"][d],
                      attrs["dilation"][d], attrs["adaptive"]) for d in range(2))


def divisors(attrs: dict, size: tuple[int, int]) -> np.ndarray:
    """(OH, OW) int64: what each avg window's sum is divided by (torch's rule)."""
    if attrs["divisor"]:
        return np.full(attrs["out"], attrs["divisor"], np.int64)
    ah, aw = axes(attrs, size)
    include = attrs["count_include_pad"]
    rows = np.array([ah.count(o, include) for o in range(ah.out)], np.int64)
    cols = np.array([aw.count(o, include) for o in range(aw.out)], np.int64)
    return np.maximum(np.outer(rows, cols), 1)  # a window with no tap inside sums to 0: 0 / 1


# ---------------------------------------------------------------- type rules


def pool_infer(x: TensorType, **attrs) -> TensorType:
    _check(x.ndim == 4, f"pooling: expected (N, C, H, W), got {x.shape}")
    oh, ow = attrs["out"]
    _check(oh >= 0 and ow >= 0, f"pooling: output size {(oh, ow)} must not be negative")
    return TensorType((*x.shape[:2], oh, ow), x.dtype)


def index_infer(x: TensorType, **attrs) -> TensorType:
    return TensorType(pool_infer(x, **attrs).shape, dt.int64)


def max_grad_infer(x: TensorType, g: TensorType, **attrs) -> TensorType:
    want = pool_infer(x, **attrs)
    _check(g.shape == want.shape and g.dtype is x.dtype,
           f"max_pool_grad: gradient {g.dtype.name}{list(g.shape)}, expected {x.dtype.name}{list(want.shape)}")
    return x


def avg_grad_infer(g: TensorType, *, size, **attrs) -> TensorType:
    _check(g.ndim == 4 and tuple(g.shape[2:]) == tuple(attrs["out"]),
           f"avg_pool_grad: gradient {list(g.shape)} does not match output size {tuple(attrs['out'])}")
    return TensorType((*g.shape[:2], *size), g.dtype)


# ---------------------------------------------------------------- numpy kernels


def _taps(x: np.ndarray, attrs: dict) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per window tap, in row-major tap order: (values (N,C,OH,OW), inside (OH,OW), flat position h*W+w)."""
    ah, aw = axes(attrs, x.shape[2:])
    (ph, vh), (pw, vw) = ah.positions(), aw.positions()
    for i in range(ph.shape[1]):
        rows = np.clip(ph[:, i], 0, ah.size - 1)
        picked = x[:, :, rows, :]
        for j in range(pw.shape[1]):
            cols = np.clip(pw[:, j], 0, aw.size - 1)
            inside = vh[:, i, None] & vw[None, :, j]
            yield picked[:, :, :, cols], inside, rows[:, None] * aw.size + cols[None, :]


def max_scan(x: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """(max, flat index h*W+w of the winning tap, -1 where no tap is inside) by torch's scan rule."""
    if tiles(attrs, x.shape[2:]):
        return _tiled_max_scan(x, attrs)
    shape = (*x.shape[:2], *attrs["out"])
    best = np.full(shape, _lowest(x.dtype), x.dtype)
    arg = np.full(shape, -1, np.int64)
    for v, inside, at in _taps(x, attrs):
        wins = (v > best) | (np.isnan(v) if x.dtype.kind == "f" else False) | (arg < 0)
        wins &= inside
        best = np.where(wins, v, best)
        arg = np.where(wins, at, arg)
    return best, arg


def tiles(attrs: dict, size: tuple[int, int]) -> bool:
    """Whether the windows are disjoint tiles inside the input (kernel == stride, no padding or
    dilation, the common MaxPool2d(k)): then every input element is in at most one window.
    Tap numbers are int16: a larger kernel takes the general scan."""
    return (not attrs["adaptive"] and tuple(attrs["kernel"]) == tuple(attrs["stride"])
            and attrs["kernel"][0] * attrs["kernel"][1] <= np.iinfo(np.int16).max
            and not any(attrs["padding"]) and tuple(attrs["dilation"]) == (1, 1)
            and all(o * k <= n for o, k, n in zip(attrs["out"], attrs["kernel"], size)))


def _tile_taps(x: np.ndarray, attrs: dict) -> Iterator[np.ndarray]:
    """Per tap, in row-major tap order: the (N, C, OH, OW) strided view of that tap in every tile."""
    (oh, ow), (kh, kw) = attrs["out"], attrs["kernel"]
    for i in range(kh):
        for j in range(kw):
            yield x[:, :, i:oh * kh:kh, j:ow * kw:kw]


def _tile_winners(x: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """(max, winning tap number) per tile by the scan rule: a tap wins when greater than the best
    so far or NaN. Each tap is copied out of its strided view once (np.where on strided operands
    and masked copies run several times slower); the tap number is blended with integer masks."""
    taps = _tile_taps(x, attrs)
    best = np.array(next(taps))
    tap = np.zeros(best.shape, np.int16)  # kernel*kernel taps fit: tiles lie inside the input
    for t, view in enumerate(taps, start=1):
        v = np.ascontiguousarray(view)
        wins = v > best
        if x.dtype.kind == "f":
            wins |= v != v
        best = np.where(wins, v, best)
        tap ^= (tap ^ t) & -wins.view(np.int8).astype(np.int16)  # t where wins, else tap
    return best, tap


def _tiled_max_scan(x: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    best, tap = _tile_winners(x, attrs)
    (oh, ow), (kh, kw) = attrs["out"], attrs["kernel"]
    width = x.shape[3]
    corner = (np.arange(oh)[:, None] * kh * width + np.arange(ow)[None, :] * kw).astype(np.int64)
    offset = np.array([i * width + j for i in range(kh) for j in range(kw)], np.int64)
    return best, corner + offset[tap]


def _tiled_max_pool_grad(x: np.ndarray, g: np.ndarray, attrs: dict) -> np.ndarray:
    """max_pool_grad over disjoint tiles: each element gets at most one gradient, 0 + g (so -0.0
    lands as 0.0, as the scattered sum would), written tap by tap through strided views."""
    tap = _tile_winners(x, attrs)[1]
    share = g + np.zeros((), g.dtype)
    out = np.zeros(x.shape, g.dtype)
    zero = np.zeros((), g.dtype)
    for t, view in enumerate(_tile_taps(out, attrs)):
        view[...] = np.where(tap == t, share, zero)
    return out


def _lowest(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def max_pool(x: np.ndarray, **attrs) -> np.ndarray:
    return max_scan(x, attrs)[0]


def max_pool_index(x: np.ndarray, **attrs) -> np.ndarray:
    return max_scan(x, attrs)[1]


def max_pool_grad(x: np.ndarray, g: np.ndarray, *, relu: bool = False, **attrs) -> np.ndarray:
    """Each output's gradient added to its window's winner, in output order (np.add.at's); with
    relu, then where(x <= 0, 0, that), as relu's backward reading its output x."""
    out = _tiled_max_pool_grad(x, g, attrs) if tiles(attrs, x.shape[2:]) else _scattered_max_pool_grad(x, g, attrs)
    return np.where(x <= 0, np.zeros((), g.dtype), out) if relu else out


def _scattered_max_pool_grad(x: np.ndarray, g: np.ndarray, attrs: dict) -> np.ndarray:
    arg = max_scan(x, attrs)[1]
    n, c, h, w = x.shape
    out = np.zeros((n * c, h * w), g.dtype)
    per_plane = arg.shape[2] * arg.shape[3]  # spelled out: N*C may be 0, and reshape(0, -1) fails
    planes = np.broadcast_to(np.arange(n * c)[:, None], (n * c, per_plane))
    arg = arg.reshape(n * c, per_plane)
    won = arg >= 0
    np.add.at(out, (planes[won], arg[won]), g.reshape(n * c, per_plane)[won])
    return out.reshape(x.shape)


def avg_pool(x: np.ndarray, **attrs) -> np.ndarray:
    total = np.zeros((*x.shape[:2], *attrs["out"]), x.dtype)
    for v, inside, _ in _taps(x, attrs):
        total += np.where(inside, v, np.zeros((), x.dtype))
    return _divide(total, divisors(attrs, x.shape[2:]))


def _divide(total: np.ndarray, div: np.ndarray) -> np.ndarray:
    if total.dtype.kind == "f":
        return total / div.astype(total.dtype)
    wide = total.astype(np.int64)  # in 64 bits, as the kernels divide: no abs(-128) overflow in int8
    quotient = np.sign(wide) * np.sign(div) * (np.abs(wide) // np.abs(div))  # C's: toward zero
    return quotient.astype(total.dtype)


def avg_pool_grad(g: np.ndarray, *, size, **attrs) -> np.ndarray:
    """Each output's share g / divisor added to its window's taps, every input element receiving
    its shares in the order of the outputs: taps in reverse order (a later output reaches an element
    through an earlier tap), output rows one block at a time when two rows share a start."""
    share = _divide(g, divisors(attrs, size))
    out = np.zeros((*g.shape[:2], *size), g.dtype)
    ah, aw = axes(attrs, size)
    (ph, vh), (pw, vw) = ah.positions(), aw.positions()
    distinct = len(set(ph[:, 0])) == ah.out
    for block in [np.arange(ah.out)] if distinct else np.arange(ah.out)[:, None]:
        for i in reversed(range(ph.shape[1])):
            for j in reversed(range(pw.shape[1])):
                rows, cols = block[vh[block, i]], np.nonzero(vw[:, j])[0]
                part = share[:, :, rows][:, :, :, cols]
                np.add.at(out, (slice(None), slice(None), ph[rows, i][:, None], pw[cols, j][None, :]), part)
    return out
