"""Where tinyexport keeps what it materialises (default checkpoint, corpora, reference caches)."""

from __future__ import annotations

import os
from pathlib import Path

from tinyexport.errors import UserError


def cache_dir() -> Path:
    """``$TINYEXPORT_CACHE``, else ``$XDG_CACHE_HOME/tinyexport``, else ``~/.cache/tinyexport``."""
    explicit = os.environ.get("TINYEXPORT_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tinyexport"


def check_writable_file(path: Path | None, option: str) -> None:
    """Fail early (before hours of work) if an output file cannot be written."""
    if path is None:
        return
    parent = Path(path).expanduser().resolve().parent
    if Path(path).is_dir():
        raise UserError(f"{option} {path} is a directory; pass a file path")
    if not parent.exists():
        raise UserError(f"{option} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{option} {path}: directory {parent} is not writable")
