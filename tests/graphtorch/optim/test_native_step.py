"""optimizer.step() as one compiled multi-tensor call: equal to the numpy loop (foreach=False) step
for step for every optimizer and option, one native call per step, and no recompiles from
schedulers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from optim_helpers import DTYPES, SHAPES, make_params
from test_optimizer_updates import CASES, IDS

import graphtorch as gt
import graphtorch.optim as gto
from graphtorch.optim import lr_scheduler as sched

torch = pytest.importorskip("torch", reason="torch is the test oracle for the optimizers")

MODES = {"foreach=None": dict(), "foreach=True": dict(foreach=True), "fused=True": dict(fused=True)}


def _pair(name: str, kwargs: dict, np_dtype, mode: dict, shapes=SHAPES):
    """The same parameters under a native optimizer and a numpy one."""
    _, native_params = make_params(shapes, np_dtype)
    _, numpy_params = make_params(shapes, np_dtype)
    native = getattr(gto, name)(native_params, **kwargs, **mode)
    reference = getattr(gto, name)(numpy_params, **kwargs, foreach=False)
    return native, native_params, reference, numpy_params


def _set_grads(rng, *param_lists, skip: int | None = None) -> None:
    for k, params in enumerate(zip(*param_lists)):
        grad = np.asarray(rng.standard_normal(tuple(params[0].shape)), dtype=params[0].dtype.np)
        for p in params:
            p.grad = None if k == skip else gt.tensor(grad.copy())


def _close(got: gt.Tensor, want: gt.Tensor, tol: dict, what: str) -> None:
    """Equal up to rounding: the kernels contract `a + b * c` into one FMA where numpy rounds twice,
    so atol scales with the largest entry (an entry that cancels keeps an ulp of its terms)."""
    assert got.dtype is want.dtype and got.shape == want.shape, what
    want = want.detach().numpy()
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


def _assert_equal(native, native_params, reference, numpy_params, tol) -> None:
    for i, (p, q) in enumerate(zip(native_params, numpy_params)):
        _close(p, q, tol, f"param {i}")
        assert sorted(native.state.get(p, {})) == sorted(reference.state.get(q, {}))
        for key, value in reference.state.get(q, {}).items():
            _close(native.state[p][key], value, tol, f"param {i} {key}")


def _native_signatures(opt) -> int:
    return sum(len(step.compiled.entries) for step in opt.__dict__.get("_native_steps", {}).values())


# torch's RMSprop has no fused argument (nor has ours)
NATIVE_CASES = [pytest.param(name, kwargs, mode, id=f"{case_id}-{mode}") for (name, kwargs), case_id in zip(CASES, IDS)
                for mode in MODES if not (name == "RMSprop" and mode == "fused=True")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,kwargs,mode", NATIVE_CASES)
def test_native_steps_equal_the_numpy_loop(name, kwargs, mode, dtype):
    np_dtype, tol = DTYPES[dtype]
    native, native_params, reference, numpy_params = _pair(name, kwargs, np_dtype, MODES[mode])
    rng = np.random.default_rng(4)
    for step in range(6):
        _set_grads(rng, native_params, numpy_params, skip=1 if step == 2 else None)  # a param without a grad
        native.step()
        reference.step()
        _assert_equal(native, native_params, reference, numpy_params, tol)
    # two signatures: all gradients, and the step without param 1's; the numpy loop compiles nothing
    assert _native_signatures(native) == 2 and _native_signatures(reference) == 0


@pytest.mark.parametrize("name,kwargs", [CASES[2], CASES[7], CASES[17], CASES[20]], ids=lambda c: str(c))
def test_schedulers_and_new_numbers_never_recompile_the_native_step(name, kwargs):
    native, native_params, reference, numpy_params = _pair(name, kwargs, np.float32, {})
    schedulers = [sched.CosineAnnealingLR(opt, T_max=4) for opt in (native, reference)]
    rng = np.random.default_rng(5)
    for _ in range(9):
        _set_grads(rng, native_params, numpy_params)
        native.step()
        reference.step()
        for s, opt in zip(schedulers, (native, reference)):
            s.step()
            group = opt.param_groups[0]
            for key in ("eps", "momentum", "dampening", "weight_decay", "alpha", "lr_decay"):
                if group.get(key):
                    group[key] *= 0.95
            if "betas" in group:
                group["betas"] = (group["betas"][0] * 0.99, group["betas"][1])
        _assert_equal(native, native_params, reference, numpy_params, DTYPES["float32"][1])
    compiled = next(iter(native._native_steps.values())).compiled
    assert len(compiled.entries) == 1 and compiled.last_key is not None


def test_groups_step_natively_or_not_by_their_own_flags():
    _, params = make_params([(3, 2), (4,), (2,)], np.float32)
    _, same = make_params([(3, 2), (4,), (2,)], np.float32)
    groups = lambda ps: [{"params": ps[:1], "foreach": False}, {"params": ps[1:2], "lr": 0.1},  # noqa: E731
                         {"params": ps[2:], "fused": True, "momentum": 0.5}]
    native, reference = gto.SGD(groups(params), lr=0.01, momentum=0.9), gto.SGD(groups(same), lr=0.01, momentum=0.9)
    for group in reference.param_groups:
        group.update(foreach=False, fused=None)
    rng = np.random.default_rng(6)
    for _ in range(4):
        _set_grads(rng, params, same)
        native.step()
        reference.step()
    _assert_equal(native, params, reference, same, DTYPES["float32"][1])
    assert list(native._native_steps) == [(1, 2)]  # the foreach=False group keeps the numpy loop


def test_load_state_dict_and_new_gradients_retrace_with_the_new_tensors():
    native, native_params, reference, numpy_params = _pair("Adam", dict(lr=0.05), np.float32, {})
    rng = np.random.default_rng(7)
    for _ in range(3):
        _set_grads(rng, native_params, numpy_params)
        native.step()
        reference.step()
    native.load_state_dict(copy.deepcopy(reference.state_dict()))  # new state tensors, same values
    for p, q in zip(native_params, numpy_params):
        p.data = q.detach().clone()
    for skip in (None, 0, 2, None):
        _set_grads(rng, native_params, numpy_params, skip=skip)
        native.step()
        reference.step()
        _assert_equal(native, native_params, reference, numpy_params, DTYPES["float32"][1])


def test_parameters_the_kernels_do_not_take_keep_the_numpy_loop():
    params = [gt.zeros(3, dtype=gt.float16, requires_grad=True)]
    opt = gto.Adam(params, lr=0.1)
    params[0].grad = gt.ones(3, dtype=gt.float16)
    opt.step()
    assert "_native_steps" not in opt.__dict__
    np.testing.assert_allclose(params[0].detach().numpy(), -0.1, rtol=1e-3)


def test_an_optimizer_with_a_native_step_deep_copies():
    native, native_params, _, _ = _pair("SGD", dict(lr=0.1, momentum=0.9), np.float32, {})
    _set_grads(np.random.default_rng(8), native_params)
    native.step()
    clone = copy.deepcopy(native)
    assert "_native_steps" not in clone.__dict__ and len(clone.state) == len(native.state)


def test_fused_and_foreach_together_is_torchs_error():
    _, params = make_params([(2,)], np.float32)
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together."):
        gto.Adam(params, fused=True, foreach=True)


def test_a_step_without_gradients_or_with_empty_parameters_is_torchs():
    tp, gp = make_params([(0, 3), (2,)], np.float32)
    native, topt = gto.Adam(gp, lr=0.1), torch.optim.Adam(tp, lr=0.1)
    native.step()  # no gradient anywhere: nothing changes, no state
    assert len(native.state) == 0
    for t, g in zip(tp, gp):
        t.grad, g.grad = torch.ones(tuple(t.shape)), gt.ones(tuple(g.shape))
    for _ in range(2):
        native.step()
        topt.step()
    for t, g in zip(tp, gp):
        np.testing.assert_allclose(g.detach().numpy(), t.detach().numpy(), rtol=1e-6)
        assert g.shape == tuple(t.shape)


def test_an_optimizer_pickles_and_keeps_stepping_natively():
    import pickle

    native, native_params, reference, numpy_params = _pair("Adam", dict(lr=0.05), np.float32, {})
    rng = np.random.default_rng(9)
    _set_grads(rng, native_params, numpy_params)
    native.step()
    reference.step()
    restored = pickle.loads(pickle.dumps(native))
    params = restored.param_groups[0]["params"]
    _set_grads(rng, params, numpy_params)
    restored.step()
    reference.step()
    _assert_equal(restored, params, reference, numpy_params, DTYPES["float32"][1])


@pytest.mark.parametrize("name,kwargs", [CASES[3], CASES[8], CASES[17], CASES[20]], ids=lambda c: str(c))
def test_the_kernels_update_parameters_and_state_in_place(name, kwargs):
    native, native_params, _, _ = _pair(name, kwargs, np.float32, {}, shapes=[(30, 4), (7,)])
    arrays = [p._data for p in native_params]
    for _ in range(3):
        _set_grads(np.random.default_rng(10), native_params)
        native.step()
    entry = next(iter(next(iter(native._native_steps.values())).compiled.entries.values()))
    assert len(entry.forward.executable.plan.donated) == len(entry.mutated)  # nothing copied back
    assert all(p._data is a for p, a in zip(native_params, arrays))


def test_dumps_of_the_native_step_go_to_their_own_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHTORCH_DUMP_DIR", str(tmp_path))
    native, native_params, _, _ = _pair("SGD", dict(lr=0.1, momentum=0.9), np.float32, {})
    _set_grads(np.random.default_rng(11), native_params)
    native.step()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SGD.step"]  # a user's own dumps stay intact
    assert (tmp_path / "SGD.step" / "optimized.txt").exists()
