"""Every emitted kernel compiles for sm_80 AND sm_90: every primitive as its own group, every
fusion pattern, the seed models' forward and backward graphs. One compiler call per translation
unit (NVRTC per arch, or one nvcc fat binary for both), so a broken kernel cannot land."""

from __future__ import annotations

import time

import pytest
from test_cuda_graphs import (
    SEED_GRAPHS,
    elementwise_graph,
    fused_gemm_graph,
    fused_pointwise_graph,
    gather_graph,
    layout_graph,
    split_epilogue_graph,
)

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.cuda import ARCHS, compile_module, compile_source, compilers, emit
from graphtorch.compiler.cuda.compile import run_nvcc
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.errors import GraphtorchCompileError
from graphtorch.compiler.fusion import fuse, single_groups
from graphtorch.compiler.ir import Graph

needs_compiler = pytest.mark.skipif(not compilers(), reason="neither NVRTC (pip install 'graphtorch[cuda]') nor nvcc")


def _fused(make):
    g = make()
    return g, fuse(g).groups


def _single(make):
    g = make()
    return g, single_groups(g)


UNITS = {
    "primitives_elementwise": lambda: _single(elementwise_graph),
    "primitives_layout_opaque": lambda: _single(layout_graph),
    "patterns_pointwise": lambda: _fused(fused_pointwise_graph),
    "patterns_gemm_conv_reduce": lambda: _fused(fused_gemm_graph),
    "patterns_unfused_gemm_conv": lambda: _single(fused_gemm_graph),
    "split_epilogue_and_gather": lambda: _merge(split_epilogue_graph(), _single(gather_graph)),
    **{f"seed_{name}": (lambda make=make: _fused(make)) for name, make in SEED_GRAPHS.items()},
}


def _merge(*units):
    """Sources of several graphs, compiled as one TU: kernels have distinct names by construction."""
    return units


def compile_everywhere(module) -> dict[str, float]:
    """Compile for every arch in ARCHS with the preferred compiler; seconds per arch (or 'fatbin')."""
    if compilers()[0] == "nvrtc":
        return {arch: compile_module(module, arch=arch, cache=False).seconds for arch in ARCHS}
    start = time.perf_counter()
    run_nvcc(module.source, ARCHS, "fatbin", module.name)
    return {"fatbin": time.perf_counter() - start}


@needs_compiler
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_translation_unit_compiles_for_sm80_and_sm90(unit):
    made = UNITS[unit]()
    pairs = made if isinstance(made[0], tuple) else (made,)
    for k, (g, groups) in enumerate(pairs):
        module = emit(g, groups, name=f"{unit}_{k}")
        assert module.launches, "a graph with call nodes has kernels to launch"
        assert all(la.kernel in module.source for la in module.launches)
        times = compile_everywhere(module)
        assert all(t >= 0 for t in times.values())


@pytest.mark.skipif("nvcc" not in compilers(), reason="nvcc is not on PATH")
def test_nvcc_fallback_builds_cubin_and_fatbin():
    g, groups = _fused(SEED_GRAPHS["lenet"])
    module = emit(g, groups, name="lenet")
    fat = run_nvcc(module.source, ARCHS, "fatbin", "lenet")
    assert fat[:4] == b"\x50\xed\x55\xba"  # the fat binary's magic
    out = compile_module(module, arch="sm_80", compiler="nvcc", cache=False)
    assert out.cubin[:4] == b"\x7fELF" and out.ptx is None


@needs_compiler
def test_dump_gets_source_and_ptx_and_cache_hits(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHTORCH_CACHE_DIR", str(tmp_path / "cache"))
    g, groups = _fused(SEED_GRAPHS["logistic_regression"])
    module = emit(g, groups, name="logreg")
    first = compile_module(module, arch="sm_90", dump=tmp_path / "dump")
    assert (tmp_path / "dump" / "logreg.cu").read_text().strip() == module.source.strip()
    assert ".entry k" in (tmp_path / "dump" / "logreg.sm_90.ptx").read_text()
    again = compile_module(module, arch="sm_90")
    assert not first.cached and again.cached and again.cubin == first.cubin


@needs_compiler
def test_broken_source_is_a_coded_error_naming_the_kernel_and_user_line(tmp_path):
    g = gather_graph()
    module = emit(g, single_groups(g), name="broken")
    kernel = module.launches[0].kernel
    module.source = module.source.replace("gt_index_error(gt_status,", "gt_index_error(gt_status, undefined_name +")
    with pytest.raises(GraphtorchCompileError) as e:
        compile_module(module, arch="sm_80", dump=tmp_path, cache=False)
    err = e.value
    assert err.code == "GT051" and err.stage == "lowered" and err.loc == "model.py:7"
    assert kernel in err.message and "undefined_name" in err.message
    assert "undefined_name" in (tmp_path / "broken.sm_80.log").read_text()


def test_no_compiler_is_a_coded_error(monkeypatch):
    monkeypatch.setattr("graphtorch.compiler.cuda.compile.compilers", lambda: [])
    with pytest.raises(GraphtorchCompileError, match="GT052.*no CUDA compiler") as e:
        compile_source("", arch="sm_90")
    assert "graphtorch[cuda]" in e.value.hint


def test_float16_is_refused_with_a_coded_error():
    g = Graph()
    x = g.input("x", TensorType((4,), dt.float16))
    g.outputs = [g.call("exp", [x], loc="half.py:3")]
    with pytest.raises(GraphtorchCompileError, match="GT050 at half.py:3.*float16"):
        emit(g, single_groups(g))
