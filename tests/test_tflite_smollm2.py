"""The headline path on the embedded SmolLM2: `convert --format tflite --quantize`, then `verify` of the
file against transformers -- real weights, real tokenizer, through the CLI."""

from __future__ import annotations

import json

import pytest

from tinyexport.formats.recipes import BARE_QUANTIZE, RECIPES

from .cli_helpers import run_cli

pytestmark = pytest.mark.slow


def test_smollm2_int8_convert_then_verify(tmp_path):
    art = tmp_path / "smollm2_q8"
    # one short prefill signature keeps the conversion quick; the default prompt (17 tokens) then
    # runs as one padded prefill_32 chunk with last-position logits
    res = run_cli(
        "convert",
        "--format",
        "tflite",
        "--quantize",
        "--prefill-seq-lens",
        "32",
        "--kv-cache-max-len",
        "128",
        "-o",
        str(art),
    )
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["recipe"] == BARE_QUANTIZE == "dynamic_int8"
    assert sorted(manifest["signatures"]) == ["decode", "prefill_32"]
    assert manifest["signatures"]["prefill_32"]["outputs"]["logits"]["shape"] == [1, 1, 49152]
    stored = manifest["tflite"]["constant_bytes_by_type"]
    assert stored["INT8"] > 0.95 * sum(stored.values()), stored
    assert manifest["conversion"]["size_ratio_vs_fp32"] <= RECIPES["dynamic_int8"].size_bound("tflite")
    assert manifest["conversion"]["peak_rss_mb"] > 0 and manifest["conversion"]["seconds"] > 0
    assert {"model.tflite", "tokenizer.json"} <= set(manifest["files"])

    report_path = tmp_path / "verify.json"
    res = run_cli("verify", str(art), "--max-new-tokens", "16", "--json", str(report_path))
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(report_path.read_text())
    (cand,) = report["candidates"]
    assert cand["passed"] and cand["format"] == "tflite" and cand["recipe"] == "dynamic_int8"
    assert cand["positions"] == 1 + 15  # last prompt position + teacher-forced decode steps
    assert cand["greedy_match"] >= 1 and cand["text"].strip()
