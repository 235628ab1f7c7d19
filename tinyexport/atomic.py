"""The one atomic writer: files and directories appear under their final name complete, or not at all.

Everything is built beside its target (same filesystem) under a ``.tmp-<name>--pid<pid>-`` name and renamed
into place; a process killed midway leaves only that temp sibling, never a half-written target, and the
next write of the same target removes temp siblings whose process is gone. Environment faults while
writing (disk full, not writable, the temp dir removed under us) become one-line ``OperationError``s.
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

from tinyexport.errors import CheckError, OperationError, UserError, VanishedError
from tinyexport.faults import from_os_error

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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(target)}{os.getpid()}-", dir=target.parent))
    except OSError as err:
        raise from_os_error(err, target.parent) or err from None
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the finished directory is an ordinary one
    try:
        yield tmp
    except BaseException as err:
        vanished = not tmp.is_dir()
        shutil.rmtree(tmp, ignore_errors=True)
        fault = _fault(err, tmp, target, vanished)
        if fault is err:
            raise
        raise fault from err
    try:
        _publish_directory(tmp, target, policy)
    except OSError as err:
        vanished = not tmp.is_dir()
        shutil.rmtree(tmp, ignore_errors=True)
        fault = _fault(err, tmp, target, vanished)
        if fault is err:
            raise
        raise fault from err


def _temp_prefix(target: Path) -> str:
    return f".tmp-{target.name}--pid"


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete ``target``'s temp siblings left by processes that no longer exist (a ``kill -9``, a power
    cut); return them. Another live process's temp dir is never touched."""
    removed = []
    prefix = _temp_prefix(target)
    for tmp in Path(target).parent.glob(f"{prefix}*"):
        pid = tmp.name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _fault(err: BaseException, tmp: Path, target: Path, vanished: bool) -> BaseException:
    """What to raise for a failure while building ``target`` in ``tmp``: an environment fault as a
    one-line ``OperationError``, anything else (bad input, a failed check, Ctrl-C) unchanged."""
    if not isinstance(err, Exception) or isinstance(err, UserError | CheckError | OperationError | FileExistsError):
        return err
    if vanished:
        return VanishedError(
            f"the temporary directory {tmp} vanished while writing {target} (removed by another process or a "
            "temp cleaner); re-run"
        )
    own = getattr(err, "filename", None) is None or str(err.filename).startswith(str(tmp))  # type: ignore[attr-defined]
    return from_os_error(err, target if own else None) or err


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise from_os_error(err, path.parent) or err from None
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fault = _fault(err, tmp, path, vanished=False)
        if fault is err:
            raise
        raise fault from err


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: Path, data: Any) -> None:
    """Pretty JSON with a trailing newline."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
