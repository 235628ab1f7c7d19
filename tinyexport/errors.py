"""Exceptions the CLI turns into exit codes: ``UserError`` -> 2 (bad input), ``CheckError`` -> 1,
``OperationError`` -> 1 (the environment failed the work: disk full, permissions, memory, a killed child).

Library code raises specific subclasses of ``UserError`` (checkpoint, weights, artefact, cache
overflow...) so the edge can report them as one line without importing the modules that define them.
"""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input. The message is one line: what is wrong, the value seen, the fix."""


class CheckError(Exception):
    """Something tinyexport produced or measured failed a check (exit 1); the message is one line."""


class ParityError(CheckError):
    """A candidate is outside its tolerances. Carries the per-candidate rows that were checked."""

    def __init__(self, message: str, rows: list[Any]) -> None:
        super().__init__(message)
        self.rows = rows


class OperationError(Exception):
    """The environment made an operation fail (not the input): one line naming what failed, where, and
    what to do. Exit 1."""


class NoSpaceError(OperationError):
    """Not enough disk space (refused before writing, or ENOSPC/EFBIG/EDQUOT while writing)."""


class NotWritableError(OperationError):
    """A directory tinyexport must write into is not writable (EACCES, EPERM, EROFS) or not a directory."""


class VanishedError(OperationError):
    """A temporary directory was removed by someone else while tinyexport was writing into it."""


class ChildKilledError(OperationError):
    """A child process tinyexport started was killed by a signal (often the kernel's OOM killer)."""


class OutOfMemoryError(OperationError):
    """Not enough memory: predicted before starting, or a ``MemoryError`` while running."""
