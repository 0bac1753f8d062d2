"""hostcheck's emulator on hand-written kernels: launch geometry, __syncthreads, shared memory,
every warp collective against CUDA's documented semantics, atomics, and each error it reports
(races, uninitialized shared memory, divergent barriers, bad masks, indices out of bounds).
The emitted kernels themselves run through it in test_cuda_kernels.py."""

from __future__ import annotations

import numpy as np
import pytest

from graphtorch.compiler.cuda.hostcheck import EmulationError, HostLibrary, available
from graphtorch.compiler.cuda.instrument import for_emulation

pytestmark = pytest.mark.skipif(not available(), reason="g++ is needed to run the kernels on the CPU")

SOURCE = r"""
extern "C" __global__ void geometry(int* out) {
  const int block = blockIdx.z * gridDim.x * gridDim.y + blockIdx.y * gridDim.x + blockIdx.x;
  const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  out[block * blockDim.x * blockDim.y * blockDim.z + thread] = blockIdx.y * 1000 + blockIdx.x * 100 + threadIdx.y * 10 + threadIdx.x;
}

extern "C" __global__ void reverse(const float* in, float* out) {
  __shared__ float tile[64];
  const int t = threadIdx.y * blockDim.x + threadIdx.x, n = blockDim.x * blockDim.y;
  tile[t] = in[blockIdx.x * n + t];
  __syncthreads();
  out[blockIdx.x * n + t] = tile[n - 1 - t];
}

extern "C" __global__ void shuffles(const int* in, long long* out) {
  const int t = threadIdx.x, v = in[t];
  out[t * 8 + 0] = __shfl_down_sync(0xffffffffu, v, 3);
  out[t * 8 + 1] = __shfl_up_sync(0xffffffffu, v, 5, 16);
  out[t * 8 + 2] = __shfl_xor_sync(0xffffffffu, v, 6, 8);
  out[t * 8 + 3] = __shfl_sync(0xffffffffu, v, v, 16);
  out[t * 8 + 4] = __ballot_sync(0xffffffffu, v & 1);
  out[t * 8 + 5] = __any_sync(0xffffffffu, v > 90) + 2 * __all_sync(0xffffffffu, v >= 3);
  out[t * 8 + 6] = __shfl_down_sync(0xffffffffu, (double)v / 4, 1);
  out[t * 8 + 7] = (t & 31) < 16 ? __shfl_down_sync(0x0000ffffu, v, 4, 16) : -1;
}

extern "C" __global__ void atomics(float* fsum, long long* isum, int* imax, unsigned long long* tickets, int* order,
                                   long long* seen) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(fsum, 0.5f);
  atomicAdd(isum, (long long)threadIdx.x);
  atomicMax(imax, (int)(t * 7 % 61));
  order[t] = (int)atomicAdd(tickets, 1ULL);
  __syncthreads();
  seen[t] = *isum;  // every thread of the block has added: a barrier orders the atomics before it
}

extern "C" __global__ void war(const float* in, float* out) {
  __shared__ float tile[64];
  tile[threadIdx.x] = in[threadIdx.x];
  __syncthreads();
  const float next = tile[(threadIdx.x + 1) % 64];
  tile[threadIdx.x] = next * 2;  // the neighbour may not have read the old value yet: a barrier is missing
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

extern "C" __global__ void raw(const float* in, float* out) {
  __shared__ float tile[64];
  tile[threadIdx.x] = in[threadIdx.x];
  out[threadIdx.x] = tile[threadIdx.x > 0 ? threadIdx.x - 1 : 0];  // no barrier since the neighbour wrote it
}

extern "C" __global__ void uninitialized(float* out) {
  __shared__ float tile[64];
  if (threadIdx.x > 0) tile[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = tile[0];
}

extern "C" __global__ void out_of_bounds(float* out) {
  __shared__ float tile[4][16];
  tile[threadIdx.x / 16][threadIdx.x % 16 + 1] = 1.0f;
  __syncthreads();
}

extern "C" __global__ void global_out_of_bounds(const float* in, float* out) {
  out[threadIdx.x] = in[threadIdx.x + 1];
}

extern "C" __global__ void divergent(int* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1;
}

extern "C" __global__ void mask_leaves_caller_out(int* out) {
  out[threadIdx.x] = __shfl_sync(0x0000ffffu, (int)threadIdx.x, 0);
}

extern "C" __global__ void reads_outside_mask(int* out) {
  if ((threadIdx.x & 31) < 8) out[threadIdx.x] = __shfl_sync(0xffu, (int)threadIdx.x, 9);
}

extern "C" __global__ void mismatched(int* out) {
  if ((threadIdx.x & 31) == 0) out[threadIdx.x] = __ballot_sync(0xffffffffu, 1);
  else out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
}

extern "C" __global__ void warp_waits_for_a_barrier(int* out) {
  if (threadIdx.x == 0) __syncthreads();
  else out[threadIdx.x] = __shfl_sync(0xffffffffu, 1, 0);
}

extern "C" __global__ void lane_exits(int* out) {
  if ((threadIdx.x & 31) == 5) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 1);
}
"""


@pytest.fixture(scope="module")
def library():
    return HostLibrary(SOURCE)  # one g++ run for the whole file


def run(library, kernel, grid, block, *arrays):
    library.launch(kernel, grid, block, [a.ctypes.data for a in arrays], [a.nbytes for a in arrays])


def test_every_thread_of_every_block_runs_with_its_indices(library):
    out = np.full(2 * 3 * 4 * 2, -1, np.int32)
    run(library, "geometry", (2, 3, 1), (4, 2, 1), out)
    want = [by * 1000 + bx * 100 + ty * 10 + tx for by in range(3) for bx in range(2) for ty in range(2) for tx in range(4)]
    np.testing.assert_array_equal(out, want)


def test_barrier_and_shared_memory_per_block(library):
    x = np.arange(3 * 64, dtype=np.float32)
    out = np.zeros_like(x)
    run(library, "reverse", (3, 1, 1), (16, 4, 1), x, out)  # a 2-D block of 64: threadIdx.y counts too
    np.testing.assert_array_equal(out, x.reshape(3, 64)[:, ::-1].ravel())


def _lane_value(v: np.ndarray, t: int, source: int, width: int) -> int:
    """v at lane `source` of thread t's warp; the caller's own value where source leaves its width segment."""
    warp, lane = t - t % 32, t % 32
    segment = lane - lane % width
    return v[warp + source] if segment <= source < segment + width else v[t]


def _cuda_shuffles(v: np.ndarray) -> np.ndarray:
    """What CUDA's programming guide says each line of `shuffles` gives, lane by lane."""
    out = np.zeros((len(v), 8), np.int64)
    for t in range(len(v)):
        lane, w = t % 32, v[t - t % 32:t - t % 32 + 32]
        out[t, 0] = _lane_value(v, t, lane + 3, 32)
        out[t, 1] = _lane_value(v, t, lane - 5, 16)
        out[t, 2] = _lane_value(v, t, lane ^ 6, 8)
        out[t, 3] = _lane_value(v, t, lane - lane % 16 + v[t] % 16, 16)
        out[t, 4] = sum(1 << k for k in range(32) if w[k] & 1)
        out[t, 5] = int((w > 90).any()) + 2 * int((w >= 3).all())
        out[t, 6] = int(_lane_value(v, t, lane + 1, 32) / 4)
        out[t, 7] = _lane_value(v, t, lane + 4, 16) if lane < 16 else -1
    return out


def test_warp_collectives_follow_cuda(library):
    v = np.random.default_rng(0).integers(3, 100, 64).astype(np.int32)
    out = np.zeros((64, 8), np.int64)
    run(library, "shuffles", (1, 1, 1), (64, 1, 1), v, out)
    np.testing.assert_array_equal(out, _cuda_shuffles(v))
    assert (out[:32, 4] != out[32:, 4]).any(), "each warp votes on its own lanes"


def test_atomics_are_atomic_and_ordered_by_the_barrier(library):
    fsum, isum, imax = np.zeros(1, np.float32), np.zeros(1, np.int64), np.zeros(1, np.int32)
    tickets, order, seen = np.zeros(1, np.uint64), np.full(128, -1, np.int32), np.zeros(128, np.int64)
    run(library, "atomics", (2, 1, 1), (64, 1, 1), fsum, isum, imax, tickets, order, seen)
    assert fsum[0] == 64.0 and isum[0] == 2 * sum(range(64)) and imax[0] == 60 and tickets[0] == 128
    assert sorted(order) == list(range(128))  # every ticket handed out once
    np.testing.assert_array_equal(seen, np.repeat([sum(range(64)), 2 * sum(range(64))], 64))


def _fails(library, kernel, *arrays, block=64):
    with pytest.raises(EmulationError) as e:
        run(library, kernel, (1, 1, 1), (block, 1, 1), *arrays)
    assert e.value.kernel == kernel and str(e.value).startswith(f"kernel {kernel}: block (0,0,0): ")
    return e.value


def line_of(kernel: str, text: str) -> int:
    """The line number (in SOURCE) of the first line of `kernel` holding `text`."""
    lines = SOURCE.split("\n")
    start = next(n for n, line in enumerate(lines) if f" {kernel}(" in line)
    return next(n for n in range(start, len(lines)) if text in lines[n]) + 1


def test_a_read_of_a_value_another_thread_wrote_is_a_race(library):
    e = _fails(library, "raw", np.ones(64, np.float32), np.zeros(64, np.float32))
    wrote, read = line_of("raw", "tile[threadIdx.x] = in"), line_of("raw", "out[threadIdx.x] = tile")
    assert f"shared-memory race: thread (1,0,0) reads tile[0], which thread (0,0,0) wrote at line {wrote} with no " \
           "__syncthreads between" in str(e)
    assert e.line == read and str(e).endswith(f"line {read}: {SOURCE.split(chr(10))[read - 1].strip()}")


def test_a_write_over_a_value_another_thread_read_is_a_race(library):
    """After a barrier the last thread to arrive runs on first: thread 63 reads tile[0] before thread 0 overwrites it."""
    e = _fails(library, "war", np.ones(64, np.float32), np.zeros(64, np.float32))
    read, wrote = line_of("war", "const float next"), line_of("war", "= next * 2")
    assert f"shared-memory race: thread (0,0,0) writes tile[0], which thread (63,0,0) read at line {read}" in str(e)
    assert e.line == wrote and str(e).endswith("tile[threadIdx.x] = next * 2;  // the neighbour may not have read "
                                                "the old value yet: a barrier is missing")


def test_uninitialized_shared_memory_is_reported(library):
    e = _fails(library, "uninitialized", np.zeros(64, np.float32))
    assert "uninitialized shared memory: thread (63,0,0) reads tile[0], which no thread of the block has written" in str(e)


def test_shared_index_out_of_bounds_is_a_fault(library):
    e = _fails(library, "out_of_bounds", np.zeros(1, np.float32))
    assert "shared-memory index out of bounds: tile dimension 1 is 16, size 16" in str(e)
    assert "tile[threadIdx.x / 16][threadIdx.x % 16 + 1] = 1.0f;" in str(e)


def test_global_memory_outside_an_argument_is_a_fault(library):
    out = np.zeros(64, np.float32)
    e = _fails(library, "global_out_of_bounds", np.arange(64, dtype=np.float32), out)
    assert "global memory out of bounds: thread (63,0,0) accesses in[64], outside its 64 elements" in str(e)
    np.testing.assert_array_equal(out[:63], np.arange(1, 64))  # threads before the fault ran


def test_a_barrier_not_every_thread_reaches_is_divergence(library):
    e = _fails(library, "divergent", np.zeros(64, np.int32))
    assert "barrier divergence: 16 of 64 threads wait at __syncthreads, 48 have exited without reaching it" in str(e)


@pytest.mark.parametrize("kernel, message", [
    ("mask_leaves_caller_out", "__shfl_sync: lane 16 calls it with mask 0x0000ffff, which leaves it out"),
    ("reads_outside_mask", "__shfl_sync: thread (0,0,0) reads lane 9, which is not in the mask 0x000000ff"),
    ("lane_exits", "__shfl_down_sync with mask 0xffffffff: lane 5 has exited"),
    ("mismatched", "__shfl_sync with mask 0xffffffff meets lane 0 in __ballot_sync with mask 0xffffffff (line"),
    ("warp_waits_for_a_barrier", "deadlock: a warp collective waits for lanes that never arrive (1 threads wait at "
                                 "__syncthreads, 32 have exited)"),
])
def test_bad_warp_collectives_are_reported(library, kernel, message):
    assert message in str(_fails(library, kernel, np.zeros(64, np.int32)))


def test_a_block_larger_than_cuda_allows_is_refused(library):
    with pytest.raises(EmulationError, match="a block of 2048 threads \\(CUDA allows 1 to 1024\\)"):
        run(library, "geometry", (1, 1, 1), (2048, 1, 1), np.zeros(2048, np.int32))


def test_instrumentation_keeps_lines_and_tells_reads_from_writes():
    src = ('extern "C" __global__ void k(int* out) {\n'
           "  __shared__ int s[2][32];  // s[i][j] in a comment stays\n"
           "  s[0][threadIdx.x] = 1; s[1][s[0][threadIdx.x]] += 2; s[1][0]++;\n"
           "  out[0] = (out[0] & s[1][0]) == s[0] [1];\n"
           "}\n")
    done = for_emulation(src).split("\n")
    assert done[0] == '#line 1 "module.cu"' and done[7].startswith('extern "C" int gt_launch_k(')
    assert done[1:6] == [
        'extern "C" __global__ void k(int* out) {',
        '  static gt_shared<int, 2, 32> s("s");  // s[i][j] in a comment stays',
        "  s.write(__LINE__, 0, threadIdx.x) = 1; s.update(__LINE__, 1, s.read(__LINE__, 0, threadIdx.x)) += 2; "
        "s.update(__LINE__, 1, 0)++;",
        '  gt_emu::at(out, "out", 0, __LINE__, 0) = (gt_emu::at(out, "out", 0, __LINE__, 0) & s.read(__LINE__, 1, 0)) '
        "== s.read(__LINE__, 0, 1);",
        "}"]
    with pytest.raises(ValueError, match="cannot follow a pointer into shared array s"):
        for_emulation(src.replace("s[1][0]++", "int* p = &s[1][0]"))
