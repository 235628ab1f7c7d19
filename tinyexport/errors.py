"""Exceptions the CLI turns into exit codes: ``UserError`` -> 2 (bad input), ``CheckError`` -> 1.

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
