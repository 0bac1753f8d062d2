"""A disk cache of compiled objects, so a graph seen before loads in milliseconds.

The key hashes everything the machine code depends on: the module's IR text, the llvmlite and
LLVM versions, the CPU name and features, and the compile options. An entry is

    MAGIC | key (64 hex bytes) | sha256 of the object (32 bytes) | object length (8 bytes LE) | object

and is checked in full before use: an entry that is truncated, corrupt or written for another key
is ignored (and rebuilt by the caller). Writes go to a temporary file renamed into place, so a
reader never sees half an entry, even with several processes compiling at once.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
import tempfile
from pathlib import Path

MAGIC = b"GTOBJ1\n"
_HEADER = len(MAGIC) + 64 + 32 + 8


def cache_dir() -> Path:
    """GRAPHTORCH_CACHE_DIR if set, else the user's cache dir (XDG_CACHE_HOME or ~/.cache)/graphtorch."""
    env = os.environ.get("GRAPHTORCH_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphtorch"


class ObjectCache:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.hits = self.misses = self.rejected = 0

    @staticmethod
    def key(*parts: str) -> str:
        h = hashlib.sha256()
        for p in parts:
            data = p.encode()
            h.update(struct.pack("<Q", len(data)) + data)  # length-prefixed: ("ab","c") != ("a","bc")
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.gto"

    def load(self, key: str) -> bytes | None:
        try:
            blob = self.path(key).read_bytes()
        except OSError:
            self.misses += 1
            return None
        obj = _unpack(blob, key)
        if obj is None:
            self.rejected += 1
            self.misses += 1
            return None
        self.hits += 1
        return obj

    def store(self, key: str, obj: bytes) -> None:
        """Best effort: a cache that cannot be written (read-only home, full disk) is not an error."""
        blob = MAGIC + key.encode() + hashlib.sha256(obj).digest() + struct.pack("<Q", len(obj)) + obj
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".gto")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(blob)
                os.replace(tmp, self.path(key))
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass

    def discard(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except OSError:
            pass


def _unpack(blob: bytes, key: str) -> bytes | None:
    if len(blob) < _HEADER or not blob.startswith(MAGIC):
        return None
    at = len(MAGIC)
    stored_key, digest = blob[at:at + 64], blob[at + 64:at + 96]
    (length,) = struct.unpack("<Q", blob[at + 96:_HEADER])
    obj = blob[_HEADER:]
    if stored_key != key.encode() or length != len(obj) or hashlib.sha256(obj).digest() != digest:
        return None
    return obj


@functools.cache
def source_fingerprint(*directories: str) -> str:
    """A hash of every .py file under `directories` (names and contents): a cached artifact that
    was produced by code keys on it, so any change to that code misses. Computed once per process
    (a few ms for graphtorch's ~2 MB of source)."""
    h = hashlib.sha256()
    for directory in directories:
        root = Path(directory)
        for path in sorted(root.rglob("*.py")):
            data = path.read_bytes()
            name = path.relative_to(root).as_posix().encode()
            h.update(struct.pack("<QQ", len(name), len(data)) + name + data)
    return h.hexdigest()


_default: ObjectCache | None = None


def default_cache() -> ObjectCache:
    """The process-wide cache; follows GRAPHTORCH_CACHE_DIR if it changes."""
    global _default
    if _default is None or _default.directory != cache_dir():
        _default = ObjectCache(cache_dir())
    return _default
