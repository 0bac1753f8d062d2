"""The pipeline's dumps, logs and the explain report."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from compiler_helpers import lenet, random_inputs

from graphtorch.compiler import interpreter
from graphtorch.compiler.explain import ExplainReport
from graphtorch.compiler.ir import Graph
from graphtorch.compiler.pipeline import STAGES, artifact_enabled, enabled_artifacts, log_artifact, run_pipeline


def test_dump_dir_gets_every_stage_and_the_fusion_decisions(tmp_path):
    g = lenet()
    art = run_pipeline(g, dump_dir=str(tmp_path))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([f"{s}.{ext}" for s in STAGES for ext in ("txt", "dot", "json")] + ["fusion.txt"])
    assert Graph.from_json((tmp_path / "traced.json").read_text()).equals(g)
    assert Graph.from_json((tmp_path / "optimized.json").read_text()).equals(art.optimized)
    assert "subgraph cluster_0" in (tmp_path / "fused.dot").read_text()
    assert "cannot fuse" in (tmp_path / "fusion.txt").read_text()
    assert (tmp_path / "optimized.txt").read_text().startswith("# stage: optimized\n%x : f32[3,1,12,12]")


def test_dump_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHTORCH_DUMP_DIR", str(tmp_path / "d"))
    run_pipeline(lenet())
    assert (tmp_path / "d" / "fusion.txt").exists()


def test_pipeline_artifacts_and_the_input_graph_unchanged():
    g = lenet()
    art = run_pipeline(g)
    assert art.traced is g and lenet().equals(g)
    assert set(art.times_ms) == set(STAGES) and all(v >= 0 for v in art.times_ms.values())
    xs = random_inputs(g)
    np.testing.assert_allclose(interpreter.run(g, xs)[0], interpreter.run_groups(art.optimized, art.fusion.groups, xs)[0],
                               rtol=1e-6, atol=1e-6)
    with art.timed("planned"):
        pass
    assert "planned" in art.times_ms


def test_logs_follow_graphtorch_logs(monkeypatch, caplog):
    monkeypatch.setenv("GRAPHTORCH_LOGS", "fusion,recompiles")
    assert enabled_artifacts() == {"fusion", "recompiles"} and not artifact_enabled("graph")
    with caplog.at_level(logging.INFO, logger="graphtorch"):
        run_pipeline(lenet())
        log_artifact("recompiles", "Recompiling f: input 0: size mismatch at dim 0, expected 64, got 32")
        log_artifact("guards", "not shown")
    by_logger = {r.name for r in caplog.records}
    assert by_logger == {"graphtorch.fusion", "graphtorch.recompiles"}
    assert any("cannot fuse" in r.getMessage() for r in caplog.records)


def test_logs_all(monkeypatch, caplog):
    monkeypatch.setenv("GRAPHTORCH_LOGS", "all")
    assert {"graph", "fusion", "recompiles", "guards", "perf"} <= enabled_artifacts()
    with caplog.at_level(logging.INFO, logger="graphtorch"):
        run_pipeline(lenet())
    assert {"graphtorch.graph", "graphtorch.fusion", "graphtorch.perf"} <= {r.name for r in caplog.records}
    assert any(r.getMessage().startswith("=== optimized ===") for r in caplog.records)


def test_no_logs_by_default(monkeypatch, caplog):
    monkeypatch.delenv("GRAPHTORCH_LOGS", raising=False)
    with caplog.at_level(logging.INFO, logger="graphtorch"):
        run_pipeline(lenet())
    assert not caplog.records


def test_explain_report_reads_well():
    art = run_pipeline(lenet())
    report = ExplainReport.from_artifacts(art, title="forward", guards=["x: f32[3,1,12,12], contiguous"])
    report.memory = {"arena_bytes": 4096, "peak_bytes": 3072}
    text = str(report)
    assert text.splitlines()[0] == "=== graphtorch explain: forward ==="
    assert "guards (a call with other inputs recompiles):\n  x: f32[3,1,12,12], contiguous" in text
    assert "--- traced: 46 nodes, 37 calls ---" in text and "--- fused ---" in text
    assert "why not fused (5):" in text and "from max_pool2d at lenet.py:13) into group 0 (conv2d + bias + relu)" in text
    assert "stage times: traced" in text and "memory: arena_bytes 4,096 bytes, peak_bytes 3,072 bytes" in text
    assert "nothing was refused" in str(ExplainReport())


def test_a_broken_pass_is_caught_after_the_stage_and_named_with_graphtorch_verify(monkeypatch):
    from graphtorch.compiler import cleanup
    from graphtorch.compiler.errors import GraphtorchCompileError

    def drops_an_output(g: Graph) -> Graph:
        out = g.copy()
        out.outputs = out.outputs[:-1]
        return out

    monkeypatch.setattr(cleanup, "PASSES", [*cleanup.PASSES, ("drops_an_output", drops_an_output)])
    monkeypatch.setenv("GRAPHTORCH_VERIFY", "1")
    with pytest.raises(GraphtorchCompileError, match="pass 'drops_an_output' changed the number of outputs"):
        run_pipeline(lenet())
    monkeypatch.setenv("GRAPHTORCH_VERIFY", "0")
    with pytest.raises(GraphtorchCompileError, match=r"pass 'optimized \(GRAPHTORCH_VERIFY=1 names the pass\)' "
                                                     "changed the number of outputs from 1 to 0") as e:
        run_pipeline(lenet())
    assert e.value.code == "GT030"
