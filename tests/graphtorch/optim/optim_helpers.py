"""Run a graphtorch optimizer and torch's side by side from the same numpy parameters."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_same

import graphtorch as gt
import graphtorch.optim as gto

torch = pytest.importorskip("torch", reason="torch is the test oracle for the optimizers")

# atol is scaled by the tensor's largest entry (at least 1, the scale of the parameters and gradients here):
# torch's CPU kernels fuse `param + alpha * x` into one FMA where numpy rounds twice, so an entry that
# cancels to near zero keeps an ulp-sized difference of the O(1) values it came from
DTYPES = {"float32": (np.float32, dict(rtol=1e-6, atol=1e-6)), "float64": (np.float64, dict(rtol=1e-12, atol=1e-14))}
SHAPES = [(3, 4), (5,), ()]


def make_params(shapes, np_dtype, seed=0):
    """Identical parameters as numpy arrays, then as (torch leaves, graphtorch leaves)."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(rng.standard_normal(s), dtype=np_dtype) for s in shapes]
    return ([torch.tensor(a.copy(), requires_grad=True) for a in arrays],
            [gt.tensor(a.copy(), requires_grad=True) for a in arrays])


def make_pair(name, kwargs, shapes=SHAPES, np_dtype=np.float32, seed=0):
    tp, gp = make_params(shapes, np_dtype, seed)
    return tp, gp, getattr(torch.optim, name)(tp, **kwargs), getattr(gto, name)(gp, **kwargs)


def set_grads(tp, gp, rng) -> None:
    for t, g in zip(tp, gp):
        grad = np.asarray(rng.standard_normal(tuple(t.shape)), dtype=t.detach().numpy().dtype)
        t.grad, g.grad = torch.tensor(grad.copy()), gt.tensor(grad.copy())


def assert_close(gt_tensor, torch_tensor, tol, what="") -> None:
    scale = max(1.0, float(torch_tensor.detach().abs().max())) if torch_tensor.numel() else 1.0
    assert_same(gt_tensor, torch_tensor, rtol=tol["rtol"], atol=tol["atol"] * scale, what=what)


def assert_same_state(gopt, topt, gp, tp, tol) -> None:
    """Parameters and every state entry (keys, dtypes, values) agree with torch's."""
    for i, (g, t) in enumerate(zip(gp, tp)):
        assert_close(g, t, tol, f"param {i}")
        tstate, gstate = topt.state.get(t, {}), gopt.state.get(g, {})
        assert sorted(gstate) == sorted(tstate), f"param {i} state keys"
        for key, tv in tstate.items():
            assert_close(gstate[key], tv, tol, f"param {i} state {key!r}")
