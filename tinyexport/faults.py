"""Faults of the environment as one-line ``OperationError``s: what failed, where, and what to do.

Library code calls these where it knows what it was writing (``atomic`` does for every artefact,
cache entry and report); the CLI edge maps whatever still escapes (a bare ``OSError`` of a known
errno, a ``MemoryError``) through the same functions, so every such fault reads the same way.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import tempfile
from pathlib import Path

from tinyexport.errors import NoSpaceError, NotWritableError, OperationError
from tinyexport.paths import cache_dir

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
NOT_WRITABLE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# Text a native library (protobuf, flatbuffers, MLIR) puts in its own exception when write(2) fails.
_NO_SPACE_TEXT = ("No space left on device", "File too large", "Disk quota exceeded")


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def in_cache(path: Path) -> bool:
    try:
        Path(path).resolve().relative_to(cache_dir().resolve())
    except (ValueError, OSError):
        return False
    return True


def fix_for(path: Path, option: str | None = None) -> str:
    """What to do about a directory tinyexport cannot write: its own cache has an env var, outputs an option."""
    if in_cache(path):
        return f"set TINYEXPORT_CACHE to a writable directory with room (now {cache_dir()})"
    return f"pick another {option}" if option else "pick another output path"


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (what a not-yet-created output directory lives on)."""
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return 0


def check_free_space(directory: Path, need: int, what: str, option: str | None = None) -> None:
    """Refuse before writing ``need`` bytes under ``directory`` when its file system has less free."""
    free = free_bytes(directory)
    if need > free:
        raise NoSpaceError(
            f"{what} needs about {mb(need)} in {nearest_existing(directory)} but only {mb(free)} is free; "
            f"free {mb(need - free)} there or {fix_for(directory, option)}"
        )


def file_size_limit() -> int | None:
    """This process's ``RLIMIT_FSIZE`` soft limit in bytes (``ulimit -f``), or None when unlimited."""
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def check_file_size_limit(largest: int, what: str) -> None:
    """Refuse before writing a file of ``largest`` bytes that ``ulimit -f`` would cut short (native
    writers such as LLVM's abort the whole process on EFBIG, so this must be caught before they run)."""
    limit = file_size_limit()
    if limit is not None and largest > limit:
        raise NoSpaceError(
            f"{what} writes a file of about {mb(largest)} but this process may write files of at most "
            f"{mb(limit)} (ulimit -f); raise the limit (ulimit -f unlimited) and re-run"
        )


def check_writable_dir(directory: Path, what: str, option: str | None = None) -> None:
    """Fail early when ``directory`` (or the closest existing ancestor it would be created in) cannot
    take a new entry: a real probe (create and remove a temp dir), so EROFS and ACLs count too."""
    base = nearest_existing(directory)
    if not base.is_dir():
        raise NotWritableError(
            f"cannot write {what} under {directory}: {base} is a file, not a directory; {fix_for(directory, option)}"
        )
    try:
        probe = tempfile.mkdtemp(prefix=".tmp-probe-", dir=base)
    except OSError as err:
        raise from_os_error(err, Path(directory), what, option) or err from None
    os.rmdir(probe)


def from_os_error(
    err: BaseException, where: Path | None, what: str = "", option: str | None = None
) -> OperationError | None:
    """The one-line fault for an ``OSError`` (or a native library's error that says ENOSPC), else None.
    ``what`` names the thing being written when the path alone does not say it ("the reference store")."""
    code = getattr(err, "errno", None)
    path = Path(where) if where is not None else Path(getattr(err, "filename", None) or ".")
    reason = getattr(err, "strerror", None) or (str(err).splitlines()[0] if str(err) else type(err).__name__)
    thing = f"{what} " if what else ""
    if code == errno.EFBIG and file_size_limit() is not None:
        return NoSpaceError(
            f"{reason} writing {thing}{path}: this process may write files of at most {mb(file_size_limit() or 0)} "
            "(ulimit -f); raise the limit (ulimit -f unlimited) and re-run"
        )
    if code in NO_SPACE_ERRNOS or (code is None and any(t in str(err) for t in _NO_SPACE_TEXT)):
        return NoSpaceError(
            f"{reason} writing {thing}{path} ({mb(free_bytes(path))} free there); free space or {fix_for(path, option)}"
        )
    if code in NOT_WRITABLE_ERRNOS:
        return NotWritableError(f"cannot write {thing}{path}: {reason}; {fix_for(path, option)}")
    if code in (errno.ENOTDIR, errno.EEXIST):
        return NotWritableError(f"cannot write {thing}{path}: a part of that path is a file; {fix_for(path, option)}")
    return None


def memory_fault(what: str) -> OperationError:
    """The line for a ``MemoryError``: the process's peak so far, what the machine has available, and the
    address-space limit (``ulimit -v``) when one is set."""
    from tinyexport.errors import OutOfMemoryError
    from tinyexport.resources import available_memory_mb, peak_rss_mb

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    limit = "" if soft == resource.RLIM_INFINITY else f", address space limited to {soft / 2**20:,.0f} MiB (ulimit -v)"
    return OutOfMemoryError(
        f"out of memory while {what} (peak RSS {peak_rss_mb():,.0f} MiB, {available_memory_mb():,.0f} MiB available"
        f"{limit}); free memory or raise the limit, or use a smaller model, recipe or input"
    )
