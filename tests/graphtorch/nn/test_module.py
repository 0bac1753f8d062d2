"""nn.Module and nn.Parameter: registries, attribute rules, iteration, hooks, conversion,
state_dict / load_state_dict and repr, against torch."""

import copy
from collections import OrderedDict

import numpy as np
import pytest
from conftest import assert_same, raises_like, randn
from nn_helpers import copy_weights

import graphtorch as gt
import graphtorch.nn as nn
import graphtorch.nn.functional as F

torch = pytest.importorskip("torch")


def lenet(lib):
    n, f = lib.nn, lib.nn.functional

    class Net(n.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = n.Conv2d(1, 6, 5)
            self.conv2 = n.Conv2d(6, 16, 5)
            self.fc1 = n.Linear(16 * 5 * 5, 120)
            self.fc2 = n.Linear(120, 84)
            self.fc3 = n.Linear(84, 10)

        def forward(self, x):
            x = f.max_pool2d(f.relu(self.conv1(x)), (2, 2))
            x = f.max_pool2d(f.relu(self.conv2(x)), 2)
            x = lib.flatten(x, 1)
            return self.fc3(f.relu(self.fc2(f.relu(self.fc1(x)))))

    return Net()


def nested(lib):
    n = lib.nn

    class Block(n.Module):
        def __init__(self):
            super().__init__()
            self.body = n.Sequential(n.Conv2d(3, 4, 3, padding=1, bias=False), n.BatchNorm2d(4), n.ReLU())
            self.register_buffer("scale", lib.ones(4))
            self.register_buffer("scratch", lib.zeros(2), persistent=False)

    class Net(n.Module):
        def __init__(self):
            super().__init__()
            self.blocks = n.ModuleList([Block(), Block()])
            self.heads = n.ModuleDict({"cls": n.Linear(4, 3), "reg": n.Linear(4, 1)})
            self.shared = self.heads["cls"]  # the same module twice: listed once
            self.emb = n.Embedding(5, 4, padding_idx=0)
            self.norm = n.LayerNorm(4)

    return Net()


def test_lenet_repr_parameters_and_state_dict_keys_match_torch():
    g, t = lenet(gt), lenet(torch)
    assert repr(g) == repr(t)
    assert [tuple(p.shape) for p in g.parameters()] == [tuple(p.shape) for p in t.parameters()]
    assert [str(p.size()) for p in g.parameters()][:2] == ["torch.Size([6, 1, 5, 5])", "torch.Size([6])"]
    assert list(g.state_dict()) == list(t.state_dict())


def test_nested_names_order_and_prefixes_match_torch():
    g, t = nested(gt), nested(torch)
    assert repr(g) == repr(t)
    for method in ("named_parameters", "named_buffers", "named_modules", "named_children"):
        assert [n for n, _ in getattr(g, method)()] == [n for n, _ in getattr(t, method)()], method
    assert [n for n, _ in g.named_parameters(prefix="m", recurse=True)] == \
        [n for n, _ in t.named_parameters(prefix="m", recurse=True)]
    assert [n for n, _ in g.named_modules(remove_duplicate=False)] == \
        [n for n, _ in t.named_modules(remove_duplicate=False)]
    assert [n for n, _ in g.blocks[0].named_parameters(recurse=False)] == []
    assert list(g.state_dict()) == list(t.state_dict())
    assert "blocks.0.scratch" not in g.state_dict()
    assert isinstance(g.state_dict(), OrderedDict)


def test_state_dict_values_are_detached_and_share_memory():
    lin = nn.Linear(3, 2)
    sd = lin.state_dict()
    assert not sd["weight"].requires_grad and type(sd["weight"]) is gt.Tensor
    with gt.no_grad():
        lin.weight.add_(1.0)
    assert_same(sd["weight"], torch.tensor(lin.weight.detach().numpy()))
    assert lin.state_dict(keep_vars=True)["weight"] is lin.weight
    assert list(lin.state_dict(prefix="fc.")) == ["fc.weight", "fc.bias"]


def test_load_state_dict_copies_in_place_and_reports_keys():
    g, t = nested(gt), nested(torch)
    weight = g.heads["reg"].weight
    copy_weights(g, t)
    assert g.heads["reg"].weight is weight  # the same Parameter object, new values
    assert_same(weight, t.heads["reg"].weight.detach())
    assert_same(g.blocks[1].body[1].num_batches_tracked, t.blocks[1].body[1].num_batches_tracked)

    sd = {k: gt.tensor(v.numpy()) for k, v in t.state_dict().items()}
    del sd["norm.bias"]
    sd["extra.weight"] = gt.zeros(1)
    tsd = dict(t.state_dict())
    del tsd["norm.bias"]
    tsd["extra.weight"] = torch.zeros(1)
    with pytest.raises(RuntimeError) as e:
        g.load_state_dict(sd)
    with pytest.raises(RuntimeError) as et:
        t.load_state_dict(tsd)
    assert str(e.value) == str(et.value)
    assert str(e.value).startswith('Error(s) in loading state_dict for Net:\n\tMissing key(s) in state_dict: '
                                   '"norm.bias". \n\tUnexpected key(s) in state_dict: "extra.weight". ')
    result = g.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["norm.bias"] and result.unexpected_keys == ["extra.weight"]
    assert result == t.load_state_dict(tsd, strict=False)
    assert repr(g.load_state_dict(g.state_dict())) == "<All keys matched successfully>"


def test_load_state_dict_size_mismatch_message():
    g, t = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    bad_g, bad_t = {"weight": gt.zeros(2, 4), "bias": gt.zeros(2)}, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}
    with pytest.raises(RuntimeError) as e:
        g.load_state_dict(bad_g)
    with pytest.raises(RuntimeError) as et:
        t.load_state_dict(bad_t)
    assert str(e.value) == str(et.value)
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        g.load_state_dict([1, 2])


def test_attribute_assignment_rules_and_errors():
    m = nn.Linear(2, 3)
    raises_like(lambda: setattr(torch.nn.Linear(2, 3), "weight", torch.zeros(3, 2)),
                lambda: setattr(m, "weight", gt.zeros(3, 2)))
    raises_like(lambda: torch.nn.Linear(2, 3).foo, lambda: m.foo)

    raises_like(lambda: _assigns_before_init(torch), lambda: _assigns_before_init(gt))
    m.weight = None
    assert m._parameters["weight"] is None and "weight" not in [n for n, _ in m.named_parameters()]
    m.extra = nn.Parameter(gt.ones(1))
    m.child = nn.ReLU()
    m.register_buffer("buf", gt.zeros(1))
    m.buf = gt.ones(1)
    assert m._buffers["buf"] is m.buf and "extra" in m._parameters and "child" in m._modules
    del m.extra, m.child, m.buf
    assert "extra" not in m._parameters and "child" not in m._modules and "buf" not in m._buffers
    with pytest.raises(KeyError, match="attribute 'in_features' already exists"):
        m.register_buffer("in_features", gt.zeros(1))
    with pytest.raises(TypeError, match="cannot assign 'torch.FloatTensor' object to parameter 'p'"):
        m.register_parameter("p", gt.zeros(1))
    with pytest.raises(ValueError, match="Cannot assign non-leaf Tensor to parameter 'p'"):
        m.register_parameter("p", _non_leaf_parameter())
    assert sorted(nn.Module().__dict__) == sorted(torch.nn.Module().__dict__)


def _assigns_before_init(lib):
    class Net(lib.nn.Module):
        def __init__(self):
            self.w = lib.nn.Parameter(lib.zeros(2))

    return Net()


def _non_leaf_parameter():
    p = nn.Parameter(gt.ones(2))
    p.grad_fn = (p * 2).grad_fn
    return p


def test_forward_missing_raises_like_torch():
    raises_like(lambda: torch.nn.Module()(1), lambda: nn.Module()(1))


def test_parameter_repr_leaf_sharing_and_deepcopy():
    data = gt.tensor([0.0, 0.0])
    p = nn.Parameter(data)
    assert repr(p) == repr(torch.nn.Parameter(torch.zeros(2))) == str(p)
    assert p.is_leaf and p.requires_grad and isinstance(p, gt.Tensor)
    data.add_(1.0)
    assert p.tolist() == [1.0, 1.0]  # shares memory with `data`
    q = copy.deepcopy(p)
    assert type(q) is nn.Parameter and q.requires_grad and q.tolist() == [1.0, 1.0]
    assert not np.shares_memory(q.detach().numpy(), p.detach().numpy())
    m2 = copy.deepcopy(nn.Linear(2, 2))
    assert type(m2.weight) is nn.Parameter
    assert not nn.Parameter(gt.zeros(1), requires_grad=False).requires_grad


def test_hooks_fire_in_order_and_can_change_values():
    calls = []
    lin = nn.Linear(2, 2)
    h1 = lin.register_forward_pre_hook(lambda m, args: calls.append("pre1"))
    lin.register_forward_pre_hook(lambda m, args: calls.append("pre0"), prepend=True)
    lin.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    lin.register_forward_hook(lambda m, args, out: calls.append("fwd"))
    lin.register_forward_hook(lambda m, args, kwargs, out: out + 1, with_kwargs=True)
    out = lin(gt.ones(1, 2))
    assert calls == ["pre0", "pre1", "fwd"]
    assert_same(out, torch.tensor((lin.bias + 1).detach().numpy()).reshape(1, 2))
    h1.remove()
    calls.clear()
    lin(gt.ones(1, 2))
    assert calls == ["pre0", "fwd"]


def test_full_backward_hook_sees_and_replaces_gradients():
    seen = {}

    def run(lib, replace):
        lin = lib.nn.Linear(3, 2)
        with lib.no_grad():
            lin.weight.copy_(lib.tensor(randn(2, 3)))

        def hook(module, grad_input, grad_output):
            seen[lib.__name__] = (grad_input, grad_output)
            return (grad_input[0] * 10,) if replace else None

        lin.register_full_backward_hook(hook)
        x = lib.tensor(randn(4, 3, seed=1), requires_grad=True)
        out = lin(x)
        (out * lib.tensor(randn(4, 2, seed=2))).sum().backward()
        return x.grad

    for replace in (False, True):
        assert_same(run(gt, replace), run(torch, replace), rtol=1e-6)
        (gi, go), (ti, to) = seen["graphtorch"], seen["torch"]
        assert len(gi) == len(ti) == 1 and len(go) == len(to) == 1
        assert_same(gi[0], ti[0], rtol=1e-6)
        assert_same(go[0], to[0])


def test_full_backward_hook_on_input_without_grad_gets_none():
    seen = []
    lin = nn.Linear(3, 2)
    lin.register_full_backward_hook(lambda m, gi, go: seen.append((gi, go)))
    lin(gt.ones(1, 3)).sum().backward()
    assert seen[0][0] == (None,) and tuple(seen[0][1][0].shape) == (1, 2)


def test_train_eval_zero_grad_requires_grad_and_apply():
    g = nested(gt)
    assert g.training and all(m.training for m in g.modules())
    assert g.eval() is g and not any(m.training for m in g.modules())
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        g.train("yes")
    g.train()
    g.norm(gt.randn(2, 4)).sum().backward()
    assert g.norm.weight.grad is not None
    grad = g.norm.weight.grad
    g.zero_grad(set_to_none=False)
    assert g.norm.weight.grad is grad and (grad == 0).all()
    g.zero_grad()
    assert g.norm.weight.grad is None
    g.requires_grad_(False)
    assert not any(p.requires_grad for p in g.parameters())
    names = []
    g.apply(lambda m: names.append(type(m).__name__))
    assert names[-1] == "Net" and names[0] == "Conv2d"


def test_dtype_conversion_keeps_parameter_objects():
    g = nested(gt)
    params = list(g.parameters())
    assert g.double() is g
    assert all(p is q for p, q in zip(params, g.parameters()))
    assert all(p.dtype is gt.float64 for p in g.parameters())
    assert g.blocks[0].body[1].num_batches_tracked.dtype is gt.int64
    assert g.blocks[0].scale.dtype is gt.float64
    g.to(gt.float32)
    assert all(p.dtype is gt.float32 for p in g.parameters())
    assert g.half().norm.weight.dtype is gt.float16
    assert g.float().to("cpu") is g and g.cpu() is g
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        g.cuda()
    with pytest.raises(AssertionError, match="Torch not compiled with CUDA enabled"):
        g.to("cuda")
    with pytest.raises(TypeError, match="nn.Module.to only accepts floating point"):
        g.to(gt.int64)


def test_get_submodule_dir_and_add_module():
    g, t = nested(gt), nested(torch)
    assert g.get_submodule("blocks.1.body.0") is g.blocks[1].body[0]
    raises_like(lambda: t.get_submodule("blocks.nope"), lambda: g.get_submodule("blocks.nope"))
    assert g.get_parameter("norm.weight") is g.norm.weight
    assert "heads" in dir(g) and "forward" in dir(g) and "0" not in dir(g.blocks)
    g.add_module("tail", nn.Identity())
    assert list(g._modules)[-1] == "tail"
    with pytest.raises(KeyError, match='contain "\\.", got: a.b'):
        g.add_module("a.b", nn.Identity())


def test_sequential_and_containers():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.Linear)
    sub = seq[1:]
    assert type(sub) is nn.Sequential and list(sub._modules) == ["1", "2"]
    assert repr(sub) == repr(torch.nn.Sequential(OrderedDict([("1", torch.nn.ReLU()),
                                                               ("2", torch.nn.Linear(3, 1))])))
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(named._modules) == ["fc", "act"] and named.fc is named[0]
    seq.append(nn.Sigmoid())
    del seq[1]
    assert list(seq._modules) == ["0", "1", "2"] and isinstance(seq[1], nn.Linear)
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Sigmoid"]
    with pytest.raises(IndexError, match="index 5 is out of range"):
        seq[5]
    assert seq(gt.ones(4, 2)).shape == (4, 1)

    ml = nn.ModuleList([nn.ReLU(), nn.ReLU()])
    ml.append(nn.Linear(2, 2))
    ml.extend([nn.Tanh()])
    ml.insert(0, nn.Sigmoid())
    tl = torch.nn.ModuleList([torch.nn.Sigmoid(), torch.nn.ReLU(), torch.nn.ReLU(), torch.nn.Linear(2, 2),
                              torch.nn.Tanh()])
    assert repr(ml) == repr(tl) and len(ml) == 5 and type(ml[1:3]) is nn.ModuleList
    assert [n for n, _ in ml.named_parameters()] == ["3.weight", "3.bias"]
    md = nn.ModuleDict({"a": nn.ReLU()})
    md["b"] = nn.Linear(1, 1)
    assert list(md) == ["a", "b"] and "b" in md and len(md) == 2 and list(md.keys()) == ["a", "b"]
    assert repr(md) == repr(torch.nn.ModuleDict({"a": torch.nn.ReLU(), "b": torch.nn.Linear(1, 1)}))
    assert repr(nn.Sequential()) == "Sequential()"


def test_layer_reprs_match_torch():
    for name, args, kwargs in [
        ("Conv2d", (3, 2), dict(kernel_size=3, stride=2, padding=1, bias=True)),
        ("Conv2d", (2, 2, 3), dict(padding="same", padding_mode="reflect", bias=False, dilation=2, groups=2)),
        ("MaxPool2d", (3, 2, 1), dict(ceil_mode=True)), ("AvgPool2d", (3,), {}),
        ("AdaptiveAvgPool2d", ((1, None),), {}), ("Dropout", (0.2,), dict(inplace=True)),
        ("Embedding", (3, 4), dict(padding_idx=0)), ("LayerNorm", (4,), {}), ("GELU", (), {}),
        ("BatchNorm1d", (3,), dict(momentum=None)), ("BatchNorm2d", (6,), {}), ("CrossEntropyLoss", (), {}),
        ("BCEWithLogitsLoss", (), {}), ("ReLU", (True,), {}), ("LeakyReLU", (), {}), ("Linear", (400, 120), {}),
    ]:
        assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(torch.nn, name)(*args, **kwargs))
    assert repr(nn.Conv2d(3, 2, kernel_size=3, stride=2, padding=1, bias=True)) == \
        "Conv2d(3, 2, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"

    class Empty(nn.Module):
        pass

    assert repr(Empty()) == "Empty()"


def test_compiled_module_shares_state_with_functional_forward():
    # F.* over modules: the same Parameters are used, so gradients land on them
    lin = nn.Linear(3, 1)
    F.linear(gt.ones(2, 3), lin.weight, lin.bias).sum().backward()
    assert_same(lin.weight.grad, torch.full((1, 3), 2.0))


def test_clip_grad_norm_and_value_match_torch():
    for norm_type in (2.0, 1.0, float("inf")):
        g, t = nn.Linear(4, 3), torch.nn.Linear(4, 3)
        copy_weights(g, t)
        x = randn(5, 4) * 10
        (g(gt.tensor(x)) ** 2).sum().backward()
        (t(torch.tensor(x)) ** 2).sum().backward()
        assert_same(nn.utils.clip_grad_norm_(g.parameters(), 1.5, norm_type),
                    torch.nn.utils.clip_grad_norm_(t.parameters(), 1.5, norm_type), rtol=1e-5)
        for p, q in zip(g.parameters(), t.parameters()):
            assert_same(p.grad, q.grad, rtol=1e-5, atol=1e-6)
    nn.utils.clip_grad_value_(g.parameters(), 0.01)
    assert all(p.grad.abs().max().item() <= 0.01 for p in g.parameters())
