"""Each file is hashed once per command: the resolver reads each manifest once and hashes each file
once; runners, bench workers and the checkpoint fingerprint reuse that work.

Every Python process a command starts (the CLI and its bench workers) gets a ``sitecustomize`` whose
audit hook counts the files opened by ``tinyexport.hashing.sha256_file``; the product code is untouched.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .cli_helpers import run_cli
from .eval_helpers import tiny_text_checkpoint

COUNTER = """
import atexit, json, os, sys

_counts = {}

def _hook(event, args):
    if event != "open" or not isinstance(args[0], (str, os.PathLike)):
        return
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "sha256_file" and frame.f_code.co_filename.endswith("hashing.py"):
            path = os.path.realpath(os.fspath(args[0]))
            _counts[path] = _counts.get(path, 0) + 1
            return
        frame = frame.f_back

def _dump():
    with open(os.path.join(os.environ["HASH_COUNTS_DIR"], f"{os.getpid()}.json"), "w") as f:
        json.dump(_counts, f)

sys.addaudithook(_hook)
atexit.register(_dump)
"""


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("hash_once")
    ckpt = tiny_text_checkpoint(tmp / "ckpt", seed=3)  # carries a byte-level tokenizer: generate works too
    art = tmp / "tiny_onnx"
    res = run_cli(
        "convert", "--format", "onnx", "--checkpoint", str(ckpt), "--kv-cache-max-len", "64", "--prefill-seq-lens", "8", "-o", str(art),
        cache=tmp / "cache",
    )  # fmt: skip
    assert res.code == 0, res.stderr
    return art


def _hash_counts(tmp_path: Path, cache: Path, *args: str) -> collections.Counter:
    site, counts = tmp_path / "site", tmp_path / "counts"
    site.mkdir()
    counts.mkdir()
    (site / "sitecustomize.py").write_text(COUNTER)
    env = dict(os.environ, TINYEXPORT_CACHE=str(cache), HASH_COUNTS_DIR=str(counts))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "tinyexport", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    total: collections.Counter = collections.Counter()
    for dump in counts.glob("*.json"):
        total.update(json.loads(dump.read_text()))
    return total


@pytest.mark.parametrize(
    "command",
    [
        ("verify", "{art}", "--prompt", "hello", "--max-new-tokens", "3"),
        ("bench", "{art}", "--torch", "--prompt-len", "4", "--new-tokens", "3", "--repeats", "1", "--no-log"),
        ("generate", "{art}", "--prompt", "hello", "--max-new-tokens", "3"),
    ],
    ids=["verify", "bench", "generate"],
)
def test_each_file_hashed_once(tmp_path, tiny_onnx, command):
    args = [a.format(art=tiny_onnx) for a in command]
    counts = _hash_counts(tmp_path, tiny_onnx.parent / "cache", *args)
    artefact_files = [p for p in tiny_onnx.iterdir() if p.name != "manifest.json"]
    assert {str(p.resolve()): counts[str(p.resolve())] for p in artefact_files} == {
        str(p.resolve()): 1 for p in artefact_files
    }
    assert counts and max(counts.values()) == 1, counts  # the checkpoint's weights too: one fingerprint
