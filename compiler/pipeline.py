"""The compiler's front half as named stages, with dumps and logging in one place.

    traced --optimize--> optimized --fuse--> fused   (then "planned", "lowered": the backend's)

`run_pipeline` verifies each stage's graph (after every pass with $GRAPHTORCH_VERIFY=1), times each
stage, and writes the dump directory (`dump_dir` or $GRAPHTORCH_DUMP_DIR). Logging: $GRAPHTORCH_LOGS is a comma list of
artifact names (or "all"); each enabled artifact logs to the logger `graphtorch.<name>`.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import cleanup
from .dump import dump_stage, write_text
from .fusion import FusionPlan, fuse
from .ir import Graph
from .verify import verify, verify_rewrite

STAGES = ("traced", "optimized", "fused")  # the backend appends "planned", "lowered"
ARTIFACTS = ("graph", "fusion", "recompiles", "guards", "perf", "memory", "code")


@dataclass
class CompileArtifacts:
    traced: Graph
    optimized: Graph
    fusion: FusionPlan
    times_ms: dict[str, float] = field(default_factory=dict)  # stage -> wall time
    dump_dir: str | None = None

    @contextmanager
    def timed(self, stage: str):
        """Time a later stage (the backend's) into `times_ms` and the perf log."""
        start = time.perf_counter()
        yield
        self.times_ms[stage] = (time.perf_counter() - start) * 1e3
        log_artifact("perf", f"stage {stage}: {self.times_ms[stage]:.2f} ms")


def run_pipeline(graph: Graph, *, dump_dir: str | None = None) -> CompileArtifacts:
    """traced -> optimized -> fused; the input graph is not changed."""
    dump_dir = dump_dir or os.environ.get("GRAPHTORCH_DUMP_DIR") or None
    times: dict[str, float] = {}

    start = time.perf_counter()
    verify(graph, "traced")
    times["traced"] = _ms(start)
    _emit(dump_dir, "traced", graph)

    start = time.perf_counter()
    if verify_each_pass():
        optimized = cleanup.optimize(graph, check=lambda name, before, after: verify_rewrite(name, before, after, "optimized"))
    else:
        optimized = cleanup.optimize(graph)
        verify_rewrite("optimized (GRAPHTORCH_VERIFY=1 names the pass)", graph, optimized, "optimized")
    times["optimized"] = _ms(start)
    _emit(dump_dir, "optimized", optimized)

    start = time.perf_counter()
    plan = fuse(optimized)
    times["fused"] = _ms(start)
    _emit(dump_dir, "fused", optimized, plan)

    for stage in STAGES:
        log_artifact("perf", f"stage {stage}: {times[stage]:.2f} ms")
    return CompileArtifacts(graph, optimized, plan, times, dump_dir)


def verify_each_pass() -> bool:
    """$GRAPHTORCH_VERIFY=1 (the tests set it): verify the graph after every pass, which names the
    pass that broke it. Otherwise the optimized stage's result is verified once: every pass's check
    took ~50 ms of the GPT step's ~1.3 s cold compile."""
    return os.environ.get("GRAPHTORCH_VERIFY", "") not in ("", "0")


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def _emit(dump_dir: str | None, stage: str, graph: Graph, plan: FusionPlan | None = None) -> None:
    if dump_dir:
        dump_stage(dump_dir, stage, graph, plan.groups if plan else None)
        if plan is not None:
            write_text(dump_dir, "fusion.txt", str(plan))
    if artifact_enabled("graph"):
        log_artifact("graph", f"=== {stage} ===\n{graph}")
    if plan is not None:
        log_artifact("fusion", str(plan))


# ---------------------------------------------------------------- logging


def enabled_artifacts() -> set[str]:
    """The artifact names $GRAPHTORCH_LOGS turns on (read at each call: tests and users may change it)."""
    names = {s.strip() for s in os.environ.get("GRAPHTORCH_LOGS", "").split(",") if s.strip()}
    return set(ARTIFACTS) | names if "all" in names else names


def artifact_enabled(name: str) -> bool:
    return name in enabled_artifacts()


def log_artifact(name: str, text: str) -> None:
    """Log `text` to `graphtorch.<name>` when the artifact is enabled in $GRAPHTORCH_LOGS."""
    if not artifact_enabled(name):
        return
    logger = logging.getLogger(f"graphtorch.{name}")
    _make_visible()
    logger.info(text)


def _make_visible() -> None:
    """INFO from graphtorch loggers reaches stderr even when the program configured no logging."""
    parent = logging.getLogger("graphtorch")
    if parent.level == logging.NOTSET or parent.level > logging.INFO:
        parent.setLevel(logging.INFO)
    if not parent.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        parent.addHandler(handler)
