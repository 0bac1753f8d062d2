"""The `optimized` stage: dead code, common subexpressions, constant folding and algebraic
simplification. Each pass is `Graph -> Graph` (a new graph; the input is not changed) and keeps
the calling convention: the same inputs in the same order, outputs of the same types.

Decisions worth knowing:
- `full` and `iota` are sources, not constants: they stay as nodes (a kernel computes them
  inline, no buffer), CSE does not merge them (merging would only force a buffer when their
  users land in different kernels), and a folded result whose elements are all equal becomes
  a `full` of its shape rather than a constant array.
- `rand` is never merged or folded: two draws are two draws.
- A graph output stays a call node: simplifications that would make an output an input or a
  constant are skipped, so backends always write outputs into fresh buffers from a kernel.
- `x @ 0 -> 0` (a zeros operand of matmul) assumes the other operand finite, as -ffast-math.
- `x + 0 -> x` turns `-0.0 + 0.0` into `-0.0` where IEEE gives `0.0` (as -ffast-math's nsz).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .concats import concat_runs, pad_sums, part_sums
from .interpreter import evaluate
from .ir import Graph, Node, freeze, rewrite
from .matmul_sums import fuse_matmul_sums
from .primitives import Kind

Pass = Callable[[Graph], Graph]

FOLD_LIMIT = 4096  # fold results of at most this many elements into constants
_SOURCES = ("full", "iota")
_NEVER = ("rand", "all_reduce")  # effects: two draws are two draws, each collective a call


# ---------------------------------------------------------------- dead code


def dce(graph: Graph) -> Graph:
    """Drop nodes no output depends on; inputs stay (they are the calling convention)."""
    live: set[Node] = set()
    stack = list(graph.outputs)
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(n.inputs)
    if all(n in live or n.op == "input" for n in graph.nodes):
        return graph  # nothing dead: the same graph (the pipeline sees that nothing changed)
    out = Graph()
    env: dict[Node, Node] = {}
    for n in graph.nodes:
        if n.op == "input" or n in live:
            env[n] = out.add_copy(n, [env[i] for i in n.inputs])
    out.outputs = [env[o] for o in graph.outputs]
    return out


# ---------------------------------------------------------------- common subexpressions


def cse(graph: Graph) -> Graph:
    """Merge calls of the same primitive on the same inputs with equal attributes, and equal constants."""
    seen: dict[tuple, Node] = {}
    merged = []

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        if n.op == "constant":
            key = ("constant", n.type, n.value.tobytes())
        elif n.op == "call" and n.target not in _NEVER + _SOURCES:
            key = (n.target, tuple(id(i) for i in ins), freeze(n.attrs))
        else:
            return None
        if key in seen:
            merged.append(n)
        else:
            seen[key] = g.add_copy(n, ins)
        return seen[key]

    out = rewrite(graph, fn)
    return out if merged else graph


# ---------------------------------------------------------------- constant folding


def fold_constants(graph: Graph) -> Graph:
    """Evaluate calls whose inputs are all constants or sources, with the primitives' kernels."""
    outputs = set(graph.outputs)

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        if n.op != "call" or n.target in _NEVER + _SOURCES or not ins or not all(map(_is_known, ins)):
            return None
        splat = _splat_result(n, ins)  # first: layout ops keep the value as written (0.2, not 0.2000000029)
        if splat is not None:
            return g.call("full", [], dict(shape=n.type.shape, value=splat, dtype=n.type.dtype), n.loc, n.origin)
        if n.type.numel <= FOLD_LIMIT and all(i.type.numel <= 16 * FOLD_LIMIT for i in ins):
            try:
                value = evaluate(n, [_value(i) for i in ins])
            except (RuntimeError, IndexError, ValueError):  # e.g. a singular constant matrix: keep the node
                return None
            return _materialize(g, value, n, as_constant=n not in outputs)
        return None

    return rewrite(graph, fn, keep=True)


def _is_known(n: Node) -> bool:
    return n.op == "constant" or (n.op == "call" and n.target in _SOURCES)


def _value(n: Node) -> np.ndarray:
    return n.value if n.op == "constant" else evaluate(n, [])


def _materialize(g: Graph, value: np.ndarray, like: Node, *, as_constant: bool) -> Node | None:
    if _uniform(value) and value.size > 0:
        scalar = value.reshape(-1)[0].item()
        return g.call("full", [], dict(shape=like.type.shape, value=scalar, dtype=like.type.dtype), like.loc, like.origin)
    if not as_constant:
        return None
    node = g.constant(value, like.loc)
    node.origin = like.origin
    return node


def _uniform(a: np.ndarray) -> bool:
    """All elements bit-identical (so -0.0 and 0.0 differ, and NaN equals itself)."""
    if a.size <= 1:
        return True
    b = np.ascontiguousarray(a).reshape(-1).view(np.uint8).reshape(a.size, a.dtype.itemsize)
    return bool((b == b[0]).all())


_LAYOUT = ("expand", "reshape", "permute", "slice", "unfold")


def _splat_result(n: Node, ins: list[Node]) -> object | None:
    """The one value of a large result computed from `full`s only, or None."""
    values = [_splat(i) for i in ins]
    if any(v is None for v in values):
        return None
    if n.target in _LAYOUT:
        return values[0]
    if n.prim.kind is Kind.ELEMENTWISE:
        scalars = [np.asarray(v, i.type.dtype.np) for v, i in zip(values, ins)]
        with np.errstate(all="ignore"):
            out = np.asarray(n.prim.kernel(*scalars, **n.attrs), n.type.dtype.np)
        return out.item()
    return None


def _splat(n: Node) -> object | None:
    """The value every element of `n` has, when that is known statically, else None."""
    if n.op == "call" and n.target == "full":
        return n.attrs["value"]
    if n.op == "call" and n.target in _LAYOUT:
        return _splat(n.inputs[0])
    if n.op == "constant" and 0 < n.value.size <= FOLD_LIMIT and _uniform(n.value):
        return n.value.reshape(-1)[0].item()
    return None


# ---------------------------------------------------------------- algebraic simplification


def simplify(graph: Graph) -> Graph:
    """x*1, 1*x, x+0, 0+x, x-0, x/1, --x, x @ 0; layout ops that compose or do nothing (permute, reshape,
    expand, pad, slice); casts to the same dtype; copies; a transposed matmul result whose
    matmul has no other user becomes the matmul of the transposed operands."""
    outputs = set(graph.outputs)
    uses: dict[Node, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            uses[i] = uses.get(i, 0) + 1

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        if n.op != "call":
            return None
        if n.target == "permute" and uses[n.inputs[0]] == 1 and n.inputs[0] not in outputs:
            new = _transposed_matmul(n, ins, g)
            if new is not None:
                return new
        rule = _RULES.get(n.target)
        new = rule(n, ins, g) if rule else None
        if new is not None and n in outputs and new.op != "call":
            return None
        return new

    return rewrite(graph, fn, keep=True)


def _is(n: Node, value: int) -> bool:
    v = _splat(n)
    return v is not None and not isinstance(v, str) and v == value


def _identity_binary(left_unit: bool, unit: int):
    def rule(n: Node, ins: list[Node], g: Graph) -> Node | None:
        if _is(ins[1], unit):
            return ins[0]
        if left_unit and _is(ins[0], unit):
            return ins[1]
        return None
    return rule


def _neg(n: Node, ins: list[Node], g: Graph) -> Node | None:
    x = ins[0]
    return x.inputs[0] if x.op == "call" and x.target == "neg" else None


def _permute(n: Node, ins: list[Node], g: Graph) -> Node | None:
    x, dims = ins[0], tuple(n.attrs["dims"])
    if x.op == "call" and x.target == "permute":
        inner = tuple(x.attrs["dims"])
        x, dims = x.inputs[0], tuple(inner[d] for d in dims)
    if dims == tuple(range(len(dims))):
        return x
    return g.call("permute", [x], dict(dims=dims), n.loc, n.origin) if x is not ins[0] else None


def _transposed_matmul(n: Node, ins: list[Node], g: Graph) -> Node | None:
    """(A @ B)^T -> B^T @ A^T: Linear's weight gradient comes out in the weight's layout and the
    GEMM reads the transposed operands in place, instead of a materialized transpose of its result."""
    x, dims = ins[0], tuple(n.attrs["dims"])
    k = len(dims)
    if x.op != "call" or x.target != "matmul" or dims != tuple(range(k - 2)) + (k - 1, k - 2):
        return None
    a, b = (g.call("permute", [v], dict(dims=dims), n.loc, n.origin) for v in x.inputs)
    return g.call("matmul", [b, a], {}, x.loc, x.origin)


def _collapse(target: str):
    """reshape(reshape(x)) and expand(expand(x)) take the outer shape; to the same shape is a no-op."""
    def rule(n: Node, ins: list[Node], g: Graph) -> Node | None:
        x = ins[0]
        if x.op == "call" and x.target == target:
            x = x.inputs[0]
        if x.type.shape == n.type.shape:
            return x
        return g.call(target, [x], dict(n.attrs), n.loc, n.origin) if x is not ins[0] else None
    return rule


def _same_shape(n: Node, ins: list[Node], g: Graph) -> Node | None:
    """pad by zeros and slice of everything are no-ops (their type says so: same shape)."""
    if n.target == "slice" and any(s != 1 for s in n.attrs["steps"]):
        return None
    return ins[0] if ins[0].type.shape == n.type.shape else None


def _zero_matmul(n: Node, ins: list[Node], g: Graph) -> Node | None:
    """A matmul by an all-zero operand is zeros of its type: a recurrent layer's zero initial state
    makes h0 @ W_hh^T and its weight-gradient term dgates^T @ h0, which then drop out of their sums
    (0 + y -> y). Like -ffast-math, this assumes the other operand finite (inf * 0 would be NaN)."""
    if not any(_is(i, 0) for i in ins):
        return None
    zero = np.zeros((), n.type.dtype.np).item()
    return g.call("full", [], dict(shape=n.type.shape, value=zero, dtype=n.type.dtype), n.loc, n.origin)


def _cast(n: Node, ins: list[Node], g: Graph) -> Node | None:
    return ins[0] if ins[0].type.dtype is n.attrs["dtype"] else None


_RULES = {
    "mul": _identity_binary(True, 1),
    "add": _identity_binary(True, 0),
    "sub": _identity_binary(False, 0),
    "div": _identity_binary(False, 1),
    "neg": _neg,
    "permute": _permute,
    "reshape": _collapse("reshape"),
    "expand": _collapse("expand"),
    "cast": _cast,
    "pad": _same_shape,
    "slice": _same_shape,
    "copy": lambda n, ins, g: ins[0],
    "matmul": _zero_matmul,
}


# ---------------------------------------------------------------- relu masks from relu outputs


def relu_masks_from_outputs(graph: Graph) -> Graph:
    """Where relu's mask m = le(x, c) also feeds the backward, compute that copy from the output
    y = where(m, d, x) instead: le(y, c) is m whenever d <= c (x <= c gives y = d <= c; x > c and
    NaN give y = x). Then x has no reader outside relu, so relu joins its matmul's or conv's
    epilogue and the backward reads y, which the next layer's weight gradient reads anyway,
    rather than a mask kernel's buffer and x (PyTorch's threshold_backward reads the output too)."""
    relu_of: dict[Node, Node] = {}  # mask -> the relu output that can stand in for its other users
    for y in graph.nodes:
        if y.op == "call" and y.target == "where" and y.inputs[0].op == "call" and y.inputs[0].target == "le":
            m, d, x = y.inputs
            c = m.inputs[1]
            dv, cv = _splat(d), _splat(c)
            if m.inputs[0] is x and dv is not None and cv is not None and dv <= cv and m not in relu_of:
                relu_of[m] = y
    users = graph.users()
    if not any(len(users[m]) > 1 for m in relu_of):
        return graph
    new_of: dict[Node, Node] = {}
    standin: dict[Node, Node] = {}  # mask -> le(y, c) in the new graph

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        fresh = list(ins)
        for k, i in enumerate(n.inputs):
            y = relu_of.get(i)
            if y is not None and n is not y and y in new_of:  # a later reader: the stand-in
                if i not in standin:
                    standin[i] = g.call("le", [new_of[y], new_of[i.inputs[1]]], dict(i.attrs), loc=i.loc, origin=i.origin)
                fresh[k] = standin[i]
        new_of[n] = g.add_copy(n, fresh)
        return new_of[n]

    return dce(rewrite(graph, fn))


def relu_into_max_pool_grad(graph: Graph) -> Graph:
    """where(le(y, 0), 0, max_pool_grad(y, g)) -> max_pool_grad(y, g, relu=True) when the pool's
    gradient has no other reader: relu's backward (its mask from relu's output y, as above)
    applied by the pool's gradient kernel, which reads y anyway, instead of a kernel of its own."""
    users = graph.users()
    where_of = {n.inputs[2]: n for n in graph.nodes if _relu_of_max_pool_grad(n, users, graph.outputs)}
    if not where_of:
        return graph
    pool_of = {w: p for p, w in where_of.items()}

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        if n in where_of:  # the pool's gradient, relu included
            w = where_of[n]
            return g.call("max_pool_grad", ins, dict(n.attrs, relu=True), loc=w.loc, origin=w.origin)
        return ins[2] if n in pool_of else None  # the where: the fused gradient stands in for it

    return dce(rewrite(graph, fn))


def _relu_of_max_pool_grad(n: Node, users: dict[Node, list[Node]], outputs: list[Node]) -> bool:
    """n = where(le(y, ±0), +0, p) with p = max_pool_grad(y, g), read by n alone, of n's type."""
    if not (n.op == "call" and n.target == "where" and all(i.op == "call" for i in n.inputs)):
        return False
    m, d, p = n.inputs
    zero = _splat(d)
    return (m.target == "le" and p.target == "max_pool_grad" and not p.attrs.get("relu") and m.inputs[0] is p.inputs[0]
            and _splat(m.inputs[1]) == 0 and zero == 0 and not np.signbit(zero) and p.type == n.type
            and set(users[p]) == {n} and p not in outputs)


# ---------------------------------------------------------------- fills, one per user


def split_fills(graph: Graph) -> Graph:
    """Give every user of a `full` its own copy. A fill reads nothing, so each consumer's kernel
    computes it for free; shared, it was a kernel of its own writing a buffer that others read
    (relu's zeros, used by the forward and the backward)."""
    users = graph.users()
    shared = {n for n in graph.nodes if n.op == "call" and n.target == "full" and len(users.get(n, ())) > 1
              and n not in graph.outputs}

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        if not any(i in shared for i in n.inputs):
            return None
        fresh = [g.add_copy(i, []) if i in shared else new for i, new in zip(n.inputs, ins)]
        return g.add_copy(n, fresh)

    return dce(rewrite(graph, fn)) if shared else graph


def split_reshapes(graph: Graph) -> Graph:
    """Give every kernel-fused user of a shared reshape its own copy. A reshape only renames
    positions, so a consumer's kernel indexes through its copy for free; shared, it was a kernel
    of its own copying the buffer (the GPT's qkv projection before its three slices, each layer
    norm's output before its matmuls). Opaque users read a buffer, so they keep sharing the
    original, as does a graph output."""
    users = graph.users()
    fused_users = lambda n: {u for u in users.get(n, ()) if u.prim.kind is not Kind.OPAQUE}
    shared = {n for n in graph.nodes if n.op == "call" and n.target == "reshape" and len(set(users[n])) > 1
              and fused_users(n)}

    def fn(n: Node, ins: list[Node], g: Graph) -> Node | None:
        if n.op != "call" or n.prim.kind is Kind.OPAQUE or not any(i in shared for i in n.inputs):
            return None
        clones: dict[Node, Node] = {}  # one copy per user, however many times it reads the reshape
        for i, new in zip(n.inputs, ins):
            if i in shared and i not in clones:
                clones[i] = g.add_copy(i, [new.inputs[0]])
        return g.add_copy(n, [clones.get(i, new) for i, new in zip(n.inputs, ins)])

    return dce(rewrite(graph, fn)) if shared else graph


def fingerprint(graph: Graph) -> tuple:
    """What a pass can change, as a comparable value (names aside)."""
    pos = {n: i for i, n in enumerate(graph.nodes)}
    nodes = tuple((n.op, n.target, tuple(pos[i] for i in n.inputs), freeze(n.attrs), n.type,
                   n.value.tobytes() if n.op == "constant" else None) for n in graph.nodes)
    return nodes, tuple(pos[o] for o in graph.outputs)


def _same_graph(a: Graph, b: Graph) -> bool:
    """Equal fingerprints; a different node count answers first (a fingerprint of the GPT step's
    ~1800 nodes takes ~18 ms, and the rounds that changed something mostly changed the count)."""
    return len(a.nodes) == len(b.nodes) and fingerprint(a) == fingerprint(b)


# ---------------------------------------------------------------- the stage

# The `optimized` stage, in order; `optimize` repeats the list until nothing changes.
PASSES: list[tuple[str, Pass]] = [
    ("fold_constants", fold_constants),
    ("simplify", simplify),
    ("pad_sums", pad_sums),
    ("fuse_matmul_sums", fuse_matmul_sums),
    ("concat_runs", concat_runs),
    ("part_sums", part_sums),
    ("cse", cse),
    ("dce", dce),
]


# After the fixed point (CSE would merge their work back)
FINAL_PASSES: list[tuple[str, Pass]] = [("relu_masks_from_outputs", relu_masks_from_outputs),
                                        ("relu_into_max_pool_grad", relu_into_max_pool_grad), ("split_fills", split_fills),
                                        ("split_reshapes", split_reshapes)]


def optimize(graph: Graph, *, passes: list[tuple[str, Pass]] | None = None,
             check: Callable[[str, Graph, Graph], None] | None = None, max_rounds: int = 10) -> Graph:
    """Run `passes` (default PASSES) to a fixed point, then FINAL_PASSES (with the default passes);
    `check(name, before, after)` after each pass."""
    def run(name, p):
        nonlocal graph
        after = p(graph)
        if check is not None:
            check(name, graph, after)
        graph = after

    for _ in range(max_rounds):
        start = graph
        for name, p in passes or PASSES:
            run(name, p)
        if graph is start or _same_graph(graph, start):  # `is`: no pass changed anything
            break
    for name, p in FINAL_PASSES if passes is None else []:
        run(name, p)
    return graph
