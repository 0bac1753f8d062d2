"""The dump directory: every stage's graph as text, DOT and JSON, plus the fusion decisions.

Files are named after the stage (`optimized.txt`, `optimized.dot`, `optimized.json`,
`fusion.txt`); backends add theirs (`lowered.ll`, ...) with `write_text`.
"""

from __future__ import annotations

import os

from .ir import Graph, Group


def write_text(dump_dir: str, filename: str, text: str) -> str:
    """Write `text` to dump_dir/filename (creating the directory) and return the path."""
    os.makedirs(dump_dir, exist_ok=True)
    path = os.path.join(dump_dir, filename)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    return path


def dump_stage(dump_dir: str, stage: str, graph: Graph, groups: list[Group] | None = None) -> list[str]:
    """`<stage>.txt` (the printout and the table), `<stage>.dot` and `<stage>.json`."""
    text = f"# stage: {stage}\n{graph}\n\n{graph.table()}\n"
    return [write_text(dump_dir, f"{stage}.txt", text),
            write_text(dump_dir, f"{stage}.dot", graph.to_dot(groups)),
            write_text(dump_dir, f"{stage}.json", graph.to_json())]
