"""--transform / --kv-cache through the real CLI: a pruned int8-cache ONNX export verified against our
transformed model, the transformed torch model in eval-free commands, and bad input (one line, exit 2)."""

from __future__ import annotations

import json

import pytest

from .cli_helpers import assert_bad_input, run_cli

TINY = ("--checkpoint", "tiny", "--random-weights", "--kv-cache-max-len", "32", "--prefill-seq-lens", "4")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_convert_pruned_int8_onnx_then_verify(cache, tmp_path) -> None:
    out = tmp_path / "pruned"
    res = run_cli(
        "convert",
        "--format",
        "onnx",
        *TINY,
        "--transform",
        "prune-heads=0.5:activation",
        "--kv-cache",
        "int8",
        "-o",
        str(out),
        cache=cache,
    )
    assert res.code == 0, res.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [t["name"] for t in manifest["transforms"]] == ["prune-heads", "kv-cache"]
    assert manifest["model_config"]["num_heads"] == 2 and manifest["model_config"]["kv_cache_dtype"] == "int8"
    report = tmp_path / "r.json"
    res = run_cli(
        "verify", str(out), "--prompt-tokens", "8", "--max-new-tokens", "6", "--json", str(report), cache=cache
    )
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["reference"].startswith("torch:standard+prune-heads=0.5:activation+kv-cache=int8")
    assert data["candidates"][0]["greedy_match"] == 6


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--transform", "prune-heads=1.5"), ("strictly between 0 and 1",)),
        (("--transform", "prune-heads=0"), ("strictly between 0 and 1",)),
        (("--transform", "prune-heads=0.75"), ("no head", "lower the ratio")),
        (("--transform", "prune-heads=0.2:magic"), ("option 'magic' is unknown", "criterion: o_proj, activation")),
        (("--transform", "quantize=3"), ("unknown transform",)),
        (("--transform", "mixed-precision=bf16"), ("cannot carry", "mixed-precision=bf16")),
        (("--transform", "kv-cache=int8", "--kv-cache", "int8"), ("given twice",)),
    ],
)
def test_bad_transforms_exit_2_in_one_line(cache, tmp_path, args, fragments) -> None:
    res = run_cli("convert", "--format", "tflite", *TINY, *args, "-o", str(tmp_path / "x"), cache=cache)
    assert_bad_input(res, *fragments)
    assert not (tmp_path / "x").exists()


def test_generate_refuses_transforms_with_hf(cache) -> None:
    res = run_cli("generate", *TINY[:3], "--backend", "hf", "--kv-cache", "int8", cache=cache)
    assert_bad_input(res, "--backend torch only")
