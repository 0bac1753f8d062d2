"""Run a graphtorch module and a torch module with the same weights on the same input, and
compare outputs, input gradients and parameter gradients."""

from __future__ import annotations

import numpy as np
from conftest import assert_same

import graphtorch as gt


def copy_weights(gt_module, torch_module) -> None:
    """torch's state_dict into the graphtorch module (exercises load_state_dict on the way)."""
    state = {k: gt.tensor(v.detach().numpy().copy()) for k, v in torch_module.state_dict().items()}
    result = gt_module.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []


def check_module(gt_module, torch_module, x: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6,
                 grad: bool = True, seed: int = 3):
    """Same weights, same input: same output, same gradients. Returns both outputs."""
    import torch

    copy_weights(gt_module, torch_module)
    grad = grad and x.dtype.kind == "f"
    gx, tx = gt.tensor(x.copy(), requires_grad=grad), torch.tensor(x.copy(), requires_grad=grad)
    got, want = gt_module(gx), torch_module(tx)
    assert_same(got, want, rtol=rtol, atol=atol, what="output")
    if want.requires_grad:
        v = np.random.default_rng(seed).standard_normal(tuple(want.shape)).astype(want.detach().numpy().dtype)
        (got * gt.tensor(v)).sum().backward()
        (want * torch.tensor(v)).sum().backward()
        if grad:
            assert_same(gx.grad, tx.grad, rtol=rtol * 10, atol=atol * 10, what="input gradient")
        torch_params = dict(torch_module.named_parameters())
        for name, p in gt_module.named_parameters():
            expected = torch_params[name].grad
            if expected is None:
                assert p.grad is None, name
            else:
                assert_same(p.grad, expected, rtol=rtol * 10, atol=atol * 10, what=f"gradient of {name}")
    return got, want
