"""The one place a primitive runs: eagerly on numpy, or recorded into a graph by the tracer.

Every user-level op is Python code over `apply(...)`. That is why the same `nn.Module.forward`
runs eagerly, traces into the IR, and (through the autograd engine run on tracer tensors)
produces the backward graph: each of those is just a different `apply`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from .autograd.grad_mode import is_grad_enabled
from .autograd.graph import Node
from .compiler.primitives import PRIMITIVES, Kind
from .runtime.cuda import DeviceArray

# The active tracer (graphtorch.tracer.Tracer) or None for eager mode.
_tracer = None


def current_tracer():
    """The active tracer; a tracer tensor used after its trace ended has none."""
    if _tracer is None:
        raise RuntimeError("no tracer is active")
    return _tracer


# tensor.py and autograd_rules.py import this module: bound on the first apply (an import
# statement per op cost ~10% of a small op's dispatch)
RULES: dict | None = None
Tensor = None


def _bind_late() -> None:
    global RULES, Tensor
    from .autograd_rules import RULES
    from .tensor import Tensor


def apply(prim: str, *inputs, **attrs):
    """Run primitive `prim` on tensors `inputs`; record autograd history when needed."""
    if Tensor is None:
        _bind_late()
    p = PRIMITIVES[prim]
    if _tracer is not None:
        out = _tracer.record(p, inputs, attrs)
    elif _on_device(inputs):  # device memory: a compiled single-op kernel (cuda_tensor.py)
        from .cuda_tensor import apply_cuda

        out = apply_cuda(p, inputs, attrs)
    else:
        out = _run_numpy(p, inputs, attrs)
    if out._dtype.is_floating_point and _needs_grad(inputs):
        rule = RULES.get(prim)
        if rule is None:
            raise RuntimeError(f"the derivative for '{prim}' is not implemented.")
        _attach(out, rule, inputs, attrs)
    return out


def _on_device(inputs) -> bool:
    for t in inputs:
        if isinstance(t._data, DeviceArray):
            return True
    return False


def _needs_grad(inputs) -> bool:
    """Whether an op on `inputs` records history: grad mode on and some input requires grad."""
    for t in inputs:
        if t._requires_grad:
            return is_grad_enabled()
    return False


# Kernels that only move or fill data raise no floating-point warnings: they skip np.errstate,
# which costs about as much as a small op's kernel
_NO_FP_WARNINGS = frozenset(name for name, p in PRIMITIVES.items() if p.kind is Kind.INJECTIVE) | {"full", "iota"}


# The output dtype of an elementwise primitive without attributes, on inputs of one shape and
# dtype, depends on that dtype alone: remembered after the type rule accepted it once
_MEMO_INFER = frozenset(name for name, p in PRIMITIVES.items() if p.kind is Kind.ELEMENTWISE and not p.attrs)
_out_dtypes: dict = {}
_quiet = 0  # > 0 inside quiet_floating_point(): np.errstate is already entered


def _out_dtype(p, inputs, attrs):
    """The output dtype of `p` on `inputs` (None when it depends on values), validating them."""
    if p.name not in _MEMO_INFER or not _uniform(inputs):
        return None if p.data_dependent else p.infer(*inputs, **attrs).dtype
    key = (p.name, inputs[0]._dtype)
    known = _out_dtypes.get(key)
    if known is None:
        known = _out_dtypes[key] = p.infer(*inputs).dtype
    return known


def _uniform(inputs) -> bool:
    first = inputs[0]
    dtype, shape = first._dtype, first._data.shape
    for t in inputs:
        if t._dtype is not dtype or t._data.shape != shape:
            return False
    return True


class quiet_floating_point:
    """Enter np.errstate(all="ignore") once for many kernels (a backward pass): each kernel then
    skips its own, which costs about as much as a small kernel."""

    def __enter__(self):
        global _quiet
        self._state = np.errstate(all="ignore")
        self._state.__enter__()
        _quiet += 1

    def __exit__(self, *exc):
        global _quiet
        _quiet -= 1
        self._state.__exit__(*exc)


def _run_numpy(p, inputs, attrs):
    out_dtype = _out_dtype(p, inputs, attrs)  # validates first
    arrays = [t._data for t in inputs]
    if _quiet or p.name in _NO_FP_WARNINGS:
        data = p.kernel(*arrays, **attrs)
    else:
        with np.errstate(all="ignore"):
            data = p.kernel(*arrays, **attrs)
    if out_dtype is not None and (not isinstance(data, np.ndarray) or data.dtype != out_dtype.np):
        data = np.asarray(data, dtype=out_dtype.np)
    out = Tensor._wrap(data)
    if p.may_alias and inputs and np.may_share_memory(data, arrays[0]):
        src = inputs[0]
        out._base = src._base if src._base is not None else src
        out._version = src._version
    return out


def _attach(out, rule, inputs, attrs) -> None:
    saved = [inputs[i] if _keeps(rule, i, inputs) else None for i in range(len(inputs))]
    if rule.save_output:
        saved.append(out.detach())
    in_types = [(t.shape, t._dtype, t._requires_grad) for t in inputs]

    def vjp(grad, saved_values):
        grads = rule.fn(grad, saved_values, attrs, in_types)
        return [g if req else None for g, (_, _, req) in zip(grads, in_types)]

    next_functions = tuple([(edge(t), 0) for t in inputs])
    out.grad_fn = Node(rule.name, vjp, saved, next_functions)
    if _tracer is not None and out._node is not None:  # backward nodes recorded later point back to this forward op
        out.grad_fn.metadata.update(loc=out._node.loc, origin=out._node.origin)
    out._requires_grad = True  # a floating-point op output (the setter's checks hold)


def _keeps(rule, i: int, inputs) -> bool:
    if i not in rule.save:
        return False
    users = (rule.needed_by or {}).get(i)
    return users is None or any(inputs[j].requires_grad for j in users)


def edge(t) -> Node | None:
    """Where the gradient of `t` goes: its grad_fn, its AccumulateGrad, or nowhere."""
    if not t._requires_grad:
        return None
    node = t.grad_fn
    return node if node is not None else t._accumulator()


def op(grad_name: str | None = None, origin: str | None = None) -> Callable:
    """Mark a user-level op. Its output's grad_fn is named like PyTorch's (`MeanBackward0`),
    and the graph nodes it records carry `origin` (`mean`) for the compiler's reports."""

    def deco(fn):
        label = grad_name or f"{fn.__name__.capitalize()}Backward0"

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            first = Node.created
            if _tracer is None:
                result = fn(*args, **kwargs)
            else:
                result = _call_labelled(fn, origin or fn.__name__, args, kwargs)
            head = result[0] if isinstance(result, tuple) and result else result
            node = getattr(head, "grad_fn", None)
            if node is not None and node.serial >= first:  # made by this call, not passed through
                node.rename(label)
            return result

        return wrapper

    return deco


def _call_labelled(fn: Callable, origin: str, args, kwargs):
    """fn(*args, **kwargs) with the graph nodes it records labelled `origin`."""
    _tracer.origins.append(origin)
    try:
        return fn(*args, **kwargs)
    finally:
        if _tracer is not None:
            _tracer.origins.pop()


def current_origin() -> str | None:
    return _tracer.origins[0] if _tracer is not None and _tracer.origins else None


def attach_custom(out, name: str, vjp: Callable, saved: list, inputs: list) -> None:
    """Attach a backward written by hand (autograd.Function) to `out`."""
    out.grad_fn = Node(name, vjp, saved, tuple((edge(t), 0) for t in inputs))
    out.requires_grad = True


__all__ = ["apply", "op", "edge", "attach_custom", "current_origin"]
