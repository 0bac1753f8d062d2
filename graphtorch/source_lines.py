"""The text of a user's line from a node's `loc` ("lenet.py:12": the tracer keeps only the file's name)."""

from __future__ import annotations

import linecache
import os
import sys


def source_line(loc: str | None, hints: tuple[str, ...] = ()) -> str | None:
    """The stripped text at `loc`, from a loaded module's file or one of `hints` (paths) with that
    name; None when no such file is known."""
    if not loc or ":" not in loc:
        return None
    name, _, line = loc.rpartition(":")
    for path in (*hints, *_module_files()):
        if os.path.basename(path) == name:
            text = linecache.getline(path, int(line)).strip()
            if text:
                return text
    return None


def _module_files() -> list[str]:
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    files = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
    return [f for f in [main, *files] if isinstance(f, str)]


def code_file(fn) -> tuple[str, ...]:
    """The file `fn` (a function, bound method or module's forward) was defined in, as a hint."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return (code.co_filename,) if code is not None else ()
