"""Runtime-only use: benchmarking an artefact where importing torch or transformers fails.

The subprocess gets a ``sitecustomize`` on its PYTHONPATH that refuses those imports (this test's
process and the product code are untouched), then runs ``tinyexport bench`` on a tiny artefact; the
bench's own worker subprocesses inherit the blocker. Runs for every registered format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinyexport.artefact import MANIFEST, TOKENIZER_FILES
from tinyexport.bench.measure import CONTEXT_STEPS
from tinyexport.bench.roofline import CACHE_KINDS
from tinyexport.formats.registry import FORMATS

from .cli_helpers import run_cli

# formats whose runtime runs without torch (ExecuTorch's Python runtime loads libtorch itself)
TORCH_FREE = sorted(name for name, f in FORMATS.items() if not f.runtime_needs_torch)

BLOCKER = """
import importlib.abc
import sys

BLOCKED = {"torch", "transformers"}


class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: runtime-only environment", name=name)
        return None


sys.meta_path.insert(0, _Blocked())
"""


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


@pytest.fixture(scope="module")
def tiny_artefacts(tmp_path_factory) -> dict[str, Path]:
    """One tiny fp32 artefact (64-slot cache) per registered format, sharing one cache dir."""
    tmp = tmp_path_factory.mktemp("runtime_only")
    arts = {}
    for fmt in TORCH_FREE:
        art = tmp / f"tiny_{fmt}"
        res = run_cli(
            "convert",
            "--format",
            fmt,
            "--checkpoint",
            "tiny",
            "--random-weights",
            "--prefill-seq-lens",
            "8,16",
            "--kv-cache-max-len",
            "64",
            "-o",
            str(art),
            cache=tmp / "cache",
        )
        assert res.code == 0, res.stderr
        arts[fmt] = art
    return arts


@pytest.mark.parametrize("fmt", TORCH_FREE)
def test_bench_artefact_without_torch(tmp_path, tiny_artefacts, fmt):
    art = tiny_artefacts[fmt]
    out, log = tmp_path / "bench.json", tmp_path / "bench.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinyexport",
            "bench",
            str(art),
            "--prompt-len",
            "16",
            "--new-tokens",
            "6",
            "--repeats",
            "2",
            "--context",
            "40",
            "--threads",
            "1",
            "--json",
            str(out),
            "--log-csv",
            str(log),
        ],
        env=_blocked_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    (cand,) = doc["candidates"]
    assert cand["error"] is None and cand["format"] == fmt and cand["name"] == art.name
    on_disk = [p for p in art.rglob("*") if p.is_file() and p.name not in (*TOKENIZER_FILES, MANIFEST)]
    assert (art / FORMATS[fmt].model_file) in on_disk
    assert cand["size_bytes"] == sum(p.stat().st_size for p in on_disk) > 0  # every file but tokenizer + manifest
    assert all(cand[key]["p10"] > 0 for key in ("ttft_ms", "prefill_tok_s", "decode_tok_s", "decode_ms_per_token"))
    assert cand["ttft_ms"]["median"] > 0 and cand["peak_rss_mb"] > 0 and len(cand["generated"]) == 6
    assert cand["roofline"]["cache_kind"] == CACHE_KINDS[fmt]
    assert [p["context"] for p in cand["contexts"]] == [40]
    assert len(log.read_text().splitlines()) == 2


def test_artefact_beside_torch(tmp_path, tiny_artefacts):
    """Same prompt ids and greedy tokens as our fp32 model; a --context fill beyond the artefact's cache is
    skipped for it alone; a fixed cache's decode bound does not depend on the fill, a growing one's does."""
    fmt = TORCH_FREE[0]
    art = tiny_artefacts[fmt]
    out = tmp_path / "bench.json"
    res = run_cli(
        "bench",
        str(art),
        "--torch",
        "--prompt-len",
        "16",
        "--new-tokens",
        "6",
        "--repeats",
        "2",
        "--context",
        "40,100",
        "--json",
        str(out),
        "--no-log",
        cache=art.parent / "cache",
    )
    assert res.code == 0, res.stderr
    torch_c, art_c = json.loads(out.read_text())["candidates"]
    assert torch_c["name"] == "torch:standard" and art_c["name"] == art.name
    assert art_c["generated"] == torch_c["generated"]
    assert [p["context"] for p in torch_c["contexts"]] == [40, 100] and torch_c["contexts_skipped"] == []
    assert [p["context"] for p in art_c["contexts"]] == [40] and art_c["contexts_skipped"] == [100]
    assert "– (cache 64)" in res.stdout
    assert torch_c["contexts"][0]["bound_tok_s"] > torch_c["contexts"][1]["bound_tok_s"]  # growing cache
    roof = art_c["roofline"]
    fills = range(40 - CONTEXT_STEPS, 40)  # cache fill before each timed step
    slots = 64 if CACHE_KINDS[fmt] == "fixed" else sum(f + 1 for f in fills) / len(fills)
    assert art_c["contexts"][0]["bytes_per_token"] == pytest.approx(
        roof["decode"]["weight_bytes_per_token"] + slots * roof["kv_bytes_per_slot"]
    )
    if CACHE_KINDS[fmt] == "fixed":  # every step reads all 64 slots, whatever the fill
        assert art_c["contexts"][0]["bytes_per_token"] == pytest.approx(roof["decode"]["bytes_per_token"])
