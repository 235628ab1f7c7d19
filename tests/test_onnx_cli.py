"""`tinyexport convert --format onnx` and `verify` on ONNX artefacts through the real CLI, and bad input."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from tinyexport.artefact import MANIFEST, write_manifest

from .cli_helpers import assert_bad_input, run_cli

TINY = ("--checkpoint", "tiny", "--random-weights", "--kv-cache-max-len", "64", "--prefill-seq-lens", "8")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def artefact(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("onnx_cli") / "tiny_onnx"
    res = run_cli("convert", "--format", "onnx", *TINY, "-o", str(out), cache=cache)
    assert res.code == 0, res.stderr[-2000:]
    return out


def test_convert_then_verify_through_the_cli(artefact, cache, tmp_path):
    manifest = json.loads((artefact / MANIFEST).read_text())
    assert manifest["format"] == "onnx" and manifest["recipe"] == "fp32"
    assert set(manifest["files"]) == {
        "model.onnx",
        "model.onnx.data",  # every initializer over 1 KiB: onnxruntime memory-maps them (converters/onnx.py)
        "genai_config.json",
        "config.json",
        "generation_config.json",
    }
    assert manifest["onnx"]["fusions"]["GroupQueryAttention"] == 2
    report = tmp_path / "r.json"
    res = run_cli(
        "verify", str(artefact), "--prompt-tokens", "12", "--max-new-tokens", "8", "--json", str(report), cache=cache
    )
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-2000:]
    (cand,) = json.loads(report.read_text())["candidates"]
    assert cand["passed"] and cand["max_abs"] < 1e-4 and cand["greedy_match"] == 8
    assert cand["format"] == "onnx" and cand["recipe"] == "fp32"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--quantize", "bogus"], ["bogus"]),
        (["--quantize", "weight_only_int8"], ["not available for onnx", "int4_block32"]),
        (["--quantize", "int4_block32", "--opset", "18"], ["--opset 18 is too old for recipe int4_block32", ">= 21"]),
        (["--opset", "17"], ["--opset 17 is too old for recipe fp32"]),
        (["--opset", "99"], ["--opset 99 is newer"]),
    ],
)
def test_bad_convert_options_exit_2(tmp_path, cache, args, fragments):
    res = run_cli("convert", "--format", "onnx", *TINY, *args, "-o", str(tmp_path / "x"), cache=cache)
    assert_bad_input(res, *fragments)
    assert not (tmp_path / "x").exists()


def test_opset_is_onnx_only(tmp_path, cache):
    res = run_cli("convert", "--format", "tflite", *TINY, "--opset", "21", "-o", str(tmp_path / "x"), cache=cache)
    assert_bad_input(res, "--opset applies to --format onnx only")


def test_existing_output_needs_force(artefact, cache):
    before = (artefact / MANIFEST).read_bytes()
    assert_bad_input(
        run_cli("convert", "--format", "onnx", *TINY, "-o", str(artefact), cache=cache), "already exists", "--force"
    )
    assert (artefact / MANIFEST).read_bytes() == before


def _copy(artefact, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(artefact, target)
    return target


def test_missing_model_file(artefact, cache, tmp_path):
    broken = _copy(artefact, tmp_path)
    (broken / "model.onnx").unlink()
    assert_bad_input(run_cli("verify", str(broken), "--prompt-tokens", "4", cache=cache), "missing model.onnx")


def test_tampered_model_file(artefact, cache, tmp_path):
    broken = _copy(artefact, tmp_path)
    data = bytearray((broken / "model.onnx").read_bytes())
    data[-100] ^= 0xFF
    (broken / "model.onnx").write_bytes(bytes(data))
    assert_bad_input(run_cli("verify", str(broken), "--prompt-tokens", "4", cache=cache), "does not match the sha256")


def test_model_that_fails_the_onnx_checker(artefact, cache, tmp_path):
    """A consistent manifest around an invalid graph (an op ONNX does not define) is refused, not run."""
    broken = _copy(artefact, tmp_path)
    model = onnx.load(str(broken / "model.onnx"))
    node = model.graph.node[0]
    model.graph.node.insert(0, onnx.helper.make_node("NoSuchOp", [node.input[0]], ["bogus_out"]))
    onnx.save(model, str(broken / "model.onnx"))
    manifest = json.loads((broken / MANIFEST).read_text())
    write_manifest(
        broken, {k: v for k, v in manifest.items() if k not in ("schema", "created", "tool_versions", "files")}
    )
    assert_bad_input(
        run_cli("verify", str(broken), "--prompt-tokens", "4", "--max-new-tokens", "2", cache=cache),
        "fails onnx.checker",
        "NoSuchOp",
    )


def test_prompt_beyond_the_cache(artefact, cache):
    res = run_cli("verify", str(artefact), "--prompt-tokens", "60", "--max-new-tokens", "10", cache=cache)
    assert_bad_input(res, "exceeds the KV cache", "(64)")
