"""F.linear eagerly as one op on 2-D inputs: the matmul and bias add forward, one VJP backward,
with torch's nodes (AddmmBackward0 or MmBackward0, and TBackward0 in front of the weight).

The composed form in nn/functional.py (transpose, matmul, expand, add forward; six nodes and
about ten dispatches backward) stays the definition: it is what a traced step records, what
runs for other ranks, dtypes and devices, and what the backward runs with create_graph. This
path calls the same primitive kernels on the same operands in the same order, so its values and
gradients equal the composed form's bit for bit.
"""

from __future__ import annotations

import numpy as np

from .. import dispatch
from ..autograd.grad_mode import is_grad_enabled
from ..autograd.graph import Node
from ..compiler.primitives import PRIMITIVES
from ..tensor import Tensor

_MATMUL, _SUM = PRIMITIVES["matmul"].kernel, PRIMITIVES["sum"].kernel


def applies(input: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Eager, on the CPU, (N, K) @ (M, K)^T (+ (M,)) in one floating dtype; anything else (and
    every error) takes the composed form."""
    if dispatch._tracer is not None or not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        return False
    if input.is_cuda or weight.is_cuda or not input.dtype.is_floating_point:
        return False
    x, w = input._data, weight._data
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1] or weight.dtype is not input.dtype:
        return False
    return bias is None or (isinstance(bias, Tensor) and not bias.is_cuda and bias.dtype is input.dtype and bias._data.shape == (w.shape[0],))


def linear(input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    x, w = input._data, weight._data
    with np.errstate(all="ignore"):
        out = _MATMUL(x, w.T)
        if bias is not None:
            out = np.add(out, bias._data)
    out = Tensor._wrap(out)
    operands = [t for t in (bias, input, weight) if t is not None]
    if is_grad_enabled() and any(t.requires_grad for t in operands):
        _attach(out, input, weight, bias)
    return out


def _attach(out: Tensor, input: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    transpose = None
    if weight.requires_grad:  # torch's graph: the weight's gradient passes a TBackward0 (weight.t())
        transpose = Node("TBackward0", _transpose_vjp, [], ((dispatch.edge(weight), 0),))
    edges = [(dispatch.edge(input), 0), (transpose, 0)]
    if bias is not None:
        edges.insert(0, (dispatch.edge(bias), 0))
    name = "AddmmBackward0" if bias is not None else "MmBackward0"
    needs = (bias is not None and bias.requires_grad, input.requires_grad, weight.requires_grad)
    out.grad_fn = Node(name, _vjp(bias is not None, needs), [input, weight], tuple(edges))
    out._requires_grad = True


def _transpose_vjp(grad: Tensor, saved: list) -> list:
    return [grad.t() if is_grad_enabled() else Tensor._wrap(grad._data.T)]


def _vjp(has_bias: bool, needs: tuple):
    def vjp(grad: Tensor, saved: list) -> list:
        x, w = saved  # unpacked: torch's error when either was modified in place since
        grads = _grads_as_ops(grad, x, w, needs) if is_grad_enabled() else _grads(grad._data, x._data, w._data, needs)
        return grads if has_bias else grads[1:]

    return vjp


def _grads(g: np.ndarray, x: np.ndarray, w: np.ndarray, needs: tuple) -> list:
    """[bias, input, weight.t()] gradients: the composed form's kernels (sum of the expanded
    bias, matmul with the transposed operands) on the same arrays."""
    with np.errstate(all="ignore"):
        gb = _SUM(g, dims=(0,), keepdim=True).reshape(-1) if needs[0] else None
        gx = _MATMUL(g, w) if needs[1] else None
        gwt = _MATMUL(x.T, g) if needs[2] else None
    return [None if a is None else Tensor._wrap(a) for a in (gb, gx, gwt)]


def _grads_as_ops(g: Tensor, x: Tensor, w: Tensor, needs: tuple) -> list:
    """The same gradients in differentiable ops (create_graph)."""
    return [g.sum(0) if needs[0] else None, g.matmul(w) if needs[1] else None,
            x.t().matmul(g) if needs[2] else None]
