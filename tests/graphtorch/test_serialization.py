"""graphtorch.save / load: round trips, hostile files refused with clear errors, atomic saves."""

import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
from collections import OrderedDict

import numpy as np
import pytest
import torch

import graphtorch
from graphtorch import serialization
from graphtorch.serialization import CheckpointError, load, save


def round_trip(obj):
    buf = io.BytesIO()
    save(obj, buf)
    buf.seek(0)
    return load(buf)


def assert_tensor_equal(a, b):
    assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and a.requires_grad == b.requires_grad
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


@pytest.mark.parametrize("dtype", graphtorch.dtypes.ALL, ids=lambda d: d.name)
def test_every_dtype_round_trips(dtype):
    values = graphtorch.tensor([[0, 1, 2], [3, 250, 7]]).to(dtype)
    for t in (values, values[0, 1], values[:0]):  # 2-d, 0-d, empty
        assert_tensor_equal(round_trip(t), t)


def test_special_floats_and_non_contiguous_views():
    x = graphtorch.tensor([float("nan"), float("inf"), -0.0, 1e-40], dtype=graphtorch.float32)
    out = round_trip(x)
    np.testing.assert_array_equal(out.numpy(), x.numpy())
    assert np.signbit(out.numpy()[2])
    view = graphtorch.arange(24.0).reshape(4, 6)[::2, 1::3].t()
    assert_tensor_equal(round_trip(view), view.clone())


def test_nested_state_dicts_and_python_values():
    obj = {
        "model": OrderedDict(weight=graphtorch.randn(3, 2), bias=graphtorch.zeros(3)),
        "epoch": 7, "best": 0.1 + 0.2, "name": "lenet", "done": False, "none": None,
        "history": [1.5, float("inf"), (2, "x")], "dtype": graphtorch.float16, "size": graphtorch.Size([2, 3]),
        3: "int key", (1, 2): "tuple key",
    }
    out = round_trip(obj)
    assert list(out) == list(obj) and type(out["model"]) is OrderedDict
    for k in ("epoch", "best", "name", "done", "none", "history", "dtype", 3, (1, 2)):
        assert out[k] == obj[k] and type(out[k]) is type(obj[k])
    assert type(out["size"]) is graphtorch.Size and out["size"] == obj["size"]
    for k in obj["model"]:
        assert_tensor_equal(out["model"][k], obj["model"][k])


def test_optimizer_state_dict_keeps_int_keys_and_loads_back():
    p = graphtorch.ones(3, requires_grad=True)
    opt = graphtorch.optim.Adam([p], lr=0.1)
    (p * p).sum().backward()
    opt.step()
    saved = opt.state_dict()
    out = round_trip(saved)
    assert list(out["state"]) == [0] and out["param_groups"][0]["betas"] == (0.9, 0.999)
    assert out["param_groups"][0]["params"] == [0]
    assert_tensor_equal(out["state"][0]["exp_avg"], saved["state"][0]["exp_avg"])
    fresh = graphtorch.optim.Adam([graphtorch.ones(3, requires_grad=True)], lr=0.5)
    fresh.load_state_dict(out)
    assert fresh.param_groups[0]["lr"] == 0.1


def test_parameters_and_requires_grad_survive():
    from graphtorch.nn.parameter import Parameter

    w = Parameter(graphtorch.randn(2, 2))
    frozen = Parameter(graphtorch.ones(2), requires_grad=False)
    leaf = graphtorch.ones(2, requires_grad=True)
    out = round_trip([w, frozen, leaf, leaf])
    assert type(out[0]) is Parameter and out[0].requires_grad and out[0].is_leaf
    assert type(out[1]) is Parameter and not out[1].requires_grad
    assert type(out[2]) is graphtorch.Tensor and out[2].requires_grad and out[2].is_leaf
    assert out[2] is out[3]  # one object saved twice stays one object (tied weights)


def test_paths_and_file_objects(tmp_path):
    obj = {"w": graphtorch.arange(5)}
    path = tmp_path / "ckpt.pt"
    save(obj, path)
    assert_tensor_equal(load(path)["w"], obj["w"])
    assert_tensor_equal(load(str(path), map_location="cpu")["w"], obj["w"])
    with open(tmp_path / "f.pt", "wb") as f:
        save(obj, f)
    with open(tmp_path / "f.pt", "rb") as f:
        assert_tensor_equal(load(f, weights_only=False)["w"], obj["w"])
    assert (tmp_path / "f.pt").read_bytes() == path.read_bytes()
    assert graphtorch.save is save and graphtorch.load is load


def test_data_is_aligned_and_loaded_tensors_are_writable():
    buf = io.BytesIO()
    save([graphtorch.ones(3, dtype=graphtorch.int8), graphtorch.ones(2)], buf)
    header = _header_of(buf.getvalue())
    assert [e["offset"] % serialization.ALIGN for e in header["tensors"]] == [0, 0]
    assert (len(buf.getvalue()) - header["data_size"]) % serialization.ALIGN == 0
    t = round_trip(graphtorch.zeros(2))
    t.add_(1)
    assert t.tolist() == [1.0, 1.0]


def test_unsupported_objects_are_named():
    with pytest.raises(TypeError, match=r"cannot store obj\['f'\] of type function"):
        save({"f": lambda: 0}, io.BytesIO())
    with pytest.raises(TypeError, match="cannot store obj of type set"):
        save({1, 2}, io.BytesIO())


# ---------------------------------------------------------------- hostile files
def _header_of(blob: bytes) -> dict:
    _, _, n = serialization._PREFIX.unpack_from(blob)
    return json.loads(blob[serialization._PREFIX.size:serialization._PREFIX.size + n])


def craft(header: dict, data: bytes, header_len: int | None = None, version: int = 1) -> io.BytesIO:
    raw = json.dumps(header).encode()
    prefix = serialization._PREFIX.pack(serialization.MAGIC, version, len(raw) if header_len is None else header_len)
    return io.BytesIO(prefix + raw + data)


def one_tensor(**overrides) -> dict:
    entry = {"dtype": "float32", "shape": [2, 3], "offset": 0, "length": 24, **overrides}
    return {"data_size": 24, "tensors": [entry], "root": {"t": "tensor", "index": 0}}


def test_the_crafted_baseline_loads():
    out = load(craft(one_tensor(), np.arange(6, dtype="<f4").tobytes()))
    assert out.tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("make, message", [
    (lambda: craft({**one_tensor(), "data_size": 1200}, bytes(800)),
     "checkpoint is truncated: header says 1200 bytes of tensor data, file has 800"),
    (lambda: craft(one_tensor(offset=8), bytes(24)), r"tensor 0: bytes 8..32 lie outside the 24-byte data section"),
    (lambda: craft(one_tensor(length=20), bytes(24)), r"shape \[2, 3\] of float32 needs 24 bytes, header says 20"),
    (lambda: craft(one_tensor(dtype="complex64"), bytes(24)), "unknown dtype 'complex64'"),
    (lambda: craft(one_tensor(shape=[2, -3]), bytes(24)), "shape must be a list of non-negative ints"),
    (lambda: craft(one_tensor(), bytes(24), header_len=2**62), "header length 4611686018427387904 runs past the end"),
    (lambda: craft(one_tensor(), bytes(30)), "6 unexpected bytes after its tensor data"),
    (lambda: craft(one_tensor(), bytes(24), version=9), "format version 9 is not supported"),
    (lambda: craft({"data_size": 0}, b""), "header must be an object with"),
    (lambda: craft({**one_tensor(), "root": {"t": "tensor", "index": 3}}, bytes(24)),
     "tensor index 3 is not one of the 1 tensors"),
    (lambda: craft({**one_tensor(), "root": {"t": "pickle", "v": "cos\nsystem"}}, bytes(24)),
     "unknown node tag 'pickle'"),
    (lambda: craft({**one_tensor(), "root": {"t": "int", "v": "7"}}, bytes(24)), "int node holds '7'"),
    (lambda: craft({**one_tensor(), "root": {"t": "dict", "items": [[{"t": "list", "items": []},
                                                                     {"t": "none"}]]}}, bytes(24)),
     "is not hashable"),
    (lambda: io.BytesIO(serialization.MAGIC + b"\x01"), "checkpoint is truncated"),
    (lambda: io.BytesIO(b"hello world, not a checkpoint"), "not a graphtorch checkpoint: the file starts with"),
])
def test_hostile_files_are_refused_with_clear_errors(make, message):
    with pytest.raises(CheckpointError, match=message):
        load(make())


def test_overlapping_ranges_are_refused():
    entries = [{"dtype": "float32", "shape": [4], "offset": 0, "length": 16},
               {"dtype": "int32", "shape": [2], "offset": 8, "length": 8}]
    header = {"data_size": 16, "tensors": entries, "root": {"t": "list", "items": []}}
    with pytest.raises(CheckpointError, match="tensors 0 and 1 overlap"):
        load(craft(header, bytes(16)))


def test_invalid_json_and_deep_nesting():
    raw = b"{not json"
    blob = serialization._PREFIX.pack(serialization.MAGIC, 1, len(raw)) + raw
    with pytest.raises(CheckpointError, match="header is not valid JSON"):
        load(io.BytesIO(blob))
    deep = {"t": "none"}
    for _ in range(300):
        deep = {"t": "list", "items": [deep]}
    with pytest.raises(CheckpointError, match="nested more than"):
        load(craft({"data_size": 0, "tensors": [], "root": deep}, b""))


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("writer", ["zip", "legacy", "pickle"])
def test_pickles_are_refused_without_running_them(tmp_path, writer):
    path = tmp_path / "evil.pt"
    if writer == "zip":
        torch.save({"w": torch.ones(2)}, path)
    elif writer == "legacy":
        torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(CheckpointError, match="graphtorch checkpoints are not pickles.*will not execute code"):
        load(path)


# ---------------------------------------------------------------- atomic saves
def test_a_failing_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save({"w": graphtorch.ones(4)}, path)
    before = path.read_bytes()

    def half_then_fail(f, header, arrays):
        f.write(header[: len(header) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(serialization, "_write_payload", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save({"w": graphtorch.zeros(4)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pt"]  # the temporary file is cleaned up


def test_a_save_killed_mid_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.pt"
    save({"w": graphtorch.ones(4)}, path)
    child = textwrap.dedent(f"""
        import sys, time
        import graphtorch
        from graphtorch import serialization

        real = serialization._write_payload
        def slow(f, header, arrays):
            f.write(serialization._PREFIX.pack(serialization.MAGIC, 1, len(header)))
            f.flush()
            print("halfway", flush=True)
            time.sleep(60)
        serialization._write_payload = slow
        graphtorch.save({{"w": graphtorch.zeros(1000)}}, {str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "halfway"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert load(path)["w"].tolist() == [1.0] * 4
    assert any(name.endswith(".tmp") for name in os.listdir(tmp_path))  # the kill really hit mid-write


def test_prefix_layout_is_documented():
    blob = io.BytesIO()
    save(None, blob)
    magic, version, n = struct.unpack_from("<8sIQ", blob.getvalue())
    assert magic == b"\x89GTCKPT\n" and version == 1 and (20 + n) % 64 == 0


def test_a_module_state_dict_round_trips_through_a_file(tmp_path):
    from graphtorch import nn

    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    graphtorch.save(net.state_dict(), tmp_path / "net.pt")
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    loaded = graphtorch.load(tmp_path / "net.pt")
    assert list(loaded) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    other.load_state_dict(loaded)
    x = graphtorch.randn(5, 3)
    assert graphtorch.equal(net(x), other(x))
