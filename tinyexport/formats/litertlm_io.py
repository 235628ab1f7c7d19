"""Where an artefact keeps its LiteRT-LM bundle: the file name and the manifest entry. Pure data.

Shared by the bundler (``converters/litertlm.py``, which writes it) and the LiteRT-LM engine wrapper
(``runners/litertlm_runner.py``, which reads it). The manifest's ``litertlm`` entry names the file
(listed with its sha256 under ``files`` like every other file) and records what went into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

BUNDLE_FILE = "model.litertlm"


def bundle_path(path: Path, manifest: Mapping[str, Any]) -> Path | None:
    """The artefact's ``.litertlm`` file when its manifest lists one."""
    entry = manifest.get("litertlm")
    if not isinstance(entry, dict) or entry.get("file") not in manifest.get("files", {}):
        return None
    return Path(path) / str(entry["file"])
