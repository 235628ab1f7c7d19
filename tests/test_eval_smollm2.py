"""`tinyexport eval perplexity` on the embedded SmolLM2 (real weights, real tokenizer) against a plain
transformers computation of the same protocol, tokenized by transformers' own AutoTokenizer."""

from __future__ import annotations

import json

import pytest

from .cli_helpers import run_cli
from .eval_helpers import transformers_sliding_perplexity

pytestmark = pytest.mark.slow

GETTYSBURG = (
    "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in "
    "Liberty, and dedicated to the proposition that all men are created equal. Now we are engaged in a great "
    "civil war, testing whether that nation, or any nation so conceived and so dedicated, can long endure. We "
    "are met on a great battle-field of that war. We have come to dedicate a portion of that field, as a final "
    "resting place for those who here gave their lives that that nation might live. It is altogether fitting "
    "and proper that we should do this. But, in a larger sense, we can not dedicate -- we can not consecrate "
    "-- we can not hallow -- this ground. The brave men, living and dead, who struggled here, have consecrated "
    "it, far above our poor power to add or detract. The world will little note, nor long remember what we say "
    "here, but it can never forget what they did here.\n"
)


def test_smollm2_perplexity_matches_transformers(tmp_path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from tinyexport.paths import cache_dir
    from tinyexport.resolve import open_checkpoint

    ckpt = open_checkpoint("smollm2-135m")
    cache = tmp_path / "cache"  # fresh reference store; the materialised checkpoint is shared
    cache.mkdir()
    (cache / "checkpoints").symlink_to(cache_dir() / "checkpoints")
    text = tmp_path / "gettysburg.txt"
    text.write_text(GETTYSBURG)
    out = tmp_path / "ppl.json"
    res = run_cli(
        "eval", "perplexity", "--text", str(text), "--window", "128", "--stride", "48", "--json", str(out), cache=cache
    )
    assert res.code == 0, res.stderr
    report = json.loads(out.read_text())

    ids = AutoTokenizer.from_pretrained(str(ckpt.directory))(GETTYSBURG, return_tensors="np")["input_ids"][0]
    assert report["text"]["tokens"] == ids.size > 150
    model = LlamaForCausalLM.from_pretrained(str(ckpt.directory), attn_implementation="eager").eval()
    expected, count = transformers_sliding_perplexity(model, ids.astype("int64"), 128, 48)
    hf, ours = report["candidates"]
    assert hf["name"] == "hf" and ours["name"] == "torch:standard"
    assert hf["scored_tokens"] == count
    assert hf["perplexity"] == pytest.approx(expected, rel=1e-3)  # the bound (0.1%)
    assert hf["perplexity"] == pytest.approx(expected, rel=1e-5)  # what fp32 actually gives
    assert 5 < hf["perplexity"] < 60  # real weights on real English
    assert ours["perplexity"] == pytest.approx(expected, rel=1e-4)
    assert ours["top1_agreement"] == 1.0 and ours["kl_mean"] < 1e-6
    assert hf["kl_mean"] < 1e-7  # the fixed16 store's resolution
