"""SmolLM2 (real weights, real byte-level BPE tokenizer) to a Q8_0 GGUF, verified as a file through
llama.cpp, and llama.cpp's own tokenizer on the GGUF's vocabulary giving our tokenizer's ids."""

from __future__ import annotations

import json

import pytest

from tinyexport.formats.recipes import tolerance_for

from .cli_helpers import run_cli

pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra runtime-gguf) is not installed")
pytestmark = pytest.mark.slow

PROMPTS = (
    "In a quiet village at the foot of the mountains, an old clockmaker discovered that",
    "What is the capital of France? Answer in one sentence.",
    "In 2024, 3.14159 × 1,000,000 ≈ 3141590; phone: +1 (555) 010-9999.",
    "Café naïve — 東京, Москва, 🙂 emoji and ünïcödé.",
    "def f(x):\n\treturn x**2  # tabs,   spaces\n\n\n  trailing   ",
    "  leading spaces, don't, I'll, we're, they've, she'd, it's",
)


@pytest.fixture(scope="module")
def q8_artefact(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2_gguf") / "smollm2_gguf_q8_0"
    res = run_cli("convert", "--format", "gguf", "--quantize", "q8_0", "-o", str(out))
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return out


def test_q8_0_artefact_passes_verify(q8_artefact, tmp_path):
    manifest = json.loads((q8_artefact / "manifest.json").read_text())
    assert manifest["format"] == "gguf" and manifest["recipe"] == "q8_0"
    assert manifest["gguf"]["tensor_types"] == {"F32": 61, "Q8_0": 211}  # norms F32; tied table stored once
    assert manifest["gguf"]["tokenizer_model"] == "gpt2"
    report = tmp_path / "verify.json"
    res = run_cli("verify", str(q8_artefact), "--max-new-tokens", "24", "--json", str(report))
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-2000:]
    (cand,) = json.loads(report.read_text())["candidates"]
    tol = tolerance_for("gguf", "q8_0")
    assert cand["passed"] and cand["top1_agreement"] >= tol.min_top1 and cand["kl"] <= tol.max_kl
    assert cand["max_abs"] > 1e-3  # quantized, not the fp32 weights
    assert "clock" in cand["text"]


def test_llama_cpp_tokenizer_gives_our_ids(q8_artefact):
    from tinyexport.runners import open_artefact_runner
    from tinyexport.tokenizer import Tokenizer

    ours = Tokenizer(q8_artefact)
    runner = open_artefact_runner(q8_artefact, threads=1, logits="last")
    chat = ours.render_chat([{"role": "user", "content": "What is 2 + 2?"}])
    for text in (*PROMPTS, chat):
        assert runner.tokenize(text).tolist() == ours.encode(text).tolist(), text
    assert ours.encode(chat)[0] == 1  # <|im_start|> parsed as the special token by both
