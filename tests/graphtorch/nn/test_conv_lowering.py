"""Compiled conv2d, forward and both gradients, on every lowering the cost model can choose
(compiler/conv_lowering.py), each forced through $GRAPHTORCH_CONV_LOWERING: equal to torch, and
a float64 finite-difference check of the direct, transposed and dot kernels' gradients."""

import numpy as np
import pytest
from conftest import assert_same, gradcheck

import graphtorch as gt
import graphtorch.nn.functional as F
from graphtorch.compiler import conv_lowering

torch = pytest.importorskip("torch", reason="torch is the oracle")

# (input shape, Conv2d keyword arguments): kernel sizes 1-7, channels 1-64, odd sizes, strides,
# dilation, groups and every padding mode
CONFIGS = [
    ((2, 1, 32, 32), dict(in_channels=1, out_channels=6, kernel_size=5)),  # LeNet conv1
    ((3, 6, 14, 14), dict(in_channels=6, out_channels=16, kernel_size=5)),  # LeNet conv2
    ((2, 16, 8, 8), dict(in_channels=16, out_channels=16, kernel_size=3, padding=1, bias=False)),  # ResNet
    ((1, 3, 11, 9), dict(in_channels=3, out_channels=7, kernel_size=7, padding=3)),
    ((2, 5, 9, 10), dict(in_channels=5, out_channels=4, kernel_size=(3, 2), stride=(2, 3), padding=(1, 2))),
    ((1, 4, 12, 13), dict(in_channels=4, out_channels=6, kernel_size=3, dilation=(2, 3), padding=(2, 1))),
    ((2, 6, 7, 9), dict(in_channels=6, out_channels=9, kernel_size=3, groups=3, padding=1)),
    ((1, 8, 6, 7), dict(in_channels=8, out_channels=8, kernel_size=3, groups=8, padding="same")),  # depthwise
    ((2, 64, 5, 5), dict(in_channels=64, out_channels=64, kernel_size=1)),
    ((1, 3, 9, 8), dict(in_channels=3, out_channels=5, kernel_size=4, padding="same")),  # odd total padding
    ((2, 3, 8, 9), dict(in_channels=3, out_channels=4, kernel_size=3, padding=2, padding_mode="reflect")),
    ((1, 2, 7, 6), dict(in_channels=2, out_channels=3, kernel_size=2, padding=1, padding_mode="replicate")),
    ((1, 2, 6, 6), dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, padding_mode="circular")),
    ((1, 1, 5, 5), dict(in_channels=1, out_channels=1, kernel_size=6, padding=1)),  # kernel past the input
]
LOWERINGS = ["direct", "dot", "im2col", "wide", "in_place", "transposed"]


def _ids(config):
    shape, kw = config
    return f"{shape}-k{kw['kernel_size']}-" + "-".join(f"{k}{v}" for k, v in kw.items() if k not in (
        "in_channels", "out_channels", "kernel_size"))


def _pair(kwargs, seed=0):
    t = torch.nn.Conv2d(**kwargs)
    g = gt.nn.Conv2d(**kwargs)
    g.load_state_dict({k: gt.tensor(v.detach().numpy().copy()) for k, v in t.state_dict().items()})
    return g, t


@pytest.mark.parametrize("lowering", LOWERINGS)
@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_compiled_conv_forward_and_gradients_equal_torch(monkeypatch, lowering, config):
    shape, kwargs = config
    if lowering == "in_place" and kwargs["kernel_size"] != 1:
        pytest.skip("in_place applies to 1x1 convolutions only (the forced name is ignored elsewhere)")
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    g_conv, t_conv = _pair(kwargs)
    compiled = gt.compile(g_conv)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    for _ in range(2):  # the second call runs the compiled graph from the cache
        gx, tx = gt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        got, want = compiled(gx), t_conv(tx)
        assert_same(got, want, rtol=1e-4, atol=1e-5, what="output")
        v = rng.standard_normal(tuple(want.shape)).astype(np.float32)
        (got * gt.tensor(v)).sum().backward()
        (want * torch.tensor(v)).sum().backward()
        assert_same(gx.grad, tx.grad, rtol=1e-4, atol=1e-4, what="input gradient")
        for (name, p), tp in zip(g_conv.named_parameters(), t_conv.parameters()):
            assert_same(p.grad, tp.grad, rtol=1e-4, atol=1e-4, what=f"gradient of {name}")
            p.grad = None
        t_conv.zero_grad()


@pytest.mark.parametrize("kwargs,w_shape", [
    (dict(padding=1), (3, 2, 3, 3)),
    (dict(padding=(2, 1), dilation=(1, 2), groups=2), (4, 1, 3, 2)),
])
@pytest.mark.parametrize("lowering", ["direct", "transposed", "dot"])
def test_plane_lowerings_gradcheck_float64(monkeypatch, kwargs, w_shape, lowering):
    monkeypatch.setenv(conv_lowering.FORCE_ENV, lowering)
    fn = gt.compile(lambda x, w: F.conv2d(x, w, **kwargs))
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal(w_shape)
    fn(gt.tensor(x, requires_grad=True), gt.tensor(w, requires_grad=True))  # a function's first call runs eagerly
    gradcheck(fn, [x, w])


def _conv_node(x_shape, w_shape, **attrs):
    from graphtorch.compiler import dtypes as dt
    from graphtorch.compiler.dtypes import TensorType
    from graphtorch.compiler.ir import Graph

    g = Graph()
    x, w = g.input("x", TensorType(x_shape, dt.float32)), g.input("w", TensorType(w_shape, dt.float32))
    full = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1, **attrs}
    return g.call("conv2d", [x, w], full)


def test_cost_model_picks_by_shape(monkeypatch):
    monkeypatch.delenv(conv_lowering.FORCE_ENV, raising=False)
    # LeNet's conv2 input gradient: 6 output channels, padding 4; im2col would copy 25x the input,
    # the direct kernel would multiply the padding rows that the transposed (scatter) kernel skips
    grad = conv_lowering.choose(_conv_node((64, 16, 10, 10), (6, 16, 5, 5), padding=(4, 4)))
    assert grad.name == "transposed" and {"direct", "im2col", "wide"} <= set(grad.costs)
    assert grad.costs["transposed"] < grad.costs["direct"] < grad.costs["im2col"] / 1.5
    # LeNet's conv2 forward: no padding, so the scatter would spill into margins nobody reads
    forward = conv_lowering.choose(_conv_node((64, 6, 14, 14), (16, 6, 5, 5)))
    assert forward.name == "direct" and forward.costs["direct"] < forward.costs["transposed"]
    # the ResNet's weight gradient: a 16x16 kernel (the output gradient), a 3x3 output
    weight = conv_lowering.choose(_conv_node((16, 32, 16, 16), (16, 32, 16, 16), padding=(1, 1)))
    assert weight.name == "dot"
    strided = conv_lowering.choose(_conv_node((2, 3, 9, 9), (4, 3, 3, 3), stride=(2, 2)))
    assert set(strided.costs) == {"im2col", "dot"} and strided.name == min(strided.costs, key=strided.costs.get)
    # the dot kernel's shifted planes take any stride and dilation; the direct kernel needs stride 1
    width_dilated = conv_lowering.choose(_conv_node((2, 3, 9, 9), (4, 3, 3, 3), stride=(2, 2), dilation=(1, 2)))
    assert set(width_dilated.costs) == {"im2col", "dot"}
    one = conv_lowering.choose(_conv_node((2, 64, 8, 8), (64, 64, 1, 1)))
    assert one.name == "in_place"


def test_forcing_an_inapplicable_lowering_keeps_the_cost_models_choice(monkeypatch):
    monkeypatch.setenv(conv_lowering.FORCE_ENV, "direct")
    node = _conv_node((2, 3, 9, 9), (4, 3, 3, 3), stride=(2, 2), dilation=(1, 2))
    assert conv_lowering.choose(node).name == "im2col"


def test_explain_shows_the_lowering_and_its_costs(monkeypatch):
    monkeypatch.delenv(conv_lowering.FORCE_ENV, raising=False)
    model = gt.nn.Sequential(gt.nn.Conv2d(1, 6, 5), gt.nn.ReLU())
    report = str(gt.explain(model, gt.zeros(2, 1, 32, 32)))  # LeNet conv1: direct by the table
    line = next(s for s in report.splitlines() if "lowering:" in s)
    assert line.strip().startswith("lowering: direct (cost per image: direct ") and "im2col" in line


def test_explain_shows_the_gradient_lowerings(monkeypatch):
    """A training step's backward shows the cost model's choice for both gradients of LeNet's
    conv2: the weight gradient on the dot kernel, the input gradient on the transposed one."""
    monkeypatch.delenv(conv_lowering.FORCE_ENV, raising=False)
    model = gt.nn.Sequential(gt.nn.Conv2d(1, 6, 5), gt.nn.ReLU(), gt.nn.Conv2d(6, 16, 5))
    opt = gt.optim.SGD(model.parameters(), lr=0.1)

    def step(x):
        opt.zero_grad()
        loss = model(x).square().sum()
        loss.backward()
        opt.step()
        return loss

    lines = [s.strip() for s in str(gt.explain(step, gt.zeros(4, 1, 18, 18))).splitlines() if "lowering:" in s]
    chosen = [line.split()[1] for line in lines]
    assert chosen.count("dot") == 2 and "transposed" in chosen, lines
    assert all("cost per image:" in line for line in lines)


def test_plane_kernels_bound_their_scratch(monkeypatch):
    """A big image (64 channels of 256x256) would need 32 MiB of planes per thread in the
    transposed and direct kernels: the cost model leaves them out (forcing one is ignored)."""
    monkeypatch.setenv(conv_lowering.FORCE_ENV, "transposed")
    big = conv_lowering.choose(_conv_node((1, 64, 256, 256), (64, 64, 3, 3), padding=(2, 2)))
    assert "transposed" not in big.costs and "direct" not in big.costs and big.name != "transposed"
    small = conv_lowering.choose(_conv_node((1, 64, 16, 16), (64, 64, 3, 3), padding=(2, 2)))
    assert small.name == "transposed"


STRIDED = [  # (input shape, weight shape, conv2d keyword arguments)
    ((2, 4, 9, 8), (6, 4, 3, 3), dict(stride=2, padding=1)),  # a ResNet downsampling conv
    ((1, 3, 11, 10), (4, 3, 5, 4), dict(stride=(3, 2), padding=(2, 0))),
    ((2, 4, 9, 9), (4, 2, 3, 2), dict(stride=(2, 1), dilation=(2, 3), padding=(1, 1), groups=2)),
    ((1, 2, 7, 9), (3, 2, 1, 1), dict(stride=2)),  # 1x1 at stride 2: odd positions get no tap (zeros)
    ((1, 2, 8, 8), (3, 2, 2, 2), dict(stride=3, padding=1)),  # stride past the kernel: rows no window reads
    ((1, 2, 5, 6), (2, 2, 3, 3), dict(padding=(3, 2))),  # stride 1, padding past the full convolution
]


@pytest.mark.parametrize("x_shape,w_shape,kwargs", STRIDED)
def test_strided_input_gradient_equals_torch(x_shape, w_shape, kwargs):
    """The phase decomposition of autograd_rules.conv2d_input_grad, eager in float64 and
    compiled in float32, against torch's input gradient."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, torch.tensor(w), **kwargs)
    v = rng.standard_normal(tuple(ty.shape))
    (ty * torch.tensor(v)).sum().backward()
    compiled = gt.compile(lambda a, b, c: (F.conv2d(a, b, **kwargs) * c).sum())
    for fn, dtype, tol in ((lambda a, b, c: (F.conv2d(a, b, **kwargs) * c).sum(), np.float64, 1e-10),
                           (compiled, np.float32, 1e-4)):
        for _ in range(2):  # a compiled function's first call runs eagerly
            gx = gt.tensor(x.astype(dtype), requires_grad=True)
            fn(gx, gt.tensor(w.astype(dtype)), gt.tensor(v.astype(dtype))).backward()
            assert_same(gx.grad, tx.grad.to(torch.float64 if dtype == np.float64 else torch.float32),
                        rtol=tol, atol=tol, what="input gradient")


def test_strided_input_gradient_is_one_conv_per_phase(monkeypatch):
    """A stride-2 3x3 conv's input gradient: four stride-1 convs (one per row/column residue),
    no fold; so each is a conv the cost model lowers (explain lists them)."""
    monkeypatch.delenv(conv_lowering.FORCE_ENV, raising=False)
    fn = lambda a, b: F.conv2d(a, b, stride=2, padding=1).square().sum()  # noqa: E731
    x, w = gt.zeros(2, 4, 9, 8, requires_grad=True), gt.zeros(6, 4, 3, 3, requires_grad=True)
    report = str(gt.explain(fn, x, w))
    assert sum("lowering:" in line for line in report.splitlines()) == 1 + 1 + 4  # forward, weight, phases
    assert " fold" not in report and "fold(" not in report
