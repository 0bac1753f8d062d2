"""Compiler errors: a stable code, the user's file:line, what happened, and a hint."""

from __future__ import annotations


class GraphtorchCompileError(Exception):
    def __init__(self, code: str, message: str, loc: str | None = None, hint: str | None = None,
                 stage: str | None = None):
        self.code, self.message, self.loc, self.hint, self.stage = code, message, loc, hint, stage
        where = f" at {loc}" if loc else ""
        text = f"{code}{where}: {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)
