"""Build one run record at the CLI's edge: command line, times, exit status, git state of the working
directory, tool versions, machine, checkpoint fingerprint, artefacts (sha256s + manifest), JSON result.

Cheap by design (< 50 ms): git runs in the background while the rest is gathered, artefact hashes come
from their manifests (``load_artefact`` checked them when the command opened them), and a checkpoint's
fingerprint is hashed once per weight-file signature and then read from the store's cache.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import subprocess
import threading
from pathlib import Path
from typing import Any

from .sink import RunSink
from .store import RunStore, new_run_id

GIT_TIMEOUT_S = 2.0


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def build_record(
    sink: RunSink, argv: list[str], started: str, exit_status: int | None, store: RunStore, cwd: Path | None = None
) -> dict[str, Any]:
    """The immutable record of one finished command (``sink.context`` started when it began, if any)."""
    context = sink.context if isinstance(sink.context, RunContext) else RunContext(cwd)
    artefacts = [_artefact_entry(p) for p in sink.artefacts]
    versions, machine_, git = context.result()
    record = {
        "id": new_run_id(),
        "command": sink.command,
        "argv": list(argv),
        "cwd": str(context.cwd),
        "started": started,
        "ended": utc_now(),
        "exit_status": exit_status,
        "versions": versions,
        "machine": machine_,
        "checkpoint": _checkpoint_entry(sink.checkpoint, artefacts, store, sink.result),
        "artefacts": artefacts,
        "result": sink.result,
        "git": git,
    }
    return record


class RunContext:
    """Tool versions, machine and git state, gathered on a background thread while the command runs
    (they cost ~30 ms together, which would otherwise be added to every command's end)."""

    def __init__(self, cwd: Path | None = None) -> None:
        self.cwd = Path(cwd or os.getcwd())
        self._out: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._gather, name="tinyexport-run-context", daemon=True)
        self._thread.start()

    def _gather(self) -> None:
        from tinyexport.artefact import tool_versions

        git = _start_git(self.cwd)
        self._out["versions"] = tool_versions()
        self._out["machine"] = machine()
        self._out["git"] = _finish_git(git)

    def result(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any] | None]:
        self._thread.join(timeout=GIT_TIMEOUT_S + 5)
        return self._out.get("versions", {}), self._out.get("machine", {}), self._out.get("git")


def machine() -> dict[str, Any]:
    from tinyexport.bench.machine import cpu_model, host_name, ram_bytes, usable_cores

    ram = ram_bytes()
    return {
        "host": host_name(),
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "ram_gb": round(ram / 2**30, 1) if ram else None,
        "os": platform.platform(),
    }


def _start_git(cwd: Path) -> subprocess.Popen | None:
    try:
        return subprocess.Popen(
            ["git", "-C", str(cwd), "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    except OSError:  # no git on this machine
        return None


def _finish_git(proc: subprocess.Popen | None) -> dict[str, Any] | None:
    """{"commit", "dirty"} of the repository the command ran in; None outside git (or after 2 s)."""
    if proc is None:
        return None
    try:
        out, _ = proc.communicate(timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    if proc.returncode != 0:
        return None
    lines = out.splitlines()
    commit = next((ln.split()[-1] for ln in lines if ln.startswith("# branch.oid ")), None)
    if commit is None or commit == "(initial)":
        return None
    return {"commit": commit, "dirty": any(not ln.startswith("#") for ln in lines if ln.strip())}


def _artefact_entry(path: Path) -> dict[str, Any]:
    path = Path(path).resolve()
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return {"path": str(path), "name": path.name, "manifest": None}
    files = manifest.get("files", {})
    return {
        "path": str(path),
        "name": path.name,
        "format": manifest.get("format"),
        "recipe": manifest.get("recipe"),
        "size_bytes": sum(int(f.get("bytes", 0)) for f in files.values()),
        "sha256": {rel: f.get("sha256") for rel, f in files.items()},
        "manifest": manifest,
    }


def _checkpoint_entry(
    ckpt: Any, artefacts: list[dict[str, Any]], store: RunStore, sink_result: Any = None
) -> dict[str, Any] | None:
    sources = [a["manifest"].get("source", {}) for a in artefacts if a.get("manifest")]
    if ckpt is None:
        if not sources:
            return None
        src = sources[0]
        return {"name": src.get("name"), "directory": src.get("directory"), "fingerprint": src.get("fingerprint")}
    if isinstance(ckpt, (str, Path)):  # a checkpoint directory (bench): named by the result's model
        from tinyexport.models.checkpoint import Checkpoint

        model = (sink_result or {}).get("model") if isinstance(sink_result, dict) else None
        name = model.get("name") if isinstance(model, dict) else Path(ckpt).name
        ckpt = Checkpoint(str(name), Path(ckpt), None, str(ckpt))
    directory = str(ckpt.directory)
    recorded = next((s.get("fingerprint") for s in sources if s.get("directory") == directory), None)
    return {
        "name": ckpt.name,
        "directory": directory,
        "source": ckpt.source,
        "fingerprint": recorded or checkpoint_fingerprint(ckpt, store),
    }


def checkpoint_fingerprint(ckpt: Any, store: RunStore) -> str:
    """``Checkpoint.fingerprint()``, cached in the store under the weight files' (name, size, mtime)."""
    from tinyexport.models.weights import weight_files

    files = [Path(ckpt.directory) / "config.json", *weight_files(Path(ckpt.directory))]
    signature = hashlib.sha256(
        "\n".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files).encode()
    ).hexdigest()
    cached = store.cached_fingerprint(str(ckpt.directory), signature)
    if cached is not None:
        return cached
    fingerprint = ckpt.fingerprint()
    store.remember_fingerprint(str(ckpt.directory), signature, fingerprint)
    return fingerprint
