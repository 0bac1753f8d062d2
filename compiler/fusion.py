"""The `fused` stage: call nodes grouped into kernels, in the spirit of TVM's fuse_ops.

Nodes are visited in topological order. A node that is the root of its group tries to join the
group of its immediate post-dominator `p` (the first node every path from it to an output goes
through; networkx's dominators on the reversed graph with a virtual sink). Joining takes every
node on the paths between them, so the merged group still has one output. A merge is vetoed,
and the veto recorded with its reason, when the merged group would break a pattern's contract
(docs/ir.md, "Fusion groups"):

- "matmul"/"conv2d": one out-fusable anchor, injective-only prologues on its operands, an
  elementwise-only epilogue (bias, relu), side operands elementwise/injective from group inputs;
- "reduction": one reduction anchor, an elementwise/injective prologue, an elementwise epilogue
  (plus `gather` at the reduced index: an argmax + gather, as max/min with indices);
- "elementwise": elementwise and injective nodes only; "single": an opaque node alone;

or when a member would be used outside the group, a path outside the group would join two
members (a cycle between kernels), or the group would exceed `max_group_size` nodes.

Then related elementwise groups of one shape merge into groups with several outputs
(sibling_fusion.py): the only groups whose outputs are not just their root.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from . import conv_lowering, conv_pool
from .errors import GraphtorchCompileError
from .ir import ANCHOR_KINDS, Graph, Group, Node, format_node, make_group
from .primitives import Kind
from .sibling_fusion import exposed, merge_siblings

MAX_GROUP_SIZE = 64


@dataclass
class Rejection:
    producer: Node  # the root of the group that tried to grow
    consumer: Node  # the node it could not take in
    reason: str
    group: Group | None = None  # the producer's final group, set when the plan is complete

    def __str__(self) -> str:
        into = f"group {self.group.id} ({label(self.group)})" if self.group else f"the group of {describe(self.producer)}"
        return f"cannot fuse {describe(self.consumer)} into {into}: {self.reason}"


@dataclass
class FusionPlan:
    groups: list[Group]  # in a valid execution order
    rejections: list[Rejection] = field(default_factory=list)

    def group_of(self, node: Node) -> Group:
        for g in self.groups:
            if node in g.nodes:
                return g
        raise KeyError(f"{node.name} is in no group")

    def __str__(self) -> str:
        calls = sum(len(g.nodes) for g in self.groups)
        lines = [f"{len(self.groups)} kernels from {calls} call nodes"]
        for g in self.groups:
            lines.append(format_group(g))
        lines.append(f"rejections ({len(self.rejections)}):")
        lines += [f"  {r}" for r in self.rejections] or ["  (none)"]
        return "\n".join(lines)


def describe(n: Node) -> str:
    """`%12 (max_pool, from max_pool2d at lenet.py:20)`"""
    what = n.target if n.op == "call" else n.op
    origin = f", from {n.origin}" if n.origin else ""
    at = f" at {n.loc}" if n.loc else ""
    return f"{n.name} ({what}{origin}{at})"


def label(g: Group) -> str:
    """A short name of what a group computes: `conv2d + bias + relu`, `sum + mul`."""
    a = g.anchor
    words: list[str] = []
    for n in g.nodes:
        if a is not None and n is not a and not _reaches(a, n, g.nodes):
            # side operands never name a group; a reduction's prologue does (bce + mean)
            if a.prim.kind is Kind.OUT_FUSABLE or not _reaches(n, a, g.nodes):
                continue
        if a is not None and a.prim.kind is Kind.OUT_FUSABLE and n is not a:
            word = "bias" if n.target == "add" and n.origin == a.origin else n.origin or n.target
            word = n.target if word == a.origin else word
        else:
            word = n.target if n is a and a.prim.kind is Kind.OUT_FUSABLE else n.origin or n.target
        if word not in words:
            words.append(word)
    return " + ".join(words[:5] + (["..."] if len(words) > 5 else []))


def _reaches(a: Node, n: Node, members: list[Node]) -> bool:
    """`n` depends on `a` through members."""
    inside = set(members)
    stack, seen = [n], set()
    while stack:
        m = stack.pop()
        if m is a:
            return True
        if m not in seen:
            seen.add(m)
            stack.extend(i for i in m.inputs if i in inside)
    return False


def format_group(g: Group) -> str:
    written = f"root {g.outputs[0].name}" if len(g.outputs) == 1 else f"outputs ({', '.join(o.name for o in g.outputs)})"
    head = (f"group {g.id} [{g.pattern}] {label(g)}: {len(g.nodes)} nodes, {written}, "
            f"inputs ({', '.join(i.name for i in g.inputs)})")
    if g.pattern in ("conv2d", "conv2d_pool") and g.anchor is not None:
        head += f"\n    lowering: {conv_lowering.choose(g.anchor)}"
        if g.pattern == "conv2d_pool":
            head += f"; max_pool over chunks of {conv_pool.chunk_size(g)} images, the activation in scratch"
    return "\n".join([head] + [f"    {format_node(n)}" for n in g.nodes])


# ---------------------------------------------------------------- the pass


def fuse(graph: Graph, *, max_group_size: int = MAX_GROUP_SIZE, multi_output: bool = True) -> FusionPlan:
    """Group every call node of `graph` into kernels; deterministic for a given graph.
    multi_output: merge related same-shape elementwise groups into groups with several outputs
    (sibling_fusion.py)."""
    f = _Fuser(graph, max_group_size)
    for n in f.calls:
        if f.root_of(n) is n:
            f.try_grow(n)
    plan = _with_conv_pools(f.plan(), f)
    if multi_output:
        plan = _with_siblings(graph, plan, max_group_size)
    check_plan(graph, plan.groups)
    return plan


def _with_siblings(graph: Graph, plan: FusionPlan, cap: int) -> FusionPlan:
    groups = merge_siblings(graph, plan.groups, cap)
    owner = {n: g for g in groups for n in g.nodes}
    for r in plan.rejections:
        r.group = owner[r.group.nodes[-1]] if r.group else None
        if r.group is not None and owner.get(r.consumer) is r.group:  # the refusal stands, its cost does not
            r.reason += "; sibling fusion then put both in this group, which writes several outputs"
    return FusionPlan(groups, plan.rejections)


def _with_conv_pools(plan: FusionPlan, f: _Fuser) -> FusionPlan:
    """conv2d + epilogue + max_pool merged where the activation has no other reader (conv_pool.py)."""
    groups, refused = conv_pool.fuse_conv_pool(plan.groups, f.users, f.outputs)
    pooled = {g.outputs[0] for g in groups if g.pattern == "conv2d_pool"}
    by_root = {g.outputs[0]: g for g in groups}
    by_root.update({g.outputs[0].inputs[0]: g for g in groups if g.pattern == "conv2d_pool"})  # the old root
    rejections = [r for r in plan.rejections if r.consumer not in pooled]
    for r in rejections:
        r.group = by_root.get(r.group.outputs[0]) if r.group else None
    rejections += [Rejection(act, pool, why, by_root[act]) for act, pool, why in refused]
    return FusionPlan(groups, rejections)


class _Fuser:
    def __init__(self, graph: Graph, cap: int):
        self.calls = [n for n in graph.nodes if n.op == "call"]
        self.index = {n: k for k, n in enumerate(self.calls)}
        self.users: dict[Node, list[Node]] = {n: [] for n in self.calls}
        for n in self.calls:
            for i in n.inputs:
                if i in self.users and n not in self.users[i]:
                    self.users[i].append(n)
        self.outputs = set(graph.outputs)
        self.cap = cap
        self.desc, self.anc = self._reachability()
        self.ipdom = self._post_dominators()
        self.gid = list(range(len(self.calls)))  # group id per call: the index of its first member
        self.members = {k: 1 << k for k in range(len(self.calls))}  # group id -> bitmask of members
        self.rejections: list[Rejection] = []

    # ---- graph facts, as bitmasks over call indices
    def _reachability(self) -> tuple[list[int], list[int]]:
        n = len(self.calls)
        desc, anc = [0] * n, [0] * n
        for k in reversed(range(n)):
            for u in self.users[self.calls[k]]:
                j = self.index[u]
                desc[k] |= (1 << j) | desc[j]
        for k, node in enumerate(self.calls):
            for i in node.inputs:
                if i in self.index:
                    j = self.index[i]
                    anc[k] |= (1 << j) | anc[j]
        return desc, anc

    def _post_dominators(self) -> dict[Node, Node | None]:
        sink = "sink"
        rev = nx.DiGraph()
        rev.add_node(sink)
        rev.add_nodes_from(self.calls)
        for n in self.calls:
            rev.add_edges_from((u, n) for u in self.users[n])
            if n in self.outputs or not self.users[n]:
                rev.add_edge(sink, n)
        idom = nx.immediate_dominators(rev, sink)
        return {n: (None if idom[n] == sink else idom[n]) for n in self.calls}

    def _nodes(self, mask: int) -> list[Node]:
        """The members of `mask`, in order. One step per member, not per bit: a GPT step's fusion
        took 0.7 s in this loop when it walked every bit below the highest."""
        out = []
        while mask:
            low = mask & -mask
            out.append(self.calls[low.bit_length() - 1])
            mask ^= low
        return out

    def root_of(self, n: Node) -> Node:
        return self.calls[self.members[self.gid[self.index[n]]].bit_length() - 1]

    # ---- growing groups
    def try_grow(self, n: Node) -> None:
        p = self.ipdom[n]
        if n.prim.kind is Kind.OPAQUE:
            if self.users[n]:
                self._reject(n, p or self.users[n][0], f"{n.name} ({n.target}) is opaque: opaque ops stand alone")
            return
        if p is None:
            self._reject_no_postdominator(n)
            return
        if n.target == "concat" and p.target == "permute":  # written transposed, it reads many strided rows
            self._reject(n, p, f"{n.name} (concat) is written in its own layout: a GEMM reads the transpose in place")
            return
        k = self.index[n]
        path = (self.desc[k] & self.anc[self.index[p]]) | (1 << self.index[p])
        merged = self.members[self.gid[k]]
        for m in self._nodes(path):
            merged |= self.members[self.gid[self.index[m]]]
        veto = self._veto(merged)
        if veto is not None:
            bad, reason = veto
            own = self.members[self.gid[k]]
            self._reject(n, p if own >> self.index[bad] & 1 else bad, reason)
            return
        new = min(self.gid[self.index[m]] for m in self._nodes(merged))
        for m in self._nodes(merged):
            old = self.gid[self.index[m]]
            if old != new:
                self.members.pop(old, None)
            self.gid[self.index[m]] = new
        self.members[new] = merged

    def _reject(self, producer: Node, consumer: Node, reason: str) -> None:
        self.rejections.append(Rejection(producer, consumer, reason))

    def _reject_no_postdominator(self, n: Node) -> None:
        users = self.users[n]
        if not users:
            return
        if n in self.outputs:
            reason = f"{n.name} is a graph output, and a group has one output"
        else:
            names = ", ".join(u.name for u in users)
            reason = (f"{n.name} is used by {names}, whose paths reach different outputs (no single consumer "
                      "post-dominates it), and a group has one output")
        self._reject(n, users[0], reason)

    # ---- the vetoes
    def _veto(self, merged: int) -> tuple[Node, str] | None:
        members = self._nodes(merged)
        if len(members) > self.cap:
            return members[-1], f"the group would have {len(members)} nodes, more than the cap of {self.cap}"
        for m in members:
            if m.prim.kind is Kind.OPAQUE:
                return m, f"{m.name} ({m.target}) is opaque: opaque ops stand alone"
        return (self._one_output(members, merged) or self._cycle(members, merged)
                or _crossed_concats(members) or self._anchor_rules(members, merged))

    def _one_output(self, members: list[Node], merged: int) -> tuple[Node, str] | None:
        for m in members[:-1]:
            if m in self.outputs:
                return m, f"{m.name} is a graph output, and a group has one output"
            for u in self.users[m]:
                if not merged >> self.index[u] & 1:
                    return m, f"{m.name} is also used by {u.name} ({u.target}) outside the group, and a group has one output"
        return None

    def _cycle(self, members: list[Node], merged: int) -> tuple[Node, str] | None:
        reach = 0
        for m in members:
            reach |= self.desc[self.index[m]]
        outside = reach & ~merged
        for m in members:
            via = self.anc[self.index[m]] & outside
            if via:
                w = self._nodes(via & -via)[0]
                return m, (f"a path outside the group through {w.name} ({w.target}) reaches {m.name}: "
                           "fusing would create a cycle between kernels")
        return None

    def _anchor_rules(self, members: list[Node], merged: int) -> tuple[Node, str] | None:
        anchors = [m for m in members if m.prim.kind in ANCHOR_KINDS]
        if len(anchors) > 1:
            return _two_anchors(*anchors[:2])
        if not anchors:
            return None
        a = anchors[0]
        ka = self.index[a]
        prologue, epilogue = self.anc[ka] & merged, self.desc[ka] & merged
        if a.prim.kind is Kind.OUT_FUSABLE:
            for m in self._nodes(prologue):
                if m.prim.kind is not Kind.INJECTIVE:
                    return m, (f"a {a.target} ({a.name}) takes only injective prologues on its operands "
                               f"(a transpose, an expand), and {m.name} is {m.target}")
                if m.target == "concat":  # a per-element choice of source in the GEMM's inner loop
                    return m, (f"a {a.target} ({a.name}) reads a concat ({m.name}) faster as one buffer: "
                               "the concat is its own kernel")
            for m in self._nodes(epilogue):
                final_reshape = a.target == "matmul" and m.target == "reshape" and m is members[-1]
                if m.prim.kind is not Kind.ELEMENTWISE and not final_reshape:
                    return m, (f"an out-fusable group takes only an elementwise epilogue (a matmul also a final "
                               f"reshape), and {m.name} is {m.target}")
        else:
            for m in self._nodes(epilogue):
                final_reshape = m.target == "reshape" and m is members[-1]  # same flat positions: stored as they come
                if m.prim.kind is not Kind.ELEMENTWISE and not final_reshape and not self._gathers_at_index(m, epilogue | 1 << ka):
                    return m, (f"a reduction group takes only an elementwise epilogue over its output shape "
                               f"(and a final reshape), and {m.name} is {m.target}")
        return self._late_reads_prologue(a, prologue, merged)

    def _gathers_at_index(self, m: Node, reduced: int) -> bool:
        """gather(x, idx) with idx from the reduction and x not: the value at an argmax."""
        x = m.inputs[0]
        return m.target == "gather" and not (x in self.index and reduced >> self.index[x] & 1)

    def _late_reads_prologue(self, a: Node, prologue: int, merged: int) -> tuple[Node, str] | None:
        """Epilogue and side nodes compute in the anchor's output space: they may read the
        prologue only where it is a pure index mapping of group inputs (gather's table)."""
        late = merged & ~prologue & ~(1 << self.index[a])
        for m in self._nodes(late):
            for pos, i in enumerate(m.inputs):
                if i not in self.index or not prologue >> self.index[i] & 1:
                    continue
                chain = self._nodes((self.anc[self.index[i]] & prologue) | 1 << self.index[i])
                table = m.target == "gather" and pos == 0 and a.prim.kind is Kind.REDUCTION
                if not (table and all(c.prim.kind is Kind.INJECTIVE for c in chain)):
                    return m, (f"{m.name} ({m.target}) reads {i.name} from the prologue of {a.name} ({a.target}), "
                               "whose index space it does not share")
        return None

    # ---- the result
    def plan(self) -> FusionPlan:
        groups = []
        for mask in sorted(self.members.values(), key=lambda m: m.bit_length()):  # by root: a valid schedule
            nodes = self._nodes(mask)
            groups.append(make_group(len(groups), nodes))
        by_root = {g.outputs[0]: g for g in groups}
        for r in self.rejections:
            r.group = by_root.get(self.root_of(r.producer))
        return FusionPlan(groups, self.rejections)


def _two_anchors(a: Node, b: Node) -> tuple[Node, str]:
    if a.prim.kind is Kind.REDUCTION and b.prim.kind is Kind.REDUCTION:
        return b, f"a reduction cannot consume another reduction ({b.name} {b.target} reads {a.name} {a.target})"
    if a.prim.kind is Kind.OUT_FUSABLE and b.prim.kind is Kind.OUT_FUSABLE:
        return b, f"a {b.target} ({b.name}) cannot consume another out-fusable group ({a.name} {a.target})"
    if a.prim.kind is Kind.OUT_FUSABLE:
        return b, f"an out-fusable group takes only an elementwise epilogue, and {b.name} is {b.target}"
    return b, (f"a {b.target} ({b.name}) takes only injective prologues on its operands, "
               f"and {a.name} is {a.target}")


# ---------------------------------------------------------------- the contract, checked


def check_plan(graph: Graph, groups: list[Group]) -> None:
    """Raise GT031 unless `groups` cover every call node once, each writing its root and exactly the
    members used outside it (several only in an elementwise group), in an order where every group
    reads only graph inputs, constants and earlier groups' outputs."""
    order = {n: k for k, n in enumerate(graph.nodes)}
    owner: dict[Node, Group] = {}
    users, graph_outputs = graph.users(), set(graph.outputs)
    ready = {n for n in graph.nodes if n.op != "call"}
    for g in groups:
        if [order[n] for n in g.nodes] != sorted(order[n] for n in g.nodes) or g.outputs[-1] is not g.nodes[-1]:
            _broken(g, "its nodes are not in topological order with the root last")
        for n in g.nodes:
            if n.op != "call" or n in owner:
                _broken(g, f"{n.name} is not a call node, or is in two groups")
            owner[n] = g
        if g.outputs != exposed(g.nodes, users, graph_outputs):
            _broken(g, "its outputs are not its root and the members used outside it")
        if len(g.outputs) > 1 and g.pattern != "elementwise":
            _broken(g, f"a {g.pattern} group has one output")
        if g.inputs != make_group(g.id, g.nodes).inputs or not all(i in ready for i in g.inputs):
            _broken(g, "its inputs are not the values it reads from earlier groups, in first-use order")
        ready.update(g.outputs)
    missing = [n.name for n in graph.nodes if n.op == "call" and n not in owner]
    if missing:
        raise GraphtorchCompileError("GT031", f"no group computes {', '.join(missing)}", stage="fused")


def _broken(g: Group, why: str) -> None:
    raise GraphtorchCompileError("GT031", f"group {g.id} ({g.pattern}) breaks the group contract: {why}",
                                 g.outputs[0].loc, hint="a bug in the fusion pass", stage="fused")


def single_groups(graph: Graph) -> list[Group]:
    """The plan with no fusion: one "single" group per call node (backend tests, kernel by kernel)."""
    groups = []
    for n in graph.nodes:
        if n.op == "call":
            anchor = n if n.prim.kind in (Kind.REDUCTION, Kind.OUT_FUSABLE) else None
            groups.append(Group(len(groups), "single", [n], list(dict.fromkeys(n.inputs)), [n], anchor))
    return groups


def _crossed_concats(members: list[Node]) -> tuple[Node, str] | None:
    """Concats along different dims in one loop: it can cut at one's part edges, not at both, so
    every element would choose its source (the LSTM's last gate gradients, a concat along the
    columns, inside the stack of all steps along the rows: 168 -> 267 us for the stack)."""
    concats = [m for m in members if m.target == "concat"]
    for m in concats[1:]:
        if (m.attrs["dim"], m.type.ndim) != (concats[0].attrs["dim"], concats[0].type.ndim):
            return m, (f"{m.name} (concat along dim {m.attrs['dim']}) and {concats[0].name} (concat along dim "
                       f"{concats[0].attrs['dim']}) cut a loop along different dims: each concat is its own kernel")
    return None

