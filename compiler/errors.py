"""Compiler errors: a stable code, the user's file:line, what happened, and a hint.

Every code in use is listed in CODES with a short title (docs/ir.md prints the table), so a code
found in a bug report can be looked up. Ranges: GT00x tracing (front end), GT01x the verifier and
graph files, GT02x partitioning, GT03x internal pass failures, GT04x running a graph on arrays,
GT05x lowering (backends).
"""

from __future__ import annotations

CODES: dict[str, str] = {
    "GT001": "data-dependent Python control flow on a traced tensor",
    "GT002": ".item(), .numpy(), print or another value read of a traced tensor",
    "GT003": "an output shape that depends on tensor values",
    "GT004": "compile() called while another compilation was tracing",
    "GT005": "a compiled function returned a value that is not a tensor",
    "GT006": "an in-place write to a view of a traced tensor",
    "GT010": "a node's type differs from its primitive's type rule",
    "GT011": "a node reads a value that is not defined before it",
    "GT012": "a graph output is not a node of the graph",
    "GT013": "two nodes have the same name",
    "GT014": "a malformed node (unknown op or primitive, bad constant)",
    "GT015": "a graph file (JSON) that does not describe a valid graph",
    "GT020": "partitioning needs a value that is not an input of the extracted graph",
    "GT030": "an optimization pass changed the type of a graph output",
    "GT031": "the fusion plan breaks the group contract",
    "GT040": "an input array does not match the graph input's type",
    "GT041": "a primitive's kernel returned a value of the wrong type",
    "GT042": "a group schedule reads a value before the group that computes it",
    "GT050": "a backend cannot lower a group (unsupported pattern or op)",
    "GT051": "generated kernel source (CUDA C) does not compile",
    "GT052": "no compiler for generated kernels (NVRTC, nvcc) is available",
    "GT053": "the chosen backend needs a device this machine does not have",
    "GT054": "LLVM failed to compile or load the generated module (a backend bug; the module is in the dump)",
}


class GraphtorchCompileError(Exception):
    def __init__(self, code: str, message: str, loc: str | None = None, hint: str | None = None,
                 stage: str | None = None):
        self.code, self.message, self.loc, self.hint, self.stage = code, message, loc, hint, stage
        where = f" at {loc}" if loc else ""
        text = f"{code}{where}: {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)
