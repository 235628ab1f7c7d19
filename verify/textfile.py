"""A text file to evaluate on: strictly UTF-8, not empty, not binary; identified by its sha256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tinyexport.errors import UserError


class TextFileError(UserError, ValueError):
    """The text to evaluate on is missing, empty or not UTF-8 text."""


@dataclass(frozen=True)
class EvalText:
    path: Path
    text: str
    sha256: str  # of the file's bytes


def read_text_file(path: Path) -> EvalText:
    path = Path(path)
    if not path.is_file():
        raise TextFileError(f"text file {path} does not exist; pass --text FILE with a UTF-8 text file")
    data = path.read_bytes()
    if b"\x00" in data:
        raise TextFileError(f"{path} is a binary file (it contains NUL bytes); pass a UTF-8 text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TextFileError(
            f"{path} is not UTF-8 text (invalid byte 0x{data[err.start]:02x} at offset {err.start}); "
            "pass a UTF-8 text file"
        ) from None
    if not text.strip():
        raise TextFileError(f"{path} is empty; pass a text file with content")
    return EvalText(path.resolve(), text, hashlib.sha256(data).hexdigest())
