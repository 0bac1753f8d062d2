"""compile(model) in training mode: a forward graph, then on loss.backward() a backward graph.
The split saves what the min-cut chooses; these tests pin what it should choose for relu nets
(relu's output, so relu stays in the matmul's epilogue) and check values and gradients against
torch."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import to_numpy

import graphtorch as gt
from graphtorch.compiler.fusion import label


def _mlp(fw, dtype):
    fw.manual_seed(0)
    return fw.nn.Sequential(fw.nn.Linear(12, 16, dtype=dtype), fw.nn.ReLU(), fw.nn.Linear(16, 16, dtype=dtype),
                            fw.nn.ReLU(), fw.nn.Linear(16, 3, dtype=dtype))


def _same_weights(src, dst, torch):
    for a, b in zip(src.parameters(), dst.parameters()):
        with torch.no_grad():
            b.copy_(torch.from_numpy(a._data.copy()))


def _entry(cm):
    (entry,) = cm._compiled.entries.values()
    return entry


def test_relu_stays_in_the_matmul_epilogue_and_its_output_is_saved():
    model = gt.compile(_mlp(gt, gt.float32))
    model(gt.randn(5, 12)).sum().backward()
    entry = _entry(model)
    forward = entry.forward.artifacts
    labels = [label(g) for g in forward.fusion.groups]
    assert labels.count("matmul + bias + relu") == 2 and "relu" not in labels
    saved = forward.optimized.outputs[entry.num_outputs:]
    relu_roots = [g.outputs[0] for g in forward.fusion.groups if label(g) == "matmul + bias + relu"]
    assert set(relu_roots) <= set(saved)  # the relu outputs, not the pre-activations
    assert len(entry.backward.artifacts.fusion.groups) < 12


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_outputs_and_gradients_equal_torch(torch, dtype):
    gm, tm = _mlp(gt, getattr(gt, dtype)), _mlp(torch, getattr(torch, dtype))
    _same_weights(gm, tm, torch)
    x = np.random.default_rng(0).standard_normal((7, 12)).astype(dtype)
    x[0, :4] = 0.0  # rows where relu sees exact zeros and negatives
    compiled = gt.compile(gm)
    for _ in range(2):  # the second call reuses the entry; its gradients accumulate into .grad
        out = compiled(gt.from_numpy(x))
        (out * out).sum().backward()
        t_out = tm(torch.from_numpy(x))
        (t_out * t_out).sum().backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out._data, to_numpy(t_out), rtol=tol, atol=tol)
    for (name, p), (_, q) in zip(gm.named_parameters(), tm.named_parameters()):
        assert p.grad.dtype.name == dtype
        np.testing.assert_allclose(p.grad._data, to_numpy(q.grad), rtol=tol, atol=tol, err_msg=name)


def test_saved_forward_inputs_are_read_again_not_copied():
    model = gt.compile(_mlp(gt, gt.float32))
    x = gt.randn(5, 12)
    model(x).sum().backward()
    entry = _entry(model)
    outputs = entry.forward.artifacts.optimized.outputs
    assert entry.saved_inputs and not any(o.op == "input" for o in outputs)
    kept = {entry.feeds[j][0] for _, j in entry.saved_inputs}
    assert kept == {"arg", "lifted"}  # the batch and the weights the backward multiplies by


def test_changing_a_saved_input_in_place_before_backward_raises_torchs_error(torch):
    for fw, model in ((torch, _mlp(torch, torch.float32)), (gt, gt.compile(_mlp(gt, gt.float32)))):
        inp = fw.randn(5, 12)
        out = model(inp)  # the first Linear saves inp for its weight's gradient
        inp.add_(1)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()
