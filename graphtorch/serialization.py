"""graphtorch.save / graphtorch.load: checkpoints that never execute code.

torch.save pickles, and unpickling a file runs whatever code it names. A graphtorch checkpoint
is data only, in the spirit of safetensors:

    magic  b"\\x89GTCKPT\\n"   8 bytes (the high first byte catches text-mode mangling)
    version                 4 bytes, little-endian uint32
    header length           8 bytes, little-endian uint64
    header                  JSON, UTF-8, padded with spaces so the data starts 64-byte aligned
    data                    the tensors' raw little-endian bytes, each 64-byte aligned

The header is {"data_size": N, "tensors": [{"dtype", "shape", "offset", "length"}], "root": node}:
`root` describes the saved object as a tree of tagged nodes (containers, Python scalars, tensor
references by index), so int dict keys, tuples and OrderedDicts come back as they went in.
load() validates every field against the file before it reads a byte of tensor data.

save() to a path is atomic: it writes a temporary file in the same directory, fsyncs it and
renames it over the target, so an interrupted save leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from collections import OrderedDict
from typing import IO, Any

import numpy as np

from . import dtypes as dt
from .compiler.dtypes import from_name
from .tensor import Size, Tensor

__all__ = ["save", "load", "CheckpointError"]

MAGIC = b"\x89GTCKPT\n"
VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")  # magic, version, header length
_MAX_DEPTH = 200  # nesting deeper than this is not a state dict; refusing it keeps recursion bounded

FileLike = str | os.PathLike | IO[bytes]


class CheckpointError(RuntimeError):
    """The file is not a valid graphtorch checkpoint."""


# ---------------------------------------------------------------------------------------------- save
def save(obj: Any, f: FileLike) -> None:
    """Write `obj` (tensors, Parameters, and dicts/lists/tuples of them and of None, bool, int,
    float, str, dtypes) to a path or a binary file object."""
    arrays: list[np.ndarray] = []
    root = _Encoder(arrays).node(obj, "obj")
    entries, offset = [], 0
    for a in arrays:
        entries.append({"dtype": dt.from_numpy(a.dtype).name, "shape": list(a.shape), "offset": offset,
                        "length": a.nbytes})
        offset = _aligned(offset + a.nbytes)
    header = json.dumps({"data_size": offset, "tensors": entries, "root": root}, separators=(",", ":")).encode()
    header += b" " * (_aligned(_PREFIX.size + len(header)) - _PREFIX.size - len(header))
    if isinstance(f, (str, os.PathLike)):
        _atomic_write(os.fspath(f), header, arrays)
    else:
        _write_payload(f, header, arrays)


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


class _Encoder:
    """Turns an object into header nodes, collecting tensor data; a tensor object that appears
    twice is stored once and comes back as one object (tied weights stay tied)."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.seen: dict[int, int] = {}
        self.keep: list[Tensor] = []  # keeps ids in `seen` from being reused by other objects

    def node(self, obj: Any, where: str, depth: int = 0) -> dict:
        if depth > _MAX_DEPTH:
            raise ValueError(f"graphtorch.save: {where} is nested more than {_MAX_DEPTH} levels deep")
        if isinstance(obj, Tensor):
            return self.tensor(obj, where)
        if obj is None:
            return {"t": "none"}
        if isinstance(obj, bool):
            return {"t": "bool", "v": obj}
        if isinstance(obj, int):
            return {"t": "int", "v": int(obj)}
        if isinstance(obj, float):
            return {"t": "float", "v": float(obj).hex()}  # exact, and covers inf and nan
        if isinstance(obj, str):
            return {"t": "str", "v": obj}
        if isinstance(obj, dt.DType):
            return {"t": "dtype", "v": obj.name}
        if isinstance(obj, dict) and type(obj) in (dict, OrderedDict):
            items = [[self.node(k, f"a key of {where}", depth + 1), self.node(v, f"{where}[{k!r}]", depth + 1)]
                     for k, v in obj.items()]
            return {"t": "odict" if type(obj) is OrderedDict else "dict", "items": items}
        if type(obj) in (list, tuple, Size):
            kind = {list: "list", tuple: "tuple", Size: "size"}[type(obj)]
            return {"t": kind, "items": [self.node(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]}
        raise TypeError(f"graphtorch.save cannot store {where} of type {type(obj).__qualname__}: checkpoints hold "
                        "tensors, None, bool, int, float, str, dtypes, and dicts, lists and tuples of them "
                        "(they never hold code, so arbitrary objects cannot be saved)")

    def tensor(self, t: Tensor, where: str) -> dict:
        if t._data is None:
            raise TypeError(f"graphtorch.save cannot store {where}: it is a traced value without data")
        if id(t) not in self.seen:
            self.seen[id(t)] = len(self.arrays)
            self.keep.append(t)
            # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
            little = t._data.astype(t._data.dtype.newbyteorder("<"), order="C", copy=False)
            self.arrays.append(little)
        return {"t": "tensor", "index": self.seen[id(t)], "requires_grad": t.requires_grad,
                "parameter": _is_parameter(t)}


def _write_payload(f: IO[bytes], header: bytes, arrays: list[np.ndarray]) -> None:
    f.write(_PREFIX.pack(MAGIC, VERSION, len(header)))
    f.write(header)
    for a in arrays:
        f.write(a.data)
        f.write(b"\0" * (_aligned(a.nbytes) - a.nbytes))


def _atomic_write(path: str, header: bytes, arrays: list[np.ndarray]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never clobber a stranger's file; mode 0o666 lets the umask decide, as open() would
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_payload(f, header, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)  # make the rename itself durable


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform opens directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _is_parameter(t: Tensor) -> bool:
    param = _parameter_class()
    return param is not None and isinstance(t, param)


def _parameter_class():
    try:
        from .nn.parameter import Parameter
    except ImportError:  # no nn package: no Parameters exist
        return None
    return Parameter


# ---------------------------------------------------------------------------------------------- load
def load(f: FileLike, map_location=None, weights_only: bool = True, **kwargs) -> Any:
    """Read a checkpoint written by graphtorch.save. Tensors load on the CPU. `weights_only` is
    accepted for torch compatibility: loading never runs code whatever its value."""
    _check_map_location(map_location)
    if kwargs:
        raise TypeError(f"graphtorch.load got unexpected keyword arguments {sorted(kwargs)}")
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            blob = fh.read()
    else:
        blob = f.read()
    return _parse(memoryview(blob))


def _check_map_location(map_location) -> None:
    if map_location is None or callable(map_location) or isinstance(map_location, dict):
        return  # CPU is the only place tensors can live here
    from .tensor import device

    if device(map_location).type != "cpu":
        raise RuntimeError("Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is "
                           "False. If you are running on a CPU-only machine, please use torch.load with "
                           "map_location=torch.device('cpu') to map your storages to the CPU.")


def _parse(blob: memoryview) -> Any:
    _refuse_foreign(bytes(blob[:8]))
    if len(blob) < _PREFIX.size:
        raise CheckpointError(f"checkpoint is truncated: {len(blob)} bytes, shorter than the {_PREFIX.size}-byte "
                              "prefix")
    _, version, header_len = _PREFIX.unpack_from(blob)
    if version != VERSION:
        raise CheckpointError(f"checkpoint format version {version} is not supported (this graphtorch reads "
                              f"version {VERSION})")
    data_start = _PREFIX.size + header_len
    if data_start > len(blob):
        raise CheckpointError(f"checkpoint header length {header_len} runs past the end of the file "
                              f"({len(blob)} bytes)")
    header = _read_header(blob[_PREFIX.size:data_start])
    data = blob[data_start:]
    tensors = _check_tensor_table(header, len(data))
    arrays = [_read_array(data, entry) for entry in tensors]
    return _Decoder(arrays).value(header["root"], "root", 0)


def _refuse_foreign(head: bytes) -> None:
    if head.startswith(MAGIC):
        return
    if head.startswith(b"PK\x03\x04"):
        what = "a zip archive, the format torch.save writes (pickled objects inside)"
    elif head[:1] == b"\x80":  # the PROTO opcode every pickle since protocol 2 starts with
        what = "a Python pickle"
    else:
        raise CheckpointError(f"not a graphtorch checkpoint: the file starts with {head!r}, expected the magic "
                              f"bytes {MAGIC!r}")
    raise CheckpointError(f"not a graphtorch checkpoint: this file is {what}. graphtorch checkpoints are not "
                          "pickles, and graphtorch will not execute code from files; load it with PyTorch in a "
                          "trusted environment and re-save its tensors with graphtorch.save")


def _read_header(raw: memoryview) -> dict:
    try:
        header = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint header is not valid JSON: {e}") from None
    except RecursionError:
        raise CheckpointError("checkpoint header is nested too deeply") from None
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list) or "root" not in header:
        raise CheckpointError("checkpoint header must be an object with 'data_size', 'tensors' and 'root'")
    return header


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_tensor_table(header: dict, available: int) -> list[dict]:
    """Every entry names a known dtype, a shape whose size matches its byte length, and a range
    inside the data section that overlaps no other."""
    data_size = header.get("data_size")
    if not _is_count(data_size):
        raise CheckpointError(f"checkpoint header has an invalid data_size {data_size!r}")
    if data_size > available:
        raise CheckpointError(f"checkpoint is truncated: header says {data_size} bytes of tensor data, "
                              f"file has {available}")
    if data_size < available:
        raise CheckpointError(f"checkpoint has {available - data_size} unexpected bytes after its tensor data")
    ranges = []
    for i, e in enumerate(header["tensors"]):
        if not isinstance(e, dict):
            raise CheckpointError(f"tensor {i}: entry must be an object, got {e!r}")
        dtype = _dtype_named(e.get("dtype"), f"tensor {i}")
        shape, offset, length = e.get("shape"), e.get("offset"), e.get("length")
        if not isinstance(shape, list) or not all(_is_count(s) for s in shape):
            raise CheckpointError(f"tensor {i}: shape must be a list of non-negative ints, got {shape!r}")
        if not _is_count(offset) or not _is_count(length):
            raise CheckpointError(f"tensor {i}: offset and length must be non-negative ints, got {offset!r}, "
                                  f"{length!r}")
        expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if expected != length:
            raise CheckpointError(f"tensor {i}: shape {shape} of {dtype.name} needs {expected} bytes, header says "
                                  f"{length}")
        if offset + length > data_size:
            raise CheckpointError(f"tensor {i}: bytes {offset}..{offset + length} lie outside the {data_size}-byte "
                                  "data section")
        if length:
            ranges.append((offset, offset + length, i))
    ranges.sort()
    for (_, end, a), (start, _, b) in zip(ranges, ranges[1:]):
        if start < end:
            raise CheckpointError(f"tensors {a} and {b} overlap in the data section")
    return header["tensors"]


def _dtype_named(name, where: str) -> dt.DType:
    try:
        return from_name(name)
    except (KeyError, TypeError):
        known = ", ".join(d.name for d in dt.ALL)
        raise CheckpointError(f"{where}: unknown dtype {name!r} (known: {known})") from None


def _read_array(data: memoryview, entry: dict) -> np.ndarray:
    dtype = from_name(entry["dtype"]).np
    raw = data[entry["offset"]:entry["offset"] + entry["length"]]
    little = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    return little.astype(dtype).reshape(entry["shape"])  # astype copies: tensors own writable memory


class _Decoder:
    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.tensors: dict[int, Tensor] = {}

    def value(self, node, where: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise CheckpointError(f"checkpoint object tree is nested more than {_MAX_DEPTH} levels deep")
        if not isinstance(node, dict) or not isinstance(node.get("t"), str):
            raise CheckpointError(f"{where}: expected a node object with a 't' tag, got {node!r:.80}")
        kind = node["t"]
        if kind == "none":
            return None
        if kind in _SCALARS:
            return self.scalar(node, kind, where)
        if kind == "tensor":
            return self.tensor(node, where)
        if kind not in ("dict", "odict", *_SEQUENCES):
            raise CheckpointError(f"{where}: unknown node tag {kind!r}")
        items = node.get("items")
        if not isinstance(items, list):
            raise CheckpointError(f"{where}: {kind} node needs an 'items' list")
        if kind in _SEQUENCES:
            return _SEQUENCES[kind](self.value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(items))
        return self.mapping(items, kind, where, depth)

    def scalar(self, node: dict, kind: str, where: str) -> Any:
        v = node.get("v")
        if not isinstance(v, _SCALARS[kind]) or (kind == "int" and isinstance(v, bool)):
            raise CheckpointError(f"{where}: {kind} node holds {v!r}")
        if kind == "float":
            try:
                return float.fromhex(v)
            except ValueError:
                raise CheckpointError(f"{where}: {v!r} is not a hex float") from None
        if kind == "dtype":
            return _dtype_named(v, where)
        return v

    def mapping(self, items: list, kind: str, where: str, depth: int) -> dict:
        out = OrderedDict() if kind == "odict" else {}
        for pair in items:
            if not isinstance(pair, list) or len(pair) != 2:
                raise CheckpointError(f"{where}: dict items must be [key, value] pairs")
            key = self.value(pair[0], f"a key of {where}", depth + 1)
            try:
                out[key] = self.value(pair[1], f"{where}[{key!r}]", depth + 1)
            except TypeError:
                raise CheckpointError(f"{where}: key {key!r} is not hashable") from None
        return out

    def tensor(self, node: dict, where: str) -> Tensor:
        index, requires_grad = node.get("index"), node.get("requires_grad", False)
        if not _is_count(index) or index >= len(self.arrays):
            raise CheckpointError(f"{where}: tensor index {index!r} is not one of the {len(self.arrays)} tensors")
        if not isinstance(requires_grad, bool):
            raise CheckpointError(f"{where}: requires_grad must be a bool")
        if index not in self.tensors:
            t = Tensor._wrap(self.arrays[index])
            param = _parameter_class() if node.get("parameter") is True else None
            if param is not None:
                t = param(t, requires_grad=requires_grad)
            elif requires_grad:
                t.requires_grad = True
            self.tensors[index] = t
        return self.tensors[index]


_SCALARS = {"bool": bool, "int": int, "float": str, "str": str, "dtype": str}
_SEQUENCES = {"list": list, "tuple": tuple, "size": Size}
