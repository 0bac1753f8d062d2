"""Which kernel computes a conv2d: chosen by shape with a cost model, so the dumps can say why.

The candidates (compiler/llvm/conv.py and conv_direct.py lower them):
  in_place  a 1x1 conv at stride 1 without padding: the GEMM reads the input as its B matrix
  im2col    unfold chunks of output positions, then the GEMM (output channels x positions)
  wide      im2col over a zero-padded plane's full-width rows (stride 1), compacted after
  direct    no unfold: each kernel tap's row of B is a stretch of the (padded) input plane,
            read in place by an MR x NR micro-kernel (stride 1)
  dot       few output positions, a large kernel (a weight gradient): vector dot products along
            the whole flattened kernel against "shifted planes" of the input (KW-long runs per
            output column), in register tiles of R channels x T positions; threads split the
            summed channels (a weight gradient's batch) and add their partial sums at the end
  transposed a stride-1 conv read as a scatter (the input gradient: padding up to the whole
            dilated kernel): each input element times the taps that reach an output, a GEMM of
            (tap, channel) rows by wide input rows added into a margined output plane, so no
            padding row is multiplied (compiler/llvm/conv_transposed.py)

With few output channels the GEMM's rows (MR at a time) are few, so each unfolded element is
used only a few times and copying it costs more than the multiply-adds it feeds: the direct
kernel, which copies only the input plane, wins there. With many channels the unfold is
amortized and the three are close. The costs are in about a core's cycles per image and group;
the table says what one element of each kind of work costs. The choice is the LLVM backend's;
the CUDA backend (compiler/cuda/conv.py) has one conv kernel and does not read it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .ir import Node

COST = {
    "mac": 1 / 16,  # one multiply-add in the micro-kernel (8-lane FMA, two per cycle)
    "unfold": 0.5,  # one element copied into the im2col buffer (short runs, bounds split)
    "pack": 0.25,  # one element of B packed into panels by the GEMM
    "plane": 0.25,  # one element of the input copied into a zero-padded plane
    "tap": 1.1,  # the direct kernel's multiply-adds: unaligned loads and a tap offset per row
    "dot": 1.0,  # the dot kernel's multiply-adds: R + T vector loads per R*T FMAs
    "run": 8.0,  # setting up one run of a copy (bounds split, pointers): short runs cost this each
    "operand": 1.0,  # the dot kernel's pointer to one operand row, per tile and summed channel
    "partial": 1.0,  # the dot kernel's partial-sum vector of one output element: zeroed, kept, reduced
    "scatter": 1.15,  # the transposed kernel's multiply-adds: its C tile is added into the plane
}
MR, NR = 6, 16  # the micro-kernel's tile (output channels x positions)
LANES = 8  # f32 lanes per vector
DOT_REGISTERS = 24  # accumulators of a dot tile (32 vector registers with AVX-512VL, some for operands)
PLANE_MAX = 4 << 20  # bytes of input plane per thread the direct kernel may copy
DOT_PLANES = 192 << 10  # bytes of shifted planes per dot work item: they stay in L2 while tiles reuse them
DOT_PARTIALS = 2 << 20  # bytes of partial-sum vectors per thread (one per output element)
WIDE_PLANE_MAX = 1 << 20  # the wide im2col's plane (one channel chunk)
# work items per thread that the image-splitting kernels (direct, transposed, dot) aim for: they
# hand items out from a shared counter, so a few per thread even out a thread that another
# process slows down, and a small batch is cut within images to give every thread some
TILES_PER_THREAD = 4
FORCE_ENV = "GRAPHTORCH_CONV_LOWERING"  # name a candidate to force it where it applies (tests)


@dataclass(frozen=True)
class ConvLowering:
    name: str
    costs: dict[str, float]  # every applicable candidate's estimate

    def __str__(self) -> str:
        est = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(self.costs.items(), key=lambda kv: kv[1]))
        return f"{self.name} (cost per image: {est})"


def choose(conv: Node) -> ConvLowering:
    """The cheapest applicable lowering of a conv2d node, or $GRAPHTORCH_CONV_LOWERING's if it applies."""
    costs = candidate_costs(conv)
    forced = os.environ.get(FORCE_ENV, "")
    name = forced if forced in costs else min(costs, key=costs.get)
    return ConvLowering(name, costs)


def candidate_costs(conv: Node) -> dict[str, float]:
    x, w = conv.inputs[0].type, conv.inputs[1].type
    o, cg, kh, kw = w.shape
    _, _, oh, ow = conv.type.shape
    (ph, pw), stride = conv.attrs["padding"], tuple(conv.attrs["stride"])
    og, depth, positions = o // conv.attrs["groups"], cg * kh * kw, oh * ow
    rows = math.ceil(og / MR) * MR
    macs = lambda cols: rows * cols * depth * COST["mac"]  # noqa: E731
    costs = {"im2col": depth * positions * (COST["unfold"] + COST["pack"]) + macs(_up(positions, NR))}
    if (kh, kw) == (1, 1) and stride == (1, 1) and (ph, pw) == (0, 0):
        costs["in_place"] = depth * positions * COST["pack"] + macs(positions)
    plane = (x.shape[2] + 2 * ph) * (x.shape[3] + 2 * pw)
    dot = dot_plan(conv)
    if dot.per_channel * x.dtype.itemsize <= PLANE_MAX and conv.type.numel * LANES * x.dtype.itemsize <= DOT_PARTIALS:
        tile_rows, tile_cols = dot.tile  # (the GEMM's `rows` above stays the macs' row count)
        dots = _up(og, tile_rows) * _up(positions, tile_cols) * cg * _up(dot.length, LANES)
        runs = cg * dot.per_channel // kw  # shifted-plane rows copied
        setup = (_up(og, tile_rows) // tile_rows) * (_up(positions, tile_cols) // tile_cols) * cg * sum(dot.tile)
        costs["dot"] = (runs * (COST["run"] + kw * COST["plane"]) + dots * COST["mac"] * COST["dot"]
                        + setup * COST["operand"] + og * positions * COST["partial"])
    if stride != (1, 1):
        return costs
    dil = conv.attrs["dilation"]
    span = (oh - 1) * (x.shape[3] + 2 * pw) + ow  # output positions on the plane's full rows
    copy_plane = cg * plane * COST["plane"]
    if (ph, pw) != (0, 0) and plane * x.dtype.itemsize <= WIDE_PLANE_MAX // max(cg, 1):
        costs["wide"] = copy_plane + depth * span * (COST["unfold"] + COST["pack"]) + macs(span)
    if ph <= (kh - 1) * dil[0] and pw <= (kw - 1) * dil[1] and _transposed_bytes(conv) <= PLANE_MAX:
        costs["transposed"] = _transposed_cost(conv)
    if (cg * plane + NR) * x.dtype.itemsize <= PLANE_MAX:
        costs["direct"] = copy_plane + macs(_up(span, NR)) * COST["tap"]
    return costs


def _transposed_bytes(conv: Node) -> int:
    """Scratch per thread of the transposed kernel: the wide input rows and the output planes."""
    x, (o, cg, kh, kw) = conv.inputs[0].type, conv.inputs[1].type.shape
    (dh, dw), og = conv.attrs["dilation"], o // conv.attrs["groups"]
    row = x.shape[3] + (kw - 1) * dw
    return (cg * x.shape[2] * row + og * (x.shape[2] + (kh - 1) * dh) * row) * x.dtype.itemsize


def _transposed_cost(conv: Node) -> float:
    """Wide input rows W + (KW-1)*dw long, times (tap, channel) rows; the plane zeroed and cropped."""
    x, (o, cg, kh, kw) = conv.inputs[0].type, conv.inputs[1].type.shape
    (dh, dw), og = conv.attrs["dilation"], o // conv.attrs["groups"]
    row = x.shape[3] + (kw - 1) * dw
    span, plane = x.shape[2] * row, (x.shape[2] + (kh - 1) * dh) * row
    parts = transposed_parts(conv)  # each chunk's (tap, channel) rows are padded to MR on their own
    macs = parts * _up(kh * kw * og // parts, MR) * _up(span, NR) * cg * COST["mac"] * COST["scatter"]
    return cg * span * COST["plane"] + og * plane * (COST["plane"] + COST["pack"]) + macs


@dataclass(frozen=True)
class DotPlan:
    """The dot kernel's geometry (compiler/llvm/conv_dot.py): per summed channel, OW * phases
    shifted planes of `rows` x KW elements; work items of `chunk` channels, `chunks` per image."""

    rows: int  # U: rows of a shifted plane
    plane: int  # elements of one shifted plane
    per_channel: int  # elements of one channel's planes
    length: int  # KH * KW: the length of every dot product
    tile: tuple[int, int]  # output channels x positions per register tile
    chunk: int
    chunks: int


def dot_plan(conv: Node, threads: int = 2) -> DotPlan:
    """Chunks small enough that an item's planes stay in L2 and every thread gets a few items."""
    _, cg, kh, kw = conv.inputs[1].type.shape
    n, o, oh, ow = conv.type.shape
    sh, dh = conv.attrs["stride"][0], conv.attrs["dilation"][0]
    rows = (oh - 1) * sh // dh + kh
    per_channel = ow * dh * rows * kw
    fit = max(1, DOT_PLANES // (per_channel * conv.type.dtype.itemsize))
    per_plane = parts_wanted(n * conv.attrs["groups"], threads)  # chunks per (image, group) for balance
    chunk = max(1, min(fit, -(-cg // per_plane)))
    tile = dot_tile(o // conv.attrs["groups"], oh * ow)
    return DotPlan(rows, rows * kw, per_channel, kh * kw, tile, chunk, -(-cg // chunk))


def parts_wanted(items: int, threads: int) -> int:
    """Into how many parts to cut each of `items` (images, or (image, group) pairs) so that there
    are TILES_PER_THREAD work items per thread."""
    return max(1, -(-TILES_PER_THREAD * threads // max(items, 1)))


def transposed_parts(conv: Node, threads: int = 2) -> int:
    """Output-channel chunks per (image, group) of the transposed kernel: the fewest that divide
    Og and give every thread TILES_PER_THREAD work items (one per channel if none does)."""
    og = conv.type.shape[1] // conv.attrs["groups"]
    wanted = parts_wanted(conv.type.shape[0] * conv.attrs["groups"], threads)
    return next((d for d in range(wanted, og + 1) if og % d == 0), og)


def dot_tile(channels: int, positions: int) -> tuple[int, int]:
    """(R, T) of the dot kernel's register tile: the fewest cycles over the padded tile grid, a
    step costing its R*T FMAs or its R + T loads (T unaligned: 1.5 each), whichever bounds it."""
    def cycles(rt):
        r, t = rt
        return (math.ceil(channels / r) * math.ceil(positions / t) * max(r * t, r + 1.5 * t + 2), -r * t)

    shapes = [(r, t) for r in range(1, 9) for t in range(1, 13) if r * t <= DOT_REGISTERS]
    return min(shapes, key=cycles)


def _up(n: int, to: int) -> int:
    return math.ceil(n / to) * to
