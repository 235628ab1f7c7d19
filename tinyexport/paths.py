"""Where tinyexport keeps what it materialises (default checkpoint, corpora, reference caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$TINYEXPORT_CACHE``, else ``$XDG_CACHE_HOME/tinyexport``, else ``~/.cache/tinyexport``."""
    explicit = os.environ.get("TINYEXPORT_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tinyexport"
