"""The embedded SmolLM2, dynamic int8: `convert --quantize`, `bundle`, then Google's LiteRT-LM engine runs
model.litertlm and its greedy answer equals our LiteRT runner's and transformers' (fp32) on the chat prompt.

LiteRT-LM's Python API is text-level (text in, decoded text out), so the comparison is of text: our
greedy token ids decoded with tokenizer.json against the engine's streamed text.
"""

from __future__ import annotations

import pytest

from .cli_helpers import run_cli

pytestmark = pytest.mark.slow
pytest.importorskip("litert_lm", reason="litert-lm-api is not installed (pip install 'tinyexport[litertlm]')")

QUESTION = "What is the capital of France? Answer in one sentence."
NEW_TOKENS = 24


def test_smollm2_int8_bundle_runs_in_litertlm_with_our_greedy_answer(tmp_path):
    from tinyexport.artefact import load_artefact
    from tinyexport.resolve import open_checkpoint
    from tinyexport.runners import greedy_generate, open_artefact_runner
    from tinyexport.runners.hf_runner import HFRunner
    from tinyexport.runners.litertlm_runner import LiteRtLmEngine
    from tinyexport.tokenizer import Tokenizer

    art_dir = tmp_path / "smollm2_q8"
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
        str(art_dir),
    )
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = run_cli("bundle", str(art_dir))
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "tokenizer agrees" in res.stdout

    art = load_artefact(art_dir)
    entry = art.manifest["litertlm"]
    assert entry["stop_tokens"] == [art.config.eos_token_id] and entry["chat_template"] and entry["start_token"] is None
    tok = Tokenizer(art.path)
    prompt = tok.render_chat([{"role": "user", "content": QUESTION}])
    ids = tok.encode(prompt)
    eos = art.config.eos_token_id
    ours = greedy_generate(open_artefact_runner(art, threads=2), ids, NEW_TOKENS, eos_token_id=eos).tokens
    hf = greedy_generate(
        HFRunner.from_checkpoint(open_checkpoint("smollm2-135m"), max_len=128), ids, NEW_TOKENS, eos_token_id=eos
    ).tokens
    with LiteRtLmEngine.from_artefact(art, threads=2) as engine:
        assert engine.tokenize(prompt) == ids.tolist()
        assert engine.stop_tokens == [[eos]]
        theirs = engine.generate(prompt, NEW_TOKENS).text
    text = tok.decode([t for t in ours if t != eos])
    assert "Paris" in text and ours[-1] == eos  # stopped on <|im_end|> within NEW_TOKENS
    assert theirs == text
    assert hf == ours
