"""``bench --on TARGET``: copy artefacts to another machine, run the runtime-only bench there, pull the JSON.

Steps, each one transport call with a timeout:
1. find the target's Python (``--remote-python``, else a venv under the remote dir, created and given
   ``tinyexport[runtime]`` from a wheel of this checkout when missing) and check it is 3.10+;
2. per artefact, ask the target for the sha256 of the files it already has, copy only the others, each
   into a ``.part`` name that is checked (size, sha256) and then renamed, the manifest last: a broken
   copy never sits under a final name;
3. run ``python -m tinyexport bench DIRS --json F --no-log ...`` there and read F back.
The document is the target's own (its machine description, probes, rows) plus a ``remote`` entry: the
transport, what was copied or skipped, and how long the copy, the bench and the round trips took.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyexport.artefact import MANIFEST, Artefact

from .transports import Completed, RemoteError, Transport

DEFAULT_REMOTE_DIR = ".cache/tinyexport-remote"  # relative to the target's $HOME
MIN_PYTHON = (3, 10)

# Run by the target's Python: its version, whether tinyexport imports, and the sha256 of the files in a dir.
PROBE = r"""
import hashlib, json, os, sys
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 22), b""):
            h.update(b)
    return h.hexdigest()
try:
    import tinyexport
    te = getattr(tinyexport, "__version__", "?")
except Exception:
    te = None
files = {}
d = sys.argv[1] if len(sys.argv) > 1 else ""
if d and os.path.isdir(d):
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if os.path.isfile(p) and not n.startswith("."):
            files[n] = [os.path.getsize(p), sha(p)]
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "tinyexport": te, "files": files}))
"""

# Check a received .part file (size, sha256) and rename it to its final name; exit 3 (and delete it) if wrong.
FINISH = r"""
import hashlib, os, sys
part, final, size, want = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
h = hashlib.sha256()
with open(part, "rb") as f:
    for b in iter(lambda: f.read(1 << 22), b""):
        h.update(b)
if os.path.getsize(part) != size or h.hexdigest() != want:
    os.remove(part)
    sys.exit(3)
os.replace(part, final)
"""


@dataclass(frozen=True)
class RemoteSettings:
    remote_python: str | None = None
    remote_dir: str | None = None  # default: $HOME/.cache/tinyexport-remote on the target
    command_timeout: float = 60.0  # probes, renames, fetch
    copy_timeout: float = 1800.0  # one file
    bench_timeout: float = 3600.0


@dataclass
class CopyLog:
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    seconds: float = 0.0


def _q(text: str) -> str:
    return shlex.quote(text)


def _json_line(done: Completed, what: str, label: str) -> dict[str, Any]:
    for line in reversed(done.stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise RemoteError(f"{label}: {what} printed no result ({(done.stderr or done.stdout).strip()[-200:]!r})")


def remote_home(transport: Transport, settings: RemoteSettings) -> str:
    done = transport.run('printf "%s" "$HOME"', timeout=settings.command_timeout)
    if done.returncode != 0 or not done.stdout.strip():
        raise RemoteError(f"{transport.label}: could not read $HOME there; pass --remote-dir")
    return done.stdout.strip()


def probe_python(transport: Transport, python: str, directory: str, timeout: float) -> dict[str, Any] | None:
    """The probe's answer from ``python`` on the target, or None when that Python does not run there."""
    done = transport.run(f"{_q(python)} -c {_q(PROBE)} {_q(directory)}", timeout=timeout)
    if done.returncode in (126, 127):
        return None
    if done.returncode != 0:
        raise RemoteError(f"{transport.label}: {python} failed: {(done.stderr or done.stdout).strip()[-200:]}")
    return _json_line(done, f"{python} -c PROBE", transport.label)


def check_python_version(info: dict[str, Any], python: str, label: str) -> None:
    version = tuple(int(p) for p in str(info.get("python", "0.0")).split(".")[:2])
    if version < MIN_PYTHON:
        raise RemoteError(
            f"{label}: {python} is Python {info.get('python')}; tinyexport needs 3.10+ there "
            "(pass --remote-python PATH to a newer one)"
        )


def ensure_python(transport: Transport, settings: RemoteSettings, base: str) -> str:
    """A Python 3.10+ on the target that imports tinyexport (installing it into a venv when needed)."""
    label = transport.label
    if settings.remote_python is not None:
        info = probe_python(transport, settings.remote_python, "", settings.command_timeout)
        if info is None:
            raise RemoteError(
                f"{label}: --remote-python {settings.remote_python} does not run there; pass the path "
                "of a Python 3.10+ that has tinyexport[runtime]"
            )
        check_python_version(info, settings.remote_python, label)
        if info.get("tinyexport") is None:
            raise RemoteError(
                f"{label}: {settings.remote_python} cannot import tinyexport; install "
                "'tinyexport[runtime]' into it, or drop --remote-python to let bench make a venv"
            )
        return settings.remote_python
    venv_python = f"{base}/venv/bin/python"
    info = probe_python(transport, venv_python, "", settings.command_timeout)
    if info is not None and info.get("tinyexport") is not None:
        return venv_python
    system = probe_python(transport, "python3", "", settings.command_timeout)
    if system is None:
        raise RemoteError(f"{label}: no python3 there; install Python 3.10+ or pass --remote-python")
    check_python_version(system, "python3", label)
    install_runtime(transport, settings, base, venv_python)
    return venv_python


def install_runtime(transport: Transport, settings: RemoteSettings, base: str, venv_python: str) -> None:
    """``python3 -m venv BASE/venv`` and ``pip install tinyexport-*.whl[runtime]`` (a wheel of this checkout)."""
    import tempfile

    from .wheel import build_wheel

    with tempfile.TemporaryDirectory(prefix="tinyexport-wheel-") as tmp:
        wheel = build_wheel(Path(tmp))
        remote_wheel = f"{base}/{wheel.name}"
        _run_ok(
            transport,
            f"mkdir -p {_q(base)} && python3 -m venv {_q(base + '/venv')}",
            settings.command_timeout,
            "python3 -m venv",
        )
        transport.push(wheel, remote_wheel, timeout=settings.copy_timeout)
        _run_ok(
            transport,
            f"{_q(venv_python)} -m pip install --quiet {_q(remote_wheel + '[runtime]')}",
            settings.bench_timeout,
            "pip install tinyexport[runtime]",
        )


def _run_ok(transport: Transport, command: str, timeout: float, what: str) -> Completed:
    done = transport.run(command, timeout=timeout)
    if done.returncode != 0:
        tail = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise RemoteError(f"{transport.label}: {what} failed (exit {done.returncode}): {tail[-1] if tail else ''}")
    return done


def sync_artefact(
    transport: Transport, python: str, art: Artefact, target: str, settings: RemoteSettings, log: CopyLog
) -> None:
    """Copy ``art`` into ``target`` on the remote, skipping files already there with the same sha256."""
    start = time.perf_counter()
    _run_ok(transport, f"mkdir -p {_q(target)}", settings.command_timeout, "mkdir")
    info = probe_python(transport, python, target, settings.command_timeout) or {}
    there = info.get("files", {})
    from tinyexport.hashing import sha256_file

    wanted = {rel: (int(f["bytes"]), str(f["sha256"])) for rel, f in art.manifest["files"].items()}
    manifest = art.path / MANIFEST
    wanted[MANIFEST] = (manifest.stat().st_size, sha256_file(manifest))
    for rel in [*sorted(r for r in wanted if r != MANIFEST), MANIFEST]:  # the manifest last
        size, digest = wanted[rel]
        if "/" in rel:
            raise RemoteError(f"{art.path}: {rel} is in a subdirectory; bench --on copies flat artefact dirs only")
        if there.get(rel) == [size, digest]:
            log.skipped.append(f"{art.name}/{rel}")
            continue
        part = f"{target}/.{rel}.part"
        transport.push(art.path / rel, part, timeout=settings.copy_timeout)
        done = transport.run(
            f"{_q(python)} -c {_q(FINISH)} {_q(part)} {_q(target + '/' + rel)} {size} {digest}",
            timeout=settings.command_timeout,
        )
        if done.returncode != 0:
            raise RemoteError(f"{transport.label}: {rel} arrived damaged (size or sha256 differs); run again")
        log.copied.append(f"{art.name}/{rel}")
        log.bytes_copied += size
    log.seconds += time.perf_counter() - start


def remote_bench(
    arts: list[Artefact],
    transport: Transport,
    settings: RemoteSettings,
    bench_args: list[str],
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Copy ``arts`` to the target, run ``tinyexport bench`` there with ``bench_args``, return its document.
    ``progress`` gets a line once the target answered (so a failure to connect prints only the error)."""
    start = time.perf_counter()
    base = settings.remote_dir or f"{remote_home(transport, settings)}/{DEFAULT_REMOTE_DIR}"
    python = ensure_python(transport, settings, base)
    setup_s = time.perf_counter() - start
    progress(
        f"bench on {transport.label} ({python}): copying {len(arts)} artefact(s); files already there with "
        "the same sha256 are skipped ..."
    )
    log = CopyLog()
    dirs = []
    for art in arts:
        target = f"{base}/artefacts/{art.name}"
        sync_artefact(transport, python, art, target, settings, log)
        dirs.append(target)
    result = f"{base}/bench-{int(time.time() * 1000)}.json"
    command = (
        f"TINYEXPORT_CACHE={_q(base + '/cache')} {_q(python)} -m tinyexport bench "
        + " ".join(_q(d) for d in dirs)
        + f" --json {_q(result)} --no-log "
        + " ".join(_q(a) for a in bench_args)
    )
    progress(f"copied {len(log.copied)} file(s) in {log.seconds:.1f} s; running the bench there ...")
    run_start = time.perf_counter()
    done = transport.run(command, timeout=settings.bench_timeout)
    run_s = time.perf_counter() - run_start
    if done.returncode not in (0, 1):  # 1: a candidate failed, the document still says which
        tail = [line for line in done.stderr.splitlines() if line.strip()]
        raise RemoteError(
            f"{transport.label}: the bench there failed (exit {done.returncode}): "
            f"{tail[-1] if tail else done.stdout.strip()[-200:]}"
        )
    fetch_start = time.perf_counter()
    fetched = _run_ok(
        transport, f"cat {_q(result)} && rm -f {_q(result)}", settings.command_timeout, "reading the JSON"
    )
    try:
        document = json.loads(fetched.stdout)
    except json.JSONDecodeError:
        raise RemoteError(f"{transport.label}: the bench there wrote no valid JSON") from None
    fetch_s = time.perf_counter() - fetch_start
    document["remote"] = {
        "transport": transport.label,
        "python": python,
        "remote_dir": base,
        "copied": log.copied,
        "skipped": log.skipped,
        "bytes_copied": log.bytes_copied,
        "setup_seconds": round(setup_s, 3),
        "copy_seconds": round(log.seconds, 3),
        "bench_command_seconds": round(run_s, 3),
        "fetch_seconds": round(fetch_s, 3),
        "total_seconds": round(time.perf_counter() - start, 3),
    }
    return document
