"""The reference interpreter: any stage's graph run node by node with the primitives' numpy
kernels. It is the oracle of every pass and backend test, and `run_groups` is the oracle that
fusion changed nothing: it evaluates a fusion plan kernel by kernel, keeping only group roots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import GraphtorchCompileError
from .ir import Graph, Group, Node


def run(graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `graph` on arrays given in `graph.inputs` order; returns fresh output arrays."""
    env = _bind_inputs(graph, inputs)
    last = _last_uses(graph.nodes)
    keep = set(graph.outputs)
    for step, n in enumerate(graph.nodes):
        if n.op == "call":
            env[n] = evaluate(n, [env[i] for i in n.inputs])
        for i in n.inputs:  # free what no later node reads
            if last.get(i) == step and i not in keep:
                env.pop(i, None)
    return [np.array(env[o], order="C") for o in graph.outputs]


def run_groups(graph: Graph, groups: Sequence[Group], inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `graph` one group at a time, in list order: only group roots outlive their group."""
    env = _bind_inputs(graph, inputs)
    for g in groups:
        local: dict[Node, np.ndarray] = {}
        for n in g.nodes:
            args = []
            for i in n.inputs:
                if i in local:
                    args.append(local[i])
                elif i in env:
                    args.append(env[i])
                else:
                    raise GraphtorchCompileError(
                        "GT042", f"group {g.id} ({g.pattern}) reads {i.name}, which no earlier group computes",
                        n.loc, hint="the groups are not in a valid schedule order")
            local[n] = evaluate(n, args)
        env.update((o, local[o]) for o in g.outputs)
    missing = [o.name for o in graph.outputs if o not in env]
    if missing:
        raise GraphtorchCompileError("GT042", f"no group computes the graph outputs {', '.join(missing)}")
    return [np.array(env[o], order="C") for o in graph.outputs]


def evaluate(n: Node, args: list[np.ndarray]) -> np.ndarray:
    """One call node on arrays, with the type its node promises (checked)."""
    with np.errstate(all="ignore"):  # IEEE results (inf, nan) are the semantics, not errors
        out = np.asarray(n.prim.kernel(*args, **n.attrs))
    if out.shape != n.type.shape or out.dtype != n.type.dtype.np:
        raise GraphtorchCompileError(
            "GT041", f"{n.name} ({n.target}) returned {out.dtype}{list(out.shape)}, its type is {n.type}", n.loc,
            hint="the primitive's kernel and its type rule disagree (compiler/primitives.py)")
    return out


def _bind_inputs(graph: Graph, inputs: Sequence[np.ndarray]) -> dict[Node, np.ndarray]:
    params = graph.inputs
    if len(inputs) != len(params):
        raise GraphtorchCompileError(
            "GT040", f"the graph takes {len(params)} inputs ({', '.join(p.name for p in params)}), got {len(inputs)}",
            hint="pass one array per graph input, in graph.inputs order")
    env: dict[Node, np.ndarray] = {}
    for k, (p, a) in enumerate(zip(params, inputs)):
        if not isinstance(a, np.ndarray) or a.shape != p.type.shape or a.dtype != p.type.dtype.np:
            got = f"{a.dtype}{list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
            raise GraphtorchCompileError(
                "GT040", f"input {k} ({p.name}) expects {p.type} ({p.type.dtype.np}{list(p.type.shape)}), got {got}",
                p.loc, hint="convert with np.asarray(x, dtype=...) and check the shape")
        env[p] = a
    for n in graph.nodes:
        if n.op == "constant":
            env[n] = n.value
    return env


def _last_uses(nodes: list[Node]) -> dict[Node, int]:
    last: dict[Node, int] = {}
    for step, n in enumerate(nodes):
        for i in n.inputs:
            last[i] = step
    return last
