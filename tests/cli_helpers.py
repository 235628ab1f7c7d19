"""Run the real console entry point in a subprocess, the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


IMPORT_BLOCKER = """
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked for this test", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""


def env_without(tmp_path: Path, *packages: str) -> dict[str, str]:
    """Environment for ``run_cli`` in which importing any of ``packages`` fails (a ``sitecustomize`` on
    PYTHONPATH refuses them), as on a machine where that optional extra is not installed."""
    site = tmp_path / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(IMPORT_BLOCKER.format(blocked=set(packages)))
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}


def run_cli(*args: str, cache: Path | None = None, env: dict[str, str] | None = None, timeout: int = 900) -> Result:
    full_env = dict(os.environ)
    if cache is not None:
        full_env["TINYEXPORT_CACHE"] = str(cache)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "tinyexport", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_bad_input(result: Result, *fragments: str) -> None:
    """Exit 2, exactly one line on stderr, no traceback, containing every fragment."""
    assert result.code == 2, (result.code, result.stdout[-2000:], result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def assert_fault(result: Result, *fragments: str) -> str:
    """An environment fault: exit 1, exactly one line on stderr, no traceback, every fragment in it."""
    assert result.code == 1, (result.code, result.stdout[-2000:], result.stderr[-3000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# A conversion of the tiny random preset: the cheapest real one (ONNX, one prefill length, 16 slots).
TINY_ONNX = (
    "convert",
    "--format",
    "onnx",
    "--checkpoint",
    "tiny",
    "--random-weights",
    "--prefill-seq-lens",
    "4",
    "--kv-cache-max-len",
    "16",
)
