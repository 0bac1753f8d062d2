"""Which kernel computes a conv2d: chosen by shape with a cost model, so the dumps can say why.

The candidates (compiler/llvm/conv.py and conv_direct.py lower them):
  in_place  a 1x1 conv at stride 1 without padding: the GEMM reads the input as its B matrix
  im2col    unfold chunks of output positions, then the GEMM (output channels x positions)
  wide      im2col over a zero-padded plane's full-width rows (stride 1), compacted after
  direct    no unfold: each kernel tap's row of B is a stretch of the (padded) input plane,
            read in place by an MR x NR micro-kernel (stride 1)
  dot       few output positions, a large kernel (a weight gradient): vector dot products along
            the kernel's rows against the padded input plane, no unfold (width dilation 1)

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
    "dot": 1.0,  # the dot kernel's multiply-adds: 7 vector loads per 12 FMAs, but no edge waste in NR
}
MR, NR = 6, 16  # the micro-kernel's tile (output channels x positions)
DOT_ROWS, DOT_COLS, LANES = 3, 4, 8  # the dot kernel's tile (output channels x positions), f32 lanes
PLANE_MAX = 4 << 20  # bytes of input plane per thread the direct kernel may copy
WIDE_PLANE_MAX = 1 << 20  # the wide im2col's plane (one channel chunk)
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
    if conv.attrs["dilation"][1] == 1 and (cg * plane + NR) * x.dtype.itemsize <= PLANE_MAX:
        dots = _up(og, DOT_ROWS) * _up(positions, DOT_COLS) * cg * kh * _up(kw, LANES)
        costs["dot"] = cg * plane * COST["plane"] + dots * COST["mac"] * COST["dot"]
    if stride != (1, 1):
        return costs
    span = (oh - 1) * (x.shape[3] + 2 * pw) + ow  # output positions on the plane's full rows
    copy_plane = cg * plane * COST["plane"]
    if (ph, pw) != (0, 0) and plane * x.dtype.itemsize <= WIDE_PLANE_MAX // max(cg, 1):
        costs["wide"] = copy_plane + depth * span * (COST["unfold"] + COST["pack"]) + macs(span)
    if (cg * plane + NR) * x.dtype.itemsize <= PLANE_MAX:
        costs["direct"] = copy_plane + macs(_up(span, NR)) * COST["tap"]
    return costs


def _up(n: int, to: int) -> int:
    return math.ceil(n / to) * to
