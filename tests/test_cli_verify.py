"""`tinyexport verify` level 1 through the real CLI, and its bad-input handling."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from .cli_helpers import assert_bad_input, run_cli


def test_help_is_instant_and_imports_no_backend():
    code = (
        "import sys, tinyexport.cli as c; "
        "heavy = [m for m in ('torch', 'transformers', 'litert_torch', 'onnxruntime', 'ai_edge_litert') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    res = run_cli("--help")
    assert res.code == 0 and "verify" in res.stdout


def test_version():
    from tinyexport import __version__

    res = run_cli("--version")
    assert res.code == 0 and __version__ in res.stdout


def test_verify_tiny_random_json(tmp_path):
    out = tmp_path / "report.json"
    res = run_cli(
        "verify",
        "--checkpoint",
        "tiny",
        "--random-weights",
        "--seed",
        "1",
        "--prompt-tokens",
        "12",
        "--max-new-tokens",
        "6",
        "--json",
        str(out),
        cache=tmp_path / "cache",
    )
    assert res.code == 0, res.stderr
    report = json.loads(out.read_text())
    assert report["prompt_tokens"] == 12
    names = [c["name"] for c in report["candidates"]]
    assert names == ["torch:standard", "torch:sdpa", "torch:flash"]
    for cand in report["candidates"]:
        for key in (
            "name",
            "max_abs",
            "mean_abs",
            "top1_agreement",
            "kl",
            "greedy_match",
            "greedy_total",
            "first_divergence",
            "passed",
        ):
            assert key in cand
        assert cand["passed"] and cand["greedy_match"] == cand["greedy_total"] == 6
        assert cand["max_abs"] < 1e-4 and cand["top1_agreement"] == 1.0
        assert cand["positions"] == 12 + 5


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["verify", "--checkpoint", "/no/such/dir"], ["neither a preset", "/no/such/dir"]),
        (["verify", "--checkpoint", "tinyllama-1.1b"], ["--random-weights"]),
        (["verify", "--attention", "bogus"], ["bogus", "--attention"]),
        (["verify", "--max-new-tokens", "0"], ["--max-new-tokens"]),
        (["verify", "/no/such/artefact"], ["does not exist"]),
        (["frobnicate"], ["No such command"]),
    ],
)
def test_bad_arguments_exit_2_one_line(tmp_path, args, fragments):
    assert_bad_input(run_cli(*args, cache=tmp_path), *fragments)


def test_directory_without_config(tmp_path):
    assert_bad_input(run_cli("verify", "--checkpoint", str(tmp_path), cache=tmp_path), "no config.json")


def test_directory_without_weights(tmp_path, tiny_hf_dir):
    d = tmp_path / "noweights"
    d.mkdir()
    shutil.copy(tiny_hf_dir / "config.json", d / "config.json")
    assert_bad_input(run_cli("verify", "--checkpoint", str(d), cache=tmp_path), "no *.safetensors")


def test_corrupt_safetensors(tmp_path, tiny_hf_dir):
    d = tmp_path / "corrupt"
    shutil.copytree(tiny_hf_dir, d)
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert_bad_input(
        run_cli("verify", "--checkpoint", str(d), "--prompt-tokens", "4", cache=tmp_path),
        "model.safetensors is not a valid safetensors file",
        "header is not JSON",
    )


def test_corrupt_gguf(tmp_path):
    f = tmp_path / "broken.gguf"
    f.write_bytes(b"GGUF" + b"\x00" * 64)
    assert_bad_input(run_cli("verify", "--checkpoint", str(f), cache=tmp_path), "broken.gguf")


@pytest.mark.parametrize(
    "edit, fragment",
    [
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "only Llama-family"),
        ({"attention_bias": True}, "attention_bias"),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling"),
        ({"intermediate_size": 96}, "has shape [128, 64] but the config needs [96, 64]"),
    ],
)
def test_unsupported_or_mismatched_checkpoint(tmp_path, tiny_hf_dir, edit, fragment):
    d = tmp_path / "edited"
    shutil.copytree(tiny_hf_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(edit)
    (d / "config.json").write_text(json.dumps(cfg))
    assert_bad_input(run_cli("verify", "--checkpoint", str(d), "--prompt-tokens", "4", cache=tmp_path), fragment)


def test_prompt_longer_than_the_cache(tmp_path, tiny_hf_dir):
    res = run_cli(
        "verify", "--checkpoint", str(tiny_hf_dir), "--prompt-tokens", "600", "--max-new-tokens", "4", cache=tmp_path
    )
    assert_bad_input(res, "max_position_embeddings (512)")


def test_json_to_missing_directory_fails_before_work(tmp_path):
    res = run_cli("verify", "--json", str(tmp_path / "nope" / "r.json"), cache=tmp_path)
    assert_bad_input(res, "does not exist")
