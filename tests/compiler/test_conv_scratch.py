"""Where the plane conv kernels keep each thread's scratch (conv.py's scratch_layout and
thread_scratch): at fixed low address bits in every process, so a kernel's speed does not depend on
where the allocator put the workspace; and the page-aligned workspace and arena that makes those
bits the same relative to the kernel's buffers."""

import pytest
from test_llvm_conv import check
from test_llvm_executable import big_graph

from graphtorch.compiler import conv_lowering
from graphtorch.compiler.llvm import build, single_groups
from graphtorch.compiler.llvm.conv import PAGE, THREAD_SKEW, scratch_layout

SIZES = [(100,), (4096,), (16 * 324 * 4, 16 * 256 * 4 + 64), (64, 1, 8192, 4095)]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_each_thread_block_sits_at_its_own_offset_in_a_page(sizes, threads):
    starts, stride, reserve = scratch_layout(sizes, threads)
    block_bytes = starts[-1] + -(-sizes[-1] // 64) * 64
    assert all(at % 64 == 0 for at in starts)
    assert all(starts[k] + sizes[k] <= starts[k + 1] for k in range(len(sizes) - 1))  # no overlap
    assert stride >= block_bytes and stride % PAGE == THREAD_SKEW
    offsets = [(t * stride) % PAGE for t in range(threads)]
    assert len(set(offsets)) == threads  # no two threads share the low address bits
    for region in range(0, PAGE, 64):  # the workspace is 64-byte aligned, anywhere in a page
        page = -(-region // PAGE) * PAGE
        assert page + (threads - 1) * stride + block_bytes <= region + reserve  # within the reservation


def test_workspace_and_arena_are_page_aligned():
    g = big_graph()
    exe = build(g, single_groups(g), cache=False)
    arena = exe._table[exe.layout.ARENA]
    assert exe.plan.arena_bytes > 0 and arena % PAGE == 0
    assert exe._table[exe.layout.WORKSPACE] % PAGE == 0


@pytest.mark.parametrize("lowering", ["transposed", "direct"])
def test_plane_kernels_with_page_placed_scratch_match_the_interpreter(monkeypatch, lowering):
    """The ResNet 3x3 conv whose scratch blocks scratch_layout places, at 1, 2 and 4 threads."""
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    for threads in (1, 2, 4):
        check((4, 16, 16, 16), (16, 16, 3, 3), num_threads=threads, padding=(1, 1))
