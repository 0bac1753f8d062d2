"""`graphtorch.explain`'s report: what each stage made of a graph, and why.

The front end fills the guards (and recompile reasons), the backend the memory numbers;
the compiler's front half gives the graphs, the fusion plan and the stage times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fusion import FusionPlan, Rejection
from .ir import Graph


@dataclass
class ExplainReport:
    graphs: dict[str, Graph] = field(default_factory=dict)  # stage name -> graph, in stage order
    fusion: FusionPlan | None = None
    rejections: list[Rejection] = field(default_factory=list)
    guards: list[str] = field(default_factory=list)  # "input 0: f32[64,1,28,28]", from the front end
    times_ms: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)  # e.g. arena_bytes, peak_bytes (backend)
    title: str = "graph"
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_artifacts(cls, artifacts, *, title: str = "graph", guards: list[str] | None = None) -> ExplainReport:
        """The report of a `pipeline.CompileArtifacts`."""
        return cls(graphs={"traced": artifacts.traced, "optimized": artifacts.optimized},
                   fusion=artifacts.fusion, rejections=list(artifacts.fusion.rejections),
                   guards=list(guards or []), times_ms=dict(artifacts.times_ms), title=title)

    def __str__(self) -> str:
        lines = [f"=== graphtorch explain: {self.title} ==="]
        if self.guards:
            lines.append("guards (a call with other inputs recompiles):")
            lines += [f"  {g}" for g in self.guards]
        for stage, g in self.graphs.items():
            calls = sum(n.op == "call" for n in g.nodes)
            lines.append(f"--- {stage}: {len(g.nodes)} nodes, {calls} calls ---")
            lines.append(str(g))
        if self.fusion is not None:
            lines.append("--- fused ---")
            lines.append(str(self.fusion).split("\nrejections")[0])
        lines.append(f"why not fused ({len(self.rejections)}):")
        lines += [f"  {r}" for r in self.rejections] or ["  (nothing was refused)"]
        if self.times_ms:
            lines.append("stage times: " + ", ".join(f"{k} {v:.2f} ms" for k, v in self.times_ms.items()))
        if self.memory:
            lines.append("memory: " + ", ".join(f"{k} {v:,} bytes" for k, v in self.memory.items()))
        lines += self.notes
        return "\n".join(lines)
