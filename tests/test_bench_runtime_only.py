"""Runtime-only use: benchmarking an artefact where importing torch or transformers fails.

The subprocess gets a ``sitecustomize`` on its PYTHONPATH that refuses those imports (this test's
process and the product code are untouched), then runs ``tinyexport bench`` on a tiny artefact; the
bench's own worker subprocesses inherit the blocker. Runs for every format whose converter exists.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tinyexport.artefact import MANIFEST, TOKENIZER_FILES
from tinyexport.converters.formats import FORMATS

from .cli_helpers import run_cli

BLOCKER = '''
import importlib.abc
import sys

BLOCKED = {"torch", "transformers"}


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: runtime-only environment", name=name)
        return None


sys.meta_path.insert(0, _Blocked())
'''


def _available(fmt: str) -> bool:
    module = FORMATS[fmt].converter.partition(":")[0]
    return importlib.util.find_spec(module) is not None


def _blocked_env(tmp_path) -> dict[str, str]:
    site = tmp_path / "blocker"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    env["TINYEXPORT_CACHE"] = str(tmp_path / "cache")
    return env


def test_blocker_blocks(tmp_path):
    env = _blocked_env(tmp_path)
    for module in ("torch", "transformers"):
        proc = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True)
        assert proc.returncode != 0 and "blocked: runtime-only" in proc.stderr


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_bench_artefact_without_torch(tmp_path, fmt):
    if not _available(fmt):
        pytest.skip(f"the {fmt} converter has not landed on this branch yet")
    art = tmp_path / f"tiny_{fmt}"
    res = run_cli("convert", "--format", fmt, "--checkpoint", "tiny", "--random-weights", "--prefill-seq-lens", "8,16",
                  "--kv-cache-max-len", "64", "-o", str(art), cache=tmp_path / "cache")
    assert res.code == 0, res.stderr
    out, log = tmp_path / "bench.json", tmp_path / "bench.csv"
    proc = subprocess.run([sys.executable, "-m", "tinyexport", "bench", str(art), "--prompt-len", "16", "--new-tokens",
                           "6", "--repeats", "2", "--context", "40", "--threads", "1", "--json", str(out),
                           "--log-csv", str(log)], env=_blocked_env(tmp_path), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    (cand,) = doc["candidates"]
    assert cand["error"] is None and cand["format"] == fmt and cand["name"] == art.name
    on_disk = [p for p in art.rglob("*") if p.is_file() and p.name not in (*TOKENIZER_FILES, MANIFEST)]
    assert (art / FORMATS[fmt].model_file) in on_disk
    assert cand["size_bytes"] == sum(p.stat().st_size for p in on_disk) > 0  # every file but tokenizer + manifest
    for key in ("ttft_ms", "prefill_tok_s", "decode_tok_s", "decode_ms_per_token"):
        assert 0 < cand[key]["p10"] <= cand[key]["median"] <= cand[key]["p90"]
    assert cand["ttft_ms"]["median"] > 0 and cand["peak_rss_mb"] > 0 and len(cand["generated"]) == 6
    assert cand["roofline"]["cache_kind"] in ("fixed", "growing")
    assert len(log.read_text().splitlines()) == 2
