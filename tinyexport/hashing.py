"""Content hashes: the one sha256 of a file used by manifests, checkpoint fingerprints and caches, and the
size/sha256/mtime records that let a cache entry be checked cheaply on every use."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-sized blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Integrity:
    """The outcome of checking a directory's files against their records."""

    problem: str | None  # None: every file is as recorded
    records: dict[str, dict[str, Any]]  # the records, with mtimes refreshed where the content was re-hashed
    refreshed: bool  # some file was re-hashed (its mtime had changed) and matched


def record_files(directory: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Name -> {bytes, sha256, mtime_ns} of files in ``directory`` (written next to cached data)."""
    out = {}
    for name in sorted(names):
        path = Path(directory) / name
        stat = path.stat()
        out[name] = {"bytes": stat.st_size, "sha256": sha256_file(path), "mtime_ns": stat.st_mtime_ns}
    return out


def verify_files(directory: Path, records: Mapping[str, Any]) -> Integrity:
    """Check files against ``record_files`` output: the size always (cheap); the full sha256 only of a
    file whose mtime changed since it was recorded (a write that kept both size and mtime goes unseen)."""
    fresh: dict[str, dict[str, Any]] = {}
    refreshed = False
    for name, record in records.items():
        path = Path(directory) / name
        if not isinstance(record, dict) or not {"bytes", "sha256", "mtime_ns"} <= set(record):
            return Integrity(f"the record of {name} is malformed", dict(records), False)
        try:
            stat = path.stat()
        except OSError:
            return Integrity(f"{name} is missing", dict(records), False)
        if stat.st_size != record["bytes"]:
            return Integrity(f"{name} is {stat.st_size} bytes, {record['bytes']} were written", dict(records), False)
        if stat.st_mtime_ns != record["mtime_ns"]:
            if sha256_file(path) != record["sha256"]:
                return Integrity(
                    f"{name} was modified (its sha256 differs from the one recorded)", dict(records), False
                )
            record = {**record, "mtime_ns": stat.st_mtime_ns}
            refreshed = True
        fresh[name] = record
    return Integrity(None, fresh, refreshed)
