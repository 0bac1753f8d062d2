"""The generated GEMM (compiler/llvm/gemm.py) against numpy's matmul.

Two levels: the kernel alone (a module of one GEMM, JIT'd here, called per thread id), and the
"matmul" group lowering inside the LLVM backend (operands through permute/expand, epilogues).
"""

import ctypes
import mmap

import numpy as np
import pytest
from llvm_helpers import compiled, interpret

from graphtorch.compiler import dtypes as dt
from graphtorch.compiler.dtypes import TensorType
from graphtorch.compiler.ir import Graph, Group
from graphtorch.compiler.llvm import build
from graphtorch.compiler.llvm.gemm import (
    GEMV_MAX_M,
    PATH_GFLOPS,
    GemmSpec,
    build_gemm_module,
    busiest_share,
    direct_b,
    is_small,
    reshaped_strides,
    serial_time_us,
    small_layout,
    threads_save_us,
    workspace_bytes,
)
from graphtorch.compiler.llvm.module import runs_serial, serial_kernels
from graphtorch.runtime import compile_ir

KERNEL = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 4, ctypes.c_int64, ctypes.c_int64)


def run_gemm(spec: GemmSpec, a: np.ndarray, b: np.ndarray, nthreads: int = 1) -> np.ndarray:
    """Call the kernel once per thread id (one after another: each thread's share is disjoint)."""
    native = compile_ir(str(build_gemm_module(spec)), cache=False)
    fn = KERNEL(native.address("gemm"))
    out = np.full((spec.batch, spec.m, spec.n), np.nan, a.dtype)
    workspaces = [np.empty(workspace_bytes(spec) + 64, np.uint8) for _ in range(nthreads)]
    for tid, ws in enumerate(workspaces):
        fn(a.ctypes.data, b.ctypes.data, out.ctypes.data, ws.ctypes.data + (-ws.ctypes.data) % 64, tid, nthreads)
    return out


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


def assert_gemm_close(got, a, b, k, rtol=1e-5):
    # |C| grows like sqrt(k) for standard-normal inputs: the absolute part scales with it
    np.testing.assert_allclose(got, reference(a, b), rtol=rtol, atol=rtol * np.sqrt(max(k, 1)))


def operands(m, n, k, batch=1, trans_a=False, trans_b=False, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, k, m) if trans_a else (batch, m, k)).astype(dtype)
    b = rng.standard_normal((batch, n, k) if trans_b else (batch, k, n)).astype(dtype)
    return a, b, (a.transpose(0, 2, 1) if trans_a else a), (b.transpose(0, 2, 1) if trans_b else b)


SIZES = [(1, 1, 1), (7, 13, 5), (65, 33, 17), (6, 16, 8), (12, 32, 300), (150, 20, 513), (100, 300, 1024)]


@pytest.mark.parametrize("m,n,k", SIZES)
def test_kernel_matches_numpy_on_odd_sizes(m, n, k):
    a, b, _, _ = operands(m, n, k)
    assert_gemm_close(run_gemm(GemmSpec.dense(m, n, k), a, b), a, b, k)


@pytest.mark.parametrize("trans_a,trans_b", [(True, False), (False, True), (True, True)])
def test_kernel_reads_transposed_operands_in_place(trans_a, trans_b):
    m, n, k = 37, 129, 270  # two K blocks, edge tiles in both directions, too big for the small path
    a, b, a_log, b_log = operands(m, n, k, trans_a=trans_a, trans_b=trans_b)
    spec = GemmSpec.dense(m, n, k, trans_a=trans_a, trans_b=trans_b)
    assert not is_small(spec)
    got = run_gemm(spec, a, b)
    assert_gemm_close(got, a_log, b_log, k)


def test_kernel_batch_and_broadcast_batch():
    m, n, k, batch = 9, 21, 11, 3
    a, b, _, _ = operands(m, n, k, batch=batch)
    assert_gemm_close(run_gemm(GemmSpec.dense(m, n, k, batch=batch), a, b), a, b, k)
    w = b[:1]  # one B for every batch: batch stride 0
    spec = GemmSpec(m, n, k, "f32", batch, (m * k, k, 1), (0, n, 1))
    assert_gemm_close(run_gemm(spec, a, w), a, np.broadcast_to(w, b.shape), k)


@pytest.mark.parametrize("m", [1, 3, 4])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, True)])
def test_few_rows_stream_b_in_place(m, trans_a, trans_b):
    """M <= 4 (batch-1 Linear) takes the matrix-vector path: dot products when B's columns are
    contiguous, row updates otherwise; threads split the columns."""
    n, k, batch = 77, 300, 2
    a, b, a_log, b_log = operands(m, n, k, batch=batch, trans_a=trans_a, trans_b=trans_b)
    spec = GemmSpec.dense(m, n, k, trans_a=trans_a, trans_b=trans_b, batch=batch)
    for nthreads in (1, 3):
        assert_gemm_close(run_gemm(spec, a, b, nthreads=nthreads), a_log, b_log, k)
    f64 = GemmSpec.dense(m, n, k, trans_b=trans_b, dtype="f64")
    a, b, _, b_log = operands(m, n, k, trans_b=trans_b, dtype=np.float64)
    np.testing.assert_allclose(run_gemm(f64, a, b), reference(a, b_log), rtol=1e-12, atol=1e-12 * np.sqrt(k))


def test_kernel_fp64():
    m, n, k = 23, 190, 300  # three K blocks of the packed path (K too long for the small path)
    a, b, _, _ = operands(m, n, k, dtype=np.float64)
    spec = GemmSpec.dense(m, n, k, dtype="f64")
    assert not is_small(spec)
    got = run_gemm(spec, a, b)
    np.testing.assert_allclose(got, reference(a, b), rtol=1e-12, atol=1e-12 * np.sqrt(k))


def test_kernel_k_zero_gives_zeros():
    a, b = np.empty((1, 5, 0), np.float32), np.empty((1, 0, 7), np.float32)
    assert np.array_equal(run_gemm(GemmSpec.dense(5, 7, 0), a, b), np.zeros((1, 5, 7), np.float32))


@pytest.mark.parametrize("m,n,k,batch", [(70, 9, 40, 1), (5, 77, 40, 1), (13, 17, 300, 3), (1, 1, 3, 1)])
def test_kernel_threads_split_work_with_identical_results(m, n, k, batch):
    a, b, _, _ = operands(m, n, k, batch=batch)
    spec = GemmSpec.dense(m, n, k, batch=batch)
    one = run_gemm(spec, a, b, nthreads=1)
    for nthreads in (2, 3):  # every element written exactly once (the output starts as NaN)
        assert np.array_equal(run_gemm(spec, a, b, nthreads=nthreads), one)


def test_kernel_propagates_nan_and_inf():
    a, b, _, _ = operands(8, 18, 9)
    a[0, 2, 3], b[0, 4, 5] = np.nan, np.inf
    got = run_gemm(GemmSpec.dense(8, 18, 9), a, b)
    want = np.matmul(a, b)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isinf(got), np.isinf(want))


# ---------------------------------------------------------------- small GEMMs: A (and B) read in place


def guarded(x: np.ndarray) -> np.ndarray:
    """A copy of x ending right before an inaccessible page: a read past its end crashes the test."""
    page = mmap.PAGESIZE
    size = _round_up(max(x.nbytes, 1), page) + page
    buf = mmap.mmap(-1, size)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))  # the export keeps buf mapped
    assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(base + size - page), ctypes.c_size_t(page), 0) == 0  # PROT_NONE
    out = np.frombuffer(buf, np.uint8, count=x.nbytes, offset=size - page - x.nbytes).view(x.dtype).reshape(x.shape)
    out[...] = x
    return out


def _round_up(x: int, to: int) -> int:
    return -(-x // to) * to


def run_small_gemm(spec: GemmSpec, a: np.ndarray, b: np.ndarray, nthreads: int) -> np.ndarray:
    """run_gemm with guarded operands and a sentinel margin around the output: asserts nothing
    outside C is written and every element of C is."""
    native = compile_ir(str(build_gemm_module(spec)), cache=False)
    fn = KERNEL(native.address("gemm"))
    a, b, margin = guarded(a), guarded(b), 64
    padded = np.full(spec.batch * spec.m * spec.n + 2 * margin, 7.0, a.dtype)
    for tid in range(nthreads):
        ws = np.empty(workspace_bytes(spec) + 64, np.uint8)
        fn(a.ctypes.data, b.ctypes.data, padded[margin:].ctypes.data, ws.ctypes.data + (-ws.ctypes.data) % 64, tid, nthreads)
    assert np.all(padded[:margin] == 7.0) and np.all(padded[-margin:] == 7.0)
    return padded[margin:-margin].reshape(spec.batch, spec.m, spec.n)


SMALL_CASES = [  # (m, n, k, batch): the GPT's per-head shapes, tile edges, 1s and the size limits
    (32, 32, 16, 9), (32, 16, 32, 4), (1, 1, 1, 1), (5, 16, 3, 2), (6, 32, 64, 1), (7, 17, 9, 3),
    (13, 48, 1, 5), (64, 64, 64, 2), (70, 48, 33, 1), (33, 70, 40, 7), (2, 5, 64, 8), (19, 31, 0, 2),
    (65, 63, 300, 1), (9, 32, 1024, 2),  # K beyond the packed path's K block: all of B packed at once
    (28, 20, 7, 3), (8, 16, 5, 2),  # 4-row tiles (M a multiple of 4, not of 6), an edge column panel
]


@pytest.mark.parametrize("m,n,k,batch", SMALL_CASES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_small_gemm_in_place_matches_numpy(m, n, k, batch, trans_a, trans_b):
    a, b, a_log, b_log = operands(m, n, k, batch=batch, trans_a=trans_a, trans_b=trans_b, seed=m + n + k)
    spec = GemmSpec.dense(m, n, k, trans_a=trans_a, trans_b=trans_b, batch=batch)
    if m > GEMV_MAX_M:  # fewer rows take the matrix-vector path
        assert is_small(spec)
    assert direct_b(spec) == ((not trans_b or k == 1) and n % 16 == 0)  # a k=1 transpose is contiguous too
    got = run_small_gemm(spec, a, b, nthreads=2)
    assert_gemm_close(got, a_log, b_log, k)
    assert np.array_equal(run_small_gemm(spec, a, b, nthreads=3), got)


@pytest.mark.parametrize("m,n,k,batch", [(32, 16, 32, 3), (9, 8, 5, 2), (31, 12, 64, 1), (64, 64, 512, 1)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_small_gemm_fp64(m, n, k, batch, trans_a, trans_b):
    a, b, a_log, b_log = operands(m, n, k, batch=batch, trans_a=trans_a, trans_b=trans_b, dtype=np.float64)
    spec = GemmSpec.dense(m, n, k, trans_a=trans_a, trans_b=trans_b, batch=batch, dtype="f64")
    assert is_small(spec) and direct_b(spec) == (not trans_b and n % 8 == 0)
    got = run_small_gemm(spec, a, b, nthreads=2)
    np.testing.assert_allclose(got, reference(a_log, b_log), rtol=1e-12, atol=1e-12 * np.sqrt(k))


def test_small_gemm_tile_height():
    """4-row tiles where M is a multiple of 4 and not of 6 (no edge strip), else the usual 6."""
    assert [small_layout(GemmSpec.dense(m, 32, 16)).mr for m in (32, 64, 28, 36, 30, 7)] == [4, 4, 4, 6, 6, 6]


def test_small_gemm_limits():
    assert is_small(GemmSpec.dense(64, 64, 1024)) and not is_small(GemmSpec.dense(64, 64, 1025))
    assert not is_small(GemmSpec.dense(512, 64, 64))  # the big linears keep their packed A
    # a wider C with a short K (the LSTM's recurrent steps), but not with a long one
    assert is_small(GemmSpec.dense(32, 256, 64)) and is_small(GemmSpec.dense(16, 512, 256))
    assert not is_small(GemmSpec.dense(32, 256, 257)) and not is_small(GemmSpec.dense(64, 128, 1024, trans_a=True))


# (m, n, k, trans_b): the LSTM's recurrent GEMMs forward (h @ W_hh^T) and backward, odd N, N smaller
# than a panel (threads split M), one tile in all, on the small path and the packed one
THREAD_SPLIT_CASES = [(32, 256, 64, True), (32, 256, 64, False), (32, 64, 256, False), (32, 255, 64, True), (31, 17, 64, False),
                      (32, 10, 64, False), (5, 9, 3, True), (33, 257, 300, True), (700, 9, 300, False)]


@pytest.mark.parametrize("m,n,k,trans_b", THREAD_SPLIT_CASES)
def test_threads_split_small_and_packed_gemms(m, n, k, trans_b):
    a, b, a_log, b_log = operands(m, n, k, trans_b=trans_b, seed=m * n)
    spec = GemmSpec.dense(m, n, k, trans_b=trans_b)
    assert is_small(spec) == (k <= 256)
    one = run_small_gemm(spec, a, b, nthreads=1)
    assert_gemm_close(one, a_log, b_log, k)
    for nthreads in (2, 3):  # each output element written once, by one thread, with the same sum
        assert np.array_equal(run_small_gemm(spec, a, b, nthreads=nthreads), one)


def test_small_gemms_reading_b_in_place_split_rows():
    """Each thread then writes whole rows, as the row-split elementwise kernel after it reads them;
    a packed B (each thread would pack all of it) or too few rows keep the column split."""
    assert GemmSpec.dense(32, 256, 64).split_rows and GemmSpec.dense(32, 64, 256).split_rows
    assert not GemmSpec.dense(32, 256, 64, trans_b=True).split_rows
    assert not GemmSpec.dense(8, 256, 64).split_rows and not GemmSpec.dense(64, 256, 1100).split_rows
    assert busiest_share(GemmSpec.dense(32, 256, 64), 2) == 0.5  # 8 strips of 4 rows, 4 each


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 7, 8, 9, 64, 1100])
def test_transposed_b_packed_by_register_transposes(k, dtype):
    """B = W^T (x @ W^T): each whole panel packed as transposed square blocks plus the K % width
    steps left; two whole panels and an edge panel on the small path and (K 1100) the packed one."""
    m, n = 7, 37
    a, b, a_log, b_log = operands(m, n, k, trans_b=True, dtype=dtype, seed=k)
    spec = GemmSpec.dense(m, n, k, trans_b=True, dtype="f64" if dtype == np.float64 else "f32")
    assert not direct_b(spec) and is_small(spec) == (k <= 1024)
    got = run_small_gemm(spec, a, b, nthreads=1)
    np.testing.assert_allclose(got, reference(a_log, b_log), rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_thread_cost_model():
    """A GEMM splits when half its one-thread time beats two barriers: the LSTM's recurrent steps
    (~13 us on one thread) do, a 16x16x16 head does not, nor one tile (the second thread idles)."""
    lstm_fwd, lstm_bwd = GemmSpec.dense(32, 256, 64, trans_b=True), GemmSpec.dense(32, 64, 256)
    assert serial_time_us(lstm_fwd) == pytest.approx(2 * 32 * 256 * 64 / (PATH_GFLOPS["small"] * 1e3))
    assert threads_save_us(lstm_fwd) > 0 and threads_save_us(lstm_bwd) > 0
    assert busiest_share(lstm_fwd, 2) == 0.5 and busiest_share(lstm_fwd, 3) == pytest.approx(6 / 16)
    assert threads_save_us(GemmSpec.dense(16, 16, 16)) < 0
    one_tile = GemmSpec.dense(6, 16, 4096)  # 0.8 MFLOP, but a single 6x16 tile
    assert busiest_share(one_tile, 2) == 1 and threads_save_us(one_tile) < 0
    f64 = GemmSpec.dense(32, 256, 64, dtype="f64")
    assert serial_time_us(f64) == pytest.approx(2 * serial_time_us(GemmSpec.dense(32, 256, 64)))


def two_linears(shapes):
    """relu(x_i @ W_i^T + b_i) for each (batch, fin, fout): a graph of one "matmul" group per linear."""
    g, groups, outputs = Graph(), [], []
    for i, (batch, fin, fout) in enumerate(shapes):
        before = len(g.nodes)
        x, w = g.input(f"x{i}", TensorType((batch, fin), dt.float32)), g.input(f"w{i}", TensorType((fout, fin), dt.float32))
        bias = g.input(f"b{i}", TensorType((fout,), dt.float32))
        mm = g.call("matmul", [x, g.call("permute", [w], {"dims": (1, 0)})])
        zero = g.call("full", [], {"shape": (batch, fout), "value": 0.0, "dtype": dt.float32})
        outputs.append(g.call("maximum", [g.call("add", [mm, g.call("expand", [bias], {"shape": (batch, fout)})]), zero]))
        calls = [n for n in g.nodes[before:] if n.op == "call"]
        groups.append(Group(i, "matmul", calls, [x, w, bias], [outputs[-1]], mm))
    g.outputs = outputs
    return g, groups


def test_matmul_groups_run_serial_by_cost():
    """The recurrent step's GEMM runs on both threads beside a big one (equal to one thread's
    result); a tiny GEMM and a 2-row matrix-vector product (the size rule) on thread 0 alone."""
    g, groups = two_linears([(120, 300, 70), (32, 64, 256), (8, 16, 16), (2, 512, 256)])
    assert serial_kernels(groups) == [False, False, True, True]
    args = [a for shape in [(120, 300, 70), (32, 64, 256), (8, 16, 16), (2, 512, 256)] for a in linear_inputs(*shape)]
    exe = build(g, groups, num_threads=2, cache=False)
    one, two = compiled(g, *args, groups=groups, num_threads=1), exe(*args)
    for i, (got, want) in enumerate(zip(two, one)):
        assert np.array_equal(got, want)
        x, w, bias = args[3 * i:3 * i + 3]
        np.testing.assert_allclose(got, np.maximum(x @ w.T + bias, 0), rtol=1e-5, atol=1e-4)


def test_cost_model_splits_nothing_in_a_serial_executable():
    """Without a kernel the size rule splits, no thread is woken for the GEMM the cost model would split."""
    g, groups = two_linears([(32, 64, 256)])
    assert not runs_serial(groups[0]) and serial_kernels(groups) == [True]
    assert not build(g, groups, num_threads=2, cache=False).parallel


# ---------------------------------------------------------------- the "matmul" group lowering


def group_of(graph: Graph, anchor) -> list[Group]:
    """Every call node in one "matmul" group around `anchor` (the root is the graph's output)."""
    calls = [n for n in graph.nodes if n.op == "call"]
    inputs = [n for n in graph.nodes if n.op != "call"]
    return [Group(0, "matmul", calls, inputs, [graph.outputs[0]], anchor)]


def linear_graph(batch: int, fin: int, fout: int, d=dt.float32, relu: bool = True):
    """relu(x @ W^T + b), with W^T a permute and b an expand: how a traced nn.Linear looks."""
    g = Graph()
    x = g.input("x", TensorType((batch, fin), d))
    w = g.input("w", TensorType((fout, fin), d))
    bias = g.input("b", TensorType((fout,), d))
    mm = g.call("matmul", [x, g.call("permute", [w], {"dims": (1, 0)})])
    y = g.call("add", [mm, g.call("expand", [bias], {"shape": (batch, fout)})])
    if relu:
        zero = g.call("full", [], {"shape": (batch, fout), "value": 0.0, "dtype": d})
        y = g.call("maximum", [y, zero])
    g.outputs = [y]
    return g, mm


def linear_inputs(batch, fin, fout, dtype=np.float32, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in ((batch, fin), (fout, fin), (fout,))]


@pytest.mark.parametrize("batch,fin,fout", [(1, 1, 1), (7, 13, 5), (64, 784, 120), (33, 65, 17)])
def test_linear_group_with_bias_relu_epilogue(batch, fin, fout):
    g, mm = linear_graph(batch, fin, fout)
    args = linear_inputs(batch, fin, fout)
    (got,) = compiled(g, *args, groups=group_of(g, mm))
    (want,) = interpret(g, *args)
    assert got.dtype == np.float32 and (got >= 0).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(fin))


def test_epilogue_relu_keeps_nan_like_numpy():
    g, mm = linear_graph(6, 10, 20)
    x, w, b = linear_inputs(6, 10, 20)
    x[2, 3] = np.nan  # a whole output row becomes NaN: relu must not turn it into 0
    b[4] = -np.inf
    (got,) = compiled(g, x, w, b, groups=group_of(g, mm))
    (want,) = interpret(g, x, w, b)
    assert np.isnan(got[2]).all() and not np.isnan(np.delete(got, 2, axis=0)).any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_linear_without_epilogue_and_fp64():
    g, mm = linear_graph(9, 31, 14, d=dt.float64, relu=False)
    g.outputs = [mm]
    args = linear_inputs(9, 31, 14, np.float64)
    (got,) = compiled(g, *args, groups=[Group(0, "matmul", [g.nodes[3], mm], g.nodes[:2], [mm], mm)])
    np.testing.assert_allclose(got, args[0] @ args[1].T, rtol=1e-12, atol=1e-12)


def batched_graph(batch, m, n, k, broadcast_b: bool, transpose_a: bool):
    g = Graph()
    d = dt.float32
    a = g.input("a", TensorType((batch, k, m) if transpose_a else (batch, m, k), d))
    b = g.input("b", TensorType((k, n) if broadcast_b else (batch, k, n), d))
    a_op = g.call("permute", [a], {"dims": (0, 2, 1)}) if transpose_a else a
    b_op = g.call("expand", [b], {"shape": (batch, k, n)}) if broadcast_b else b
    mm = g.call("matmul", [a_op, b_op])
    g.outputs = [g.call("mul", [mm, g.call("full", [], {"shape": (batch, m, n), "value": 0.5, "dtype": d})])]
    return g, mm


@pytest.mark.parametrize("broadcast_b,transpose_a", [(False, False), (True, True)])
def test_batched_matmul_group(broadcast_b, transpose_a):
    batch, m, n, k = 3, 10, 19, 26
    g, mm = batched_graph(batch, m, n, k, broadcast_b, transpose_a)
    rng = np.random.default_rng(2)
    args = [rng.standard_normal(i.type.shape).astype(np.float32) for i in g.inputs]
    (got,) = compiled(g, *args, groups=group_of(g, mm))
    (want,) = interpret(g, *args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(k))


def test_group_one_and_two_threads_identical():
    g, mm = linear_graph(120, 300, 70)  # enough work that the executable really runs two threads
    args = linear_inputs(120, 300, 70)
    (one,) = compiled(g, *args, groups=group_of(g, mm), num_threads=1)
    (two,) = compiled(g, *args, groups=group_of(g, mm), num_threads=2)
    assert np.array_equal(one, two)


def test_single_matmul_group_and_integer_fallback():
    g = Graph()
    a, b = g.input("a", TensorType((5, 7), dt.float32)), g.input("b", TensorType((7, 3), dt.float32))
    g.outputs = [g.call("matmul", [a, b])]
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((7, 3)).astype(np.float32)
    np.testing.assert_allclose(compiled(g, x, y)[0], x @ y, rtol=1e-5, atol=1e-5)
    gi = Graph()
    a, b = gi.input("a", TensorType((4, 6), dt.int64)), gi.input("b", TensorType((6, 5), dt.int64))
    gi.outputs = [gi.call("matmul", [a, b])]
    xi, yi = np.arange(24).reshape(4, 6), np.arange(30).reshape(6, 5) - 7
    assert np.array_equal(compiled(gi, xi, yi)[0], xi @ yi)


def test_operands_that_are_no_strided_view_are_copied():
    """A padded operand cannot be read through strides: the lowering copies it (the permuted batch
    of `a` loops over its first batch dim)."""
    g = Graph()
    d = dt.float32
    a = g.input("a", TensorType((3, 2, 5, 6), d))  # batch dims swapped below: no single batch stride
    b = g.input("b", TensorType((2, 3, 7, 4), d))
    a_op = g.call("permute", [a], {"dims": (1, 0, 2, 3)})
    b_op = g.call("pad", [b], {"pads": ((0, 0), (0, 0), (0, 0), (1, 2)), "value": 0.0})  # (2, 3, 7, 7)
    b_op = g.call("slice", [b_op], {"starts": (0, 0, 1, 0), "stops": (2, 3, 7, 7), "steps": (1, 1, 1, 1)})
    mm = g.call("matmul", [a_op, b_op])
    g.outputs = [mm]
    rng = np.random.default_rng(4)
    args = [rng.standard_normal(i.type.shape).astype(np.float32) for i in g.inputs]
    (got,) = compiled(g, *args, groups=group_of(g, mm))
    (want,) = interpret(g, *args)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch,heads,tokens,width", [(3, 2, 7, 5), (2, 4, 32, 16)])
def test_heads_permuted_out_of_tokens_read_in_place_with_epilogue(batch, heads, tokens, width):
    """q @ k^T as attention makes it: (batch, heads) batch dims of no single stride loop over batch;
    the epilogue (a scale) must find each outer batch's block of the output."""
    g = Graph()
    d = dt.float32
    q = g.input("q", TensorType((batch, tokens, heads, width), d))
    k = g.input("k", TensorType((batch, tokens, heads, width), d))
    q_op = g.call("permute", [q], {"dims": (0, 2, 1, 3)})
    k_op = g.call("permute", [k], {"dims": (0, 2, 3, 1)})
    mm = g.call("matmul", [q_op, k_op])
    scale = g.call("full", [], {"shape": (batch, heads, tokens, tokens), "value": 0.25, "dtype": d})
    g.outputs = [g.call("mul", [mm, scale])]
    rng = np.random.default_rng(5)
    args = [rng.standard_normal(i.type.shape).astype(np.float32) for i in g.inputs]
    (got,) = compiled(g, *args, groups=group_of(g, mm), num_threads=2)
    want = 0.25 * np.matmul(args[0].transpose(0, 2, 1, 3), args[1].transpose(0, 2, 3, 1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(width))


def test_reshaped_strides_read_what_numpy_reshape_gives():
    """Random permuted, strided views reshaped at random: when strides are found they read numpy's
    reshape; a reshape that merges dims of no common stride needs a copy (None)."""
    rng, found = np.random.default_rng(0), 0
    for _ in range(500):
        x = np.arange(int(np.prod(shape := rng.integers(1, 4, rng.integers(1, 5))))).reshape(shape)
        x = x.transpose(rng.permutation(x.ndim))[tuple(slice(None, None, int(rng.integers(1, 3))) for _ in shape)]
        new = tuple(int(d) for d in rng.permutation(_factors(x.size)))
        strides = reshaped_strides(x.shape, tuple(s // x.itemsize for s in x.strides), new)
        if strides is not None:
            found += 1
            view = np.lib.stride_tricks.as_strided(x, new, tuple(s * x.itemsize for s in strides))
            assert np.array_equal(view, x.reshape(new)), (x.shape, x.strides, new)
    assert found > 100
    assert reshaped_strides((2, 3), (1, 2), (6,)) is None  # a transposed matrix flattened


def _factors(n: int) -> list[int]:
    out = [1]
    for p in range(2, n + 1):
        while n % p == 0:
            out, n = out + [p], n // p
    return out


def test_sliced_operand_read_in_place():
    g = Graph()
    x = g.input("x", TensorType((9, 20), dt.float32))
    w = g.input("w", TensorType((30, 12), dt.float32))
    w_op = g.call("slice", [w], {"starts": (1, 0), "stops": (21, 12), "steps": (1, 2)})  # rows 1..20, even columns
    mm = g.call("matmul", [x, w_op])
    g.outputs = [mm]
    rng = np.random.default_rng(5)
    args = [rng.standard_normal(i.type.shape).astype(np.float32) for i in g.inputs]
    (got,) = compiled(g, *args, groups=group_of(g, mm))
    np.testing.assert_allclose(got, args[0] @ args[1][1:21, ::2], rtol=1e-5, atol=1e-5)
