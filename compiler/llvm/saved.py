"""A built Executable on disk, so a graph compiled before skips the passes, fusion and IR building.

`build` with the object cache already skips LLVM's optimization and codegen, but it still runs
the pipeline (verify, cleanup passes, fusion), the memory plan and the lowering to LLVM IR text:
about 0.2 s of a LeNet training step's compile. This file stores what those stages produced,
keyed by the graph they started from:

    key = sha256(the traced graph's JSON, the build options, the compiler's source fingerprint)

and loads it back in a few milliseconds. The entry is JSON (`graph`: the optimized graph in
`Graph.to_json` form; `groups`, `rejections`, `plan`, `layout`: those objects with nodes as
indices into it; `parts`: the LLVM modules' texts), checked by the object cache's digest and
validated as it is read: loading an entry never runs code from it, and an entry that does not
decode is a miss. The modules' machine code comes from the object cache as usual (and is
recompiled if it was evicted).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from ...runtime import JITError, ObjectCache, Part, cache_dir, compile_ir, get_num_threads
from ..conv_lowering import FORCE_ENV
from ..errors import GraphtorchCompileError
from ..fusion import FusionPlan, Rejection
from ..ir import Graph, Group, Node
from ..memory_plan import MemoryPlan
from ..pipeline import CompileArtifacts, artifact_enabled, log_artifact, run_pipeline
from ..primitives import Kind
from . import host
from .executable import Executable, build, kernel_times_wanted
from .module import Layout

FORMAT, VERSION = "graphtorch-executable", 2  # 2: the memory plan has views


@dataclass
class Saved:
    """What a cache hit gives back: the stages' results and the loaded executable."""

    optimized: Graph
    fusion: FusionPlan
    executable: Executable


def build_cached(traced: Graph, *, name: str, source: str, donate: list[tuple[int, int]] = (),
                 dump_dir: str | None = None) -> tuple[CompileArtifacts, Executable]:
    """`run_pipeline` then `build`, or their results from the disk cache. `source` fingerprints the
    code that produced `traced` and compiles it (runtime.source_fingerprint). With a dump directory
    or the graph/fusion logs on, the stages run (their dumps and logs are the point) and are stored."""
    start, timed, max_threads = time.perf_counter(), kernel_times_wanted(), max(get_num_threads(), 1)
    forced = os.environ.get(FORCE_ENV, "")  # a forced lowering changes the code, not the graph
    key = entry_key(traced, name, list(donate), max_threads, timed, source, forced)
    hit = None if dump_dir or artifact_enabled("graph") or artifact_enabled("fusion") else load(key, None)
    if hit is not None:
        ms = (time.perf_counter() - start) * 1e3
        log_artifact("perf", f"graph {name}: loaded from the disk cache in {ms:.2f} ms")
        return CompileArtifacts(traced, hit.optimized, hit.fusion, {"from disk cache": ms}), hit.executable
    artifacts = run_pipeline(traced, dump_dir=dump_dir)
    with artifacts.timed("lowered"):
        exe = build(artifacts.optimized, artifacts.fusion.groups, name=name, dump=dump_dir, donate=donate, timed=timed)
    store(key, artifacts.fusion, exe)
    return artifacts, exe


def entry_key(graph: Graph, *options: Any) -> str:
    """The cache key of `graph` built with `options` (name, donations, threads, timing, source,
    forced conv lowering)."""
    return ObjectCache.key(FORMAT, str(VERSION), graph.to_json(indent=None), *map(repr, options))


def store(key: str, fusion: FusionPlan, exe: Executable) -> None:
    """Best effort, as the object cache: a cache that cannot be written is not an error."""
    _cache().store(key, json.dumps(encode(fusion, exe)).encode())


def load(key: str, num_threads: int | None) -> Saved | None:
    """The entry under `key` as a loaded Executable, or None (absent, corrupt, or stale)."""
    blob = _cache().load(key)
    if blob is None:
        return None
    try:
        return decode(json.loads(blob), num_threads)
    except (GraphtorchCompileError, JITError, KeyError, TypeError, ValueError, IndexError):
        _cache().discard(key)
        return None


def _cache() -> ObjectCache:
    return ObjectCache(cache_dir() / "executables")


# ---------------------------------------------------------------- encoding (nodes as indices)


def encode(fusion: FusionPlan, exe: Executable) -> dict:
    at = {n: i for i, n in enumerate(exe.graph.nodes)}
    gid = {id(g): k for k, g in enumerate(fusion.groups)}
    plan, layout = exe.plan, exe.layout
    return {
        "format": FORMAT, "version": VERSION, "name": exe.name, "max_threads": exe.max_threads,
        "graph": exe.graph.to_json(indent=None),
        "groups": [{"id": g.id, "pattern": g.pattern, "nodes": _idx(at, g.nodes), "inputs": _idx(at, g.inputs),
                    "outputs": _idx(at, g.outputs), "anchor": None if g.anchor is None else at[g.anchor]}
                   for g in fusion.groups],
        "rejections": [{"producer": at[r.producer], "consumer": at[r.consumer], "reason": r.reason,
                        "group": None if r.group is None else gid[id(r.group)]} for r in fusion.rejections],
        "plan": {"offsets": _pairs(at, plan.offsets), "intervals": _pairs(at, plan.intervals),
                 "inplace": _pairs(at, plan.inplace), "sizes": _pairs(at, plan.sizes),
                 "donated": _pairs(at, plan.donated), "views": _pairs(at, plan.views), "arena_bytes": plan.arena_bytes,
                 "peak_bytes": plan.peak_bytes, "alignment": plan.alignment},
        "layout": {"slots": _pairs(at, layout.slots), "offsets": _pairs(at, layout.offsets),
                   "n_slots": layout.n_slots, "workspace_bytes": layout.workspace_bytes,
                   "constants": _idx(at, layout.constants), "parallel": layout.parallel, "timed": layout.timed},
        "parts": [{"text": p.text, "unroll": p.unroll, "cost": p.cost} for p in exe.native.parts],
    }


def _idx(at: dict[Node, int], nodes: list[Node]) -> list[int]:
    return [at[n] for n in nodes]


def _pairs(at: dict[Node, int], mapping: dict[Node, Any]) -> list[list]:
    """A Node-keyed dict as [index, value] rows (a Node value as its index too)."""
    return [[at[k], at[v] if isinstance(v, Node) else v] for k, v in mapping.items()]


def decode(doc: dict, num_threads: int | None) -> Saved:
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"expected {FORMAT} version {VERSION}")
    graph = Graph.from_json(doc["graph"])
    nodes = graph.nodes
    node = lambda i: nodes[_checked_int(i, len(nodes))]
    groups = [Group(_int(g["id"]), str(g["pattern"]), [node(i) for i in g["nodes"]], [node(i) for i in g["inputs"]],
                    [node(i) for i in g["outputs"]], None if g["anchor"] is None else node(g["anchor"]))
              for g in doc["groups"]]
    rejections = [Rejection(node(r["producer"]), node(r["consumer"]), str(r["reason"]),
                            None if r["group"] is None else groups[_checked_int(r["group"], len(groups))])
                  for r in doc["rejections"]]
    plan, layout = _plan(doc["plan"], node), _layout(doc["layout"], node)
    parts = [Part(str(p["text"]), bool(p["unroll"]), float(p["cost"])) for p in doc["parts"]]
    _bind_run_time_symbols(groups)
    kernels = [g for g in groups if g.outputs[0] not in plan.views]  # as build() runs them
    exe = Executable(graph, kernels, plan, layout, compile_ir(parts), str(doc["name"]), num_threads,
                     _int(doc["max_threads"]))
    return Saved(graph, FusionPlan(groups, rejections), exe)


def _bind_run_time_symbols(groups: list[Group]) -> None:
    """What lowering does besides emitting IR, redone for the loaded code: each host call's
    callback registered (host.py; registering one for an opaque node with a kernel of its own is
    harmless) and the MPI symbols bound for the JIT (collective.py)."""
    for group in groups:
        node = group.outputs[0]
        if node.target == "all_reduce":
            from ...runtime import mpi

            mpi.bind_symbols()
        elif node.prim.kind is Kind.OPAQUE:
            host.register_callback(node)


def _plan(p: dict, node) -> MemoryPlan:
    nodes_to = lambda rows, value: {node(k): value(v) for k, v in rows}
    return MemoryPlan(nodes_to(p["offsets"], _int), nodes_to(p["intervals"], lambda v: (_int(v[0]), _int(v[1]))),
                      nodes_to(p["inplace"], node), _int(p["arena_bytes"]), _int(p["peak_bytes"]),
                      _int(p["alignment"]), nodes_to(p["sizes"], _int), nodes_to(p["donated"], node),
                      nodes_to(p["views"], node))


def _layout(d: dict, node) -> Layout:
    return Layout({node(k): _int(v) for k, v in d["slots"]}, {node(k): _int(v) for k, v in d["offsets"]},
                  _int(d["n_slots"]), _int(d["workspace_bytes"]), [node(i) for i in d["constants"]],
                  bool(d["parallel"]), bool(d["timed"]))


def _int(v: Any) -> int:
    if type(v) is not int or v < 0:
        raise ValueError(f"expected a non-negative integer, got {v!r}")
    return v


def _checked_int(v: Any, limit: int) -> int:
    if _int(v) >= limit:
        raise ValueError(f"index {v} out of range 0..{limit - 1}")
    return v
