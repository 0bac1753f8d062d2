"""The disk cache of built executables (compiler/llvm/saved.py): a graph compiled before loads
without the passes, fusion or LLVM IR building, gives the results of a cold compile, and any
change to what the code depends on misses."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graphtorch as gt
from graphtorch import compiled
from graphtorch.compiler.llvm import saved
from graphtorch.runtime import ObjectCache, cache_dir, source_fingerprint


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHTORCH_CACHE_DIR", str(tmp_path / "cache"))


class Net(gt.nn.Module):
    def __init__(self, hidden: int = 16, scale: float = 2.0, dtype=gt.float32):
        super().__init__()
        self.fc1 = gt.nn.Linear(8, hidden, dtype=dtype)
        self.fc2 = gt.nn.Linear(hidden, 3, dtype=dtype)
        self.scale = scale

    def forward(self, x):
        return self.fc2(gt.relu(self.fc1(x)) * self.scale)


class OtherCode(Net):
    def forward(self, x):  # the same parameters, another program
        return self.fc2(gt.tanh(self.fc1(x)) * self.scale)


def _net(cls=Net, **kw) -> Net:
    gt.manual_seed(0)
    return cls(**kw)


def _x(shape=(5, 8), dtype=np.float32) -> gt.Tensor:
    return gt.from_numpy(np.random.default_rng(1).standard_normal(shape).astype(dtype))


def _entry(cm):
    (entry,) = cm._compiled.entries.values()
    return entry


def _train_call(model, x):
    """One compile(model) call in training mode, its backward; the output and the gradients."""
    cm = gt.compile(model)
    out = cm(x)
    out.square().sum().backward()
    grads = [p.grad._data.copy() for p in model.parameters()]
    return cm, out._data.copy(), grads


def _was_hit(cm) -> bool:
    return all("from disk cache" in g.artifacts.times_ms for g in (_entry(cm).forward, _entry(cm).backward) if g)


def test_a_hit_gives_the_cold_compile_and_eager_results(monkeypatch):
    x = _x()
    cold, cold_out, cold_grads = _train_call(_net(), x)
    assert not _was_hit(cold) and "optimized" in _entry(cold).forward.artifacts.times_ms

    def no_passes(*args, **kwargs):
        raise AssertionError("a cache hit must not run the pipeline")

    monkeypatch.setattr(saved, "run_pipeline", no_passes)
    hit, hit_out, hit_grads = _train_call(_net(), x)
    assert _was_hit(hit)
    np.testing.assert_array_equal(hit_out, cold_out)
    for a, b in zip(hit_grads, cold_grads):
        np.testing.assert_array_equal(a, b)
    eager = _net()
    out = eager(x)
    out.square().sum().backward()
    np.testing.assert_allclose(hit_out, out._data, rtol=1e-5, atol=1e-6)
    for p, g in zip(eager.parameters(), hit_grads):
        np.testing.assert_allclose(g, p.grad._data, rtol=1e-5, atol=1e-5)


def test_a_hit_restores_the_fusion_plan_memory_plan_and_code():
    x = _x()
    cold, hit = _train_call(_net(), x)[0], _train_call(_net(), x)[0]
    for which in ("forward", "backward"):
        a, b = getattr(_entry(cold), which), getattr(_entry(hit), which)
        assert str(b.artifacts.fusion) == str(a.artifacts.fusion)
        assert b.artifacts.optimized.equals(a.artifacts.optimized)
        assert b.executable.plan.report() == a.executable.plan.report()
        assert b.executable.native.ir_text == a.executable.native.ir_text
        assert b.executable.layout.workspace_bytes == a.executable.layout.workspace_bytes


def test_a_whole_training_step_from_the_cache_trains_as_eager():
    x, y = _x(), gt.from_numpy(np.array([0, 1, 2, 1, 0]))
    losses = {}
    for run in ("cold", "hit", "eager"):
        model = _net()
        opt = gt.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

        def step(x, y, model=model, opt=opt):
            opt.zero_grad()
            loss = gt.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        fn = step if run == "eager" else gt.compile(step)
        losses[run] = [float(fn(x, y)) for _ in range(4)]
        if run == "hit":
            assert all("from disk cache" in e.forward.artifacts.times_ms for e in fn.entries.values())
        losses[run + " weights"] = model.fc1.weight._data.copy()
    assert losses["hit"] == losses["cold"]
    np.testing.assert_allclose(losses["hit"], losses["eager"], rtol=1e-5)
    np.testing.assert_allclose(losses["hit weights"], losses["eager weights"], rtol=1e-5, atol=1e-6)


CHANGES = {
    "input shape": lambda: (_net(), _x((6, 8))),
    "input dtype and parameter dtype": lambda: (_net(dtype=gt.float64), _x(dtype=np.float64)),
    "module code": lambda: (_net(OtherCode), _x()),
    "parameter shape": lambda: (_net(hidden=12), _x()),
    "a Python number the forward reads": lambda: (_net(scale=3.0), _x()),
}


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_to_the_program_misses(change):
    _train_call(_net(), _x())
    model, x = CHANGES[change]()
    cm = _train_call(model, x)[0]
    assert not _was_hit(cm)


def test_changed_compile_options_miss(monkeypatch):
    _train_call(_net(), _x())
    monkeypatch.setenv("GRAPHTORCH_KERNEL_TIMES", "1")  # kernels that count their time: other code
    assert not _was_hit(_train_call(_net(), _x())[0])
    monkeypatch.delenv("GRAPHTORCH_KERNEL_TIMES")
    monkeypatch.setenv("GRAPHTORCH_CONV_LOWERING", "im2col")  # tests force a conv lowering this way
    assert not _was_hit(_train_call(_net(), _x())[0])
    threads = gt.get_num_threads()
    try:
        gt.set_num_threads(threads + 1)  # the workspace is sized per thread
        assert not _was_hit(_train_call(_net(), _x())[0])
    finally:
        gt.set_num_threads(threads)


def test_a_change_to_graphtorchs_source_misses(monkeypatch):
    _train_call(_net(), _x())
    assert _was_hit(_train_call(_net(), _x())[0])
    monkeypatch.setattr(compiled, "graphtorch_source", lambda: "another compiler")
    assert not _was_hit(_train_call(_net(), _x())[0])


def test_the_source_fingerprint_follows_every_file(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    before = source_fingerprint(str(tmp_path / "pkg"))
    source_fingerprint.cache_clear()  # once per process normally: a test edits the files
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    assert source_fingerprint(str(tmp_path / "pkg")) != before
    source_fingerprint.cache_clear()
    (tmp_path / "pkg" / "b.py").write_text("")
    assert len({before, source_fingerprint(str(tmp_path / "pkg"))}) == 2
    assert len(compiled.graphtorch_source()) == 64


def _stored_entries() -> list[str]:
    return [p.name[:-4] for p in (cache_dir() / "executables").glob("*.gto")]


@pytest.mark.parametrize("damage", ["not json", "wrong format", "node index out of range", "negative offset"])
def test_a_damaged_entry_is_a_miss_and_is_replaced(damage):
    x = _x()
    _train_call(_net(), x)
    store = ObjectCache(cache_dir() / "executables")
    for key in _stored_entries():  # rewritten with a valid digest: only the contents are wrong
        doc = json.loads(store.load(key))
        if damage == "wrong format":
            doc["format"] = "pickle"
        elif damage == "node index out of range":
            doc["groups"][0]["nodes"] = [10 ** 6]
        elif damage == "negative offset":
            doc["plan"]["arena_bytes"] = -1
        store.store(key, b"{" if damage == "not json" else json.dumps(doc).encode())
    cm, out, _ = _train_call(_net(), x)
    assert not _was_hit(cm)
    np.testing.assert_array_equal(out, _train_call(_net(), x)[1])  # rebuilt, stored, and now a hit
    assert _was_hit(_train_call(_net(), x)[0])


def test_dump_dir_runs_the_stages(tmp_path):
    _train_call(_net(), _x())
    cm = gt.compile(_net(), dump_dir=str(tmp_path / "dumps"))
    cm(_x())
    assert not _was_hit(cm) and (tmp_path / "dumps" / "forward" / "optimized.txt").exists()


def test_a_host_call_node_from_the_cache_runs_its_numpy_kernel(monkeypatch):
    from graphtorch.runtime import host_calls

    x = gt.from_numpy(np.eye(3, dtype=np.float32) * 2 + 0.5)
    fn = lambda a: gt.inverse(a) * 2  # noqa: E731 - inverse has no generated kernel: a host call
    cold = gt.compile(fn)
    cold(x)
    expected = cold(x)._data.copy()
    monkeypatch.setattr(host_calls, "_functions", {})  # a new process: no callbacks registered yet
    hit = gt.compile(fn)
    hit(x)
    got = hit(x)
    assert all("from disk cache" in e.forward.artifacts.times_ms for e in hit.entries.values())
    np.testing.assert_array_equal(got._data, expected)
    np.testing.assert_allclose(got._data, np.linalg.inv(x._data) * 2, rtol=1e-6)
