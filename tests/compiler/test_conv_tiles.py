"""How the image-splitting conv kernels share their work between threads: work items taken from a
shared counter (conv.py's TileQueue), and small batches cut within images (the transposed kernel
by output-channel chunks, the direct kernel by output positions), against the interpreter at one,
two and three threads."""

import pytest
from test_llvm_conv import check, conv_graph

from graphtorch.compiler import conv_lowering
from graphtorch.compiler import dtypes as dt

# (x shape, w shape, attrs): stride 1 convs that both plane kernels take
CASES = [
    ((1, 16, 16, 16), (16, 16, 3, 3), dict(padding=(1, 1))),  # the ResNet conv at batch 1: 4-8 chunks of channels
    ((1, 5, 9, 7), (7, 5, 3, 3), dict(padding=(1, 1))),  # 7 channels (prime): one chunk per channel
    ((3, 8, 6, 6), (6, 4, 3, 3), dict(padding=(1, 1), groups=2)),  # 3 channels per group, batch 3
    ((5, 6, 11, 13), (12, 6, 5, 5), dict(padding=(4, 3))),  # batch 5, not divisible by the threads
    ((2, 3, 7, 5), (4, 3, 2, 3), dict(padding=(1, 2), dilation=(2, 1))),  # dilated, odd sizes
    ((1, 2, 5, 4), (1, 2, 3, 3), dict(padding=(2, 2))),  # one channel: one item, the other threads idle
    ((9, 3, 6, 6), (5, 3, 3, 3), dict(padding=(1, 1))),  # more images than items wanted: whole images
]


@pytest.mark.parametrize("x_shape,w_shape,attrs", CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("lowering", ["transposed", "direct"])
def test_split_kernels_match_the_interpreter(monkeypatch, lowering, x_shape, w_shape, attrs):
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    _, groups = conv_graph(x_shape, w_shape, **attrs)
    assert conv_lowering.choose(groups[0].anchor).name == lowering
    for threads in (1, 2, 3):
        check(x_shape, w_shape, num_threads=threads, **attrs)  # with bias + relu: the epilogue per chunk
        check(x_shape, w_shape, num_threads=threads, bias_relu=False, **attrs)


@pytest.mark.parametrize("lowering", ["transposed", "direct"])
def test_split_kernels_fp64(monkeypatch, lowering):
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    for threads in (1, 2):
        check((1, 6, 8, 9), (6, 6, 3, 3), num_threads=threads, padding=(1, 1), d=dt.float64)


@pytest.mark.parametrize("x_shape,w_shape,attrs,threads,parts", [
    ((1, 16, 16, 16), (16, 16, 3, 3), dict(padding=(1, 1)), 2, 8),  # 8 items wanted from one image
    ((1, 16, 16, 16), (16, 16, 3, 3), dict(padding=(1, 1)), 1, 4),
    ((3, 8, 6, 6), (6, 4, 3, 3), dict(padding=(1, 1), groups=2), 2, 3),  # 2 wanted: 3 divides 3
    ((1, 5, 9, 7), (7, 5, 3, 3), dict(padding=(1, 1)), 2, 7),  # no divisor of 7 in [8, 7]: one per channel
    ((32, 16, 16, 16), (16, 16, 3, 3), dict(padding=(1, 1)), 2, 1),  # the ResNet's batch: whole images
])
def test_transposed_parts_give_each_thread_a_few_items(x_shape, w_shape, attrs, threads, parts):
    _, groups = conv_graph(x_shape, w_shape, bias_relu=False, **attrs)
    anchor = groups[0].anchor
    got = conv_lowering.transposed_parts(anchor, threads)
    og = anchor.type.shape[1] // anchor.attrs["groups"]
    assert got == parts and og % got == 0


def test_parts_wanted():
    assert conv_lowering.parts_wanted(1, 2) == 2 * conv_lowering.TILES_PER_THREAD
    assert conv_lowering.parts_wanted(3, 2) == 3  # ceil(8 / 3)
    assert conv_lowering.parts_wanted(64, 2) == 1
    assert conv_lowering.parts_wanted(0, 2) == 2 * conv_lowering.TILES_PER_THREAD
