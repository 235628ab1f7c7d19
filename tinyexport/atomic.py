"""The one atomic writer: files and directories appear under their final name complete, or not at all.

Everything is built beside its target (same filesystem) under a ``.tmp-`` name and renamed into place;
a process killed midway leaves only that temp sibling, never a half-written target.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

Existing = Literal["error", "replace", "keep"]


@contextlib.contextmanager
def atomic_directory(target: Path, *, replace: bool = False, existing: Existing | None = None) -> Iterator[Path]:
    """Yield a temp dir beside ``target``; on success move it to ``target``, on any failure delete it.

    When ``target`` already exists at publication: ``existing="error"`` (default) raises
    ``FileExistsError``; ``"replace"`` (or ``replace=True``) swaps it out, removing the old one only
    after the new one is in place; ``"keep"`` keeps it (another process published the same content
    first) and discards the new one.
    """
    policy: Existing = existing or ("replace" if replace else "error")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the finished directory is an ordinary one
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish_directory(tmp, target, policy)


def _publish_directory(tmp: Path, target: Path, policy: Existing) -> None:
    old = None
    if target.exists():
        if policy != "replace":
            shutil.rmtree(tmp, ignore_errors=True)
            if policy == "keep":
                return
            raise FileExistsError(str(target))
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        try:
            os.rename(target, old)
        except FileNotFoundError:  # another process moved it first
            old = None
    try:
        os.rename(tmp, target)
    except OSError:
        if not (policy == "keep" or target.exists()):
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # someone else published it in between: theirs stays
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write (by any writer); renamed onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Pretty JSON with a trailing newline."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
