"""SmolLM2 (real weights, real tokenizer) to ONNX int8 with a bare --quantize, verified as a file, and
run by onnxruntime-genai and by Optimum's ORTModelForCausalLM from the directory as it is."""

from __future__ import annotations

import json

import pytest

from tinyexport.formats.recipes import BARE_QUANTIZE, tolerance_for

from .cli_helpers import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_artefact(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2_onnx") / "smollm2_onnx_q8"
    res = run_cli("convert", "--format", "onnx", "--quantize", "-o", str(out))
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return out


def test_int8_artefact_passes_verify(int8_artefact, tmp_path):
    manifest = json.loads((int8_artefact / "manifest.json").read_text())
    assert manifest["recipe"] == BARE_QUANTIZE == "dynamic_int8"
    assert manifest["onnx"]["lm_head_untied"] is True  # SmolLM2 ties lm_head to the embedding
    assert {"tokenizer.json", "genai_config.json", "model.onnx"} <= set(manifest["files"])
    report = tmp_path / "verify.json"
    res = run_cli("verify", str(int8_artefact), "--max-new-tokens", "24", "--json", str(report))
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-2000:]
    (cand,) = json.loads(report.read_text())["candidates"]
    tol = tolerance_for("onnx", "dynamic_int8")
    assert cand["passed"] and cand["top1_agreement"] >= tol.min_top1 and cand["kl"] <= tol.max_kl
    assert cand["max_abs"] > 1e-3  # quantized, not a copy of the fp32 graph
    assert "clock" in cand["text"]


def _genai_greedy(og, directory, prompt: list[int], new_tokens: int) -> list[int]:
    model = og.Model(str(directory))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + new_tokens, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    out = []
    while not generator.is_done():
        generator.generate_next_token()
        out.append(int(generator.get_next_tokens()[0]))
    return out


def test_onnxruntime_genai_generates_what_our_runner_generates(int8_artefact):
    og = pytest.importorskip("onnxruntime_genai")
    from tinyexport.runners import greedy_generate, open_artefact_runner
    from tinyexport.tokenizer import Tokenizer

    tokenizer = Tokenizer(int8_artefact)
    prompt = tokenizer.encode("The capital of France is")
    theirs = _genai_greedy(og, int8_artefact, prompt.tolist(), 12)
    ours = greedy_generate(open_artefact_runner(int8_artefact), prompt, 12, eos_token_id=2).tokens
    assert theirs == ours and len(ours) >= 4
    assert "Paris" in tokenizer.decode(ours)


def test_onnxruntime_genai_tokenizer_encodes_like_ours(int8_artefact):
    og = pytest.importorskip("onnxruntime_genai")
    from tinyexport.tokenizer import Tokenizer

    text = "The capital of France is"
    theirs = [int(t) for t in og.Tokenizer(og.Model(str(int8_artefact))).encode(text)]
    assert theirs == Tokenizer(int8_artefact).encode(text).tolist()


def test_optimum_generates_what_our_runner_generates(int8_artefact):
    """MatMulNBits int8 through Optimum: the directory loads as it is and greedy ids equal ours."""
    import optimum.onnxruntime as optimum_ort
    import torch

    from tinyexport.runners import greedy_generate, open_artefact_runner
    from tinyexport.tokenizer import Tokenizer

    generation = json.loads((int8_artefact / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2 and generation["bos_token_id"] == 1
    tokenizer = Tokenizer(int8_artefact)
    prompt = tokenizer.encode("The capital of France is")
    model = optimum_ort.ORTModelForCausalLM.from_pretrained(str(int8_artefact))
    out = model.generate(torch.tensor(prompt)[None], max_new_tokens=12, do_sample=False)
    theirs = out[0, len(prompt) :].tolist()
    ours = greedy_generate(open_artefact_runner(int8_artefact), prompt, 12, eos_token_id=2).tokens
    assert theirs == ours and len(ours) >= 4
    assert "Paris" in tokenizer.decode(ours)
