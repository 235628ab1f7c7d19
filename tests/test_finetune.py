"""LoRA fine-tuning (peft): a zero-B adapter is the identity, a trained adapter changes logits exactly as
hand-merged weights do, the merged checkpoint equals base + unmerged adapter, and a tiny run goes end to end
through ONNX export and ``verify --adapter`` (which catches an export of the unmerged base). Bad input
exits 2 with one line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tinyexport.finetune.lora import LoraSpec, apply_lora, unmerged_model
from tinyexport.models.config import TINY

from .cli_helpers import assert_bad_input, run_cli
from .eval_helpers import tiny_text_checkpoint
from .tiny_models import hf_llama

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 12
IDS = torch.tensor([[5, 77, 120, 33, 9, 200, 41, 41, 18, 250]])
TARGETS = ("q_proj", "v_proj", "down_proj")


def _logits(model) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=IDS).logits[0].float().numpy()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    directory = tiny_text_checkpoint(tmp_path_factory.mktemp("base"), seed=1)
    (directory / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return directory


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "play.txt").write_text(TEXT)
    pairs = [{"instruction": f"Say {w}.", "response": f"{w}, {w}!"} for w in ("yes", "no", "maybe", "never", "soon")]
    (root / "pairs.jsonl").write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    (root / "empty.jsonl").write_text("\n\n")
    (root / "broken.jsonl").write_text(json.dumps(pairs[0]) + "\n{not json\n")
    (root / "keyless.jsonl").write_text(json.dumps({"instruction": "hi"}) + "\n")
    return root


@pytest.fixture(scope="module")
def finetuned(base_dir, data_files, cache, tmp_path_factory):
    """`tinyexport finetune` on the JSONL pairs: merged checkpoint in OUT, adapter in OUT/adapter."""
    out = tmp_path_factory.mktemp("ft") / "lora"
    res = run_cli(
        "finetune", str(data_files / "pairs.jsonl"), "--checkpoint", str(base_dir), "-o", str(out),
        "--steps", "12", "--lr", "0.02", "--seq-len", "64", "--holdout", "0.2",
        "--lora-targets", ",".join(TARGETS), cache=cache,
    )  # fmt: skip
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "held-out perplexity" in res.stdout
    return out


def test_zero_b_adapter_is_the_identity():
    base = hf_llama(TINY, seed=2)
    expected = _logits(base)
    peft_model = apply_lora(base, LoraSpec(targets=TARGETS))
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert len(lora_b) == len(TARGETS) * TINY.num_layers and all(torch.count_nonzero(p) == 0 for p in lora_b)
    np.testing.assert_array_equal(_logits(peft_model), expected)


def test_nonzero_adapter_changes_logits_as_hand_merged_weights_do():
    """Independent of peft's merge: W' = W + (alpha / r) B A written into a fresh model by hand."""
    spec = LoraSpec(targets=TARGETS, rank=4, alpha=12.0)
    base_logits = _logits(hf_llama(TINY, seed=2))
    peft_model = apply_lora(hf_llama(TINY, seed=2), spec)
    torch.manual_seed(5)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    by_hand = hf_llama(TINY, seed=2)
    modules = dict(peft_model.named_modules())
    with torch.no_grad():
        for name, module in by_hand.named_modules():
            if name.rsplit(".", 1)[-1] in TARGETS:
                lora = modules[f"base_model.model.{name}"]
                delta = lora.lora_B["default"].weight @ lora.lora_A["default"].weight
                module.weight += spec.scaling * delta
    theirs, ours = _logits(peft_model), _logits(by_hand)
    assert np.abs(theirs - base_logits).max() > 1e-2  # the adapter really changes the output
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)


def test_merged_checkpoint_equals_base_plus_unmerged_adapter(finetuned, base_dir):
    from tinyexport.finetune.lora import load_base_model, read_adapter
    from tinyexport.resolve import open_checkpoint

    base, merged = open_checkpoint(str(base_dir)), open_checkpoint(str(finetuned))  # OUT is a checkpoint
    assert merged.config == base.config and merged.tokenizer_dir is not None
    assert read_adapter(finetuned / "adapter")["base_fingerprint"] == base.fingerprint()
    unmerged = _logits(unmerged_model(base, finetuned / "adapter"))
    np.testing.assert_allclose(_logits(load_base_model(merged)), unmerged, atol=1e-5, rtol=0)
    assert np.abs(unmerged - _logits(load_base_model(base))).max() > 1e-3  # training moved it
    log = json.loads((finetuned / "train_log.json").read_text())
    assert [r["step"] for r in log] == list(range(1, 13))
    assert all(np.isfinite(r["loss"]) and 0 <= r["token_accuracy"] <= 1 for r in log)
    summary = json.loads((finetuned / "finetune.json").read_text())
    assert summary["data"]["train_examples"] == 4 and summary["data"]["held_out_examples"] == 1
    assert summary["held_out_after"]["tokens"] == summary["held_out_before"]["tokens"] > 0
    assert log[-1]["loss"] < log[0]["loss"]


def test_merged_export_verifies_against_the_unmerged_adapter(finetuned, base_dir, cache, tmp_path):
    """Merged checkpoint -> ONNX -> verify with --adapter passes; the base's own export fails the same check."""
    common = ("--kv-cache-max-len", "64", "--prefill-seq-lens", "8")
    for name, source in (("merged", finetuned), ("base", base_dir)):
        res = run_cli(
            "convert", "--format", "onnx", "--checkpoint", str(source), *common, "-o", str(tmp_path / name), cache=cache
        )
        assert res.code == 0, res.stderr[-2000:]
    verify = ("--adapter", str(finetuned / "adapter"), "--prompt", "<user>Say yes.</user>\n", "--max-new-tokens", "8")
    report = tmp_path / "r.json"
    res = run_cli("verify", str(tmp_path / "merged"), *verify, "--json", str(report), cache=cache)
    assert res.code == 0, res.stdout[-3000:] + res.stderr[-2000:]
    data = json.loads(report.read_text())
    assert "unmerged" in data["reference"]
    (cand,) = data["candidates"]
    assert cand["passed"] and cand["max_abs"] < 1e-4
    res = run_cli("verify", str(tmp_path / "base"), *verify, cache=cache)
    assert res.code == 1, res.stdout[-3000:]  # an export that lost the adapter cannot pass


@pytest.mark.parametrize(
    ("data", "extra", "fragments"),
    [
        ("pairs.jsonl", ("--lora-targets", "q_proj,qkv_proj"), ("qkv_proj", "do not exist", "q_proj,k_proj")),
        ("empty.jsonl", (), ("empty.jsonl", "is empty")),
        ("broken.jsonl", (), ("broken.jsonl:2", "not valid JSON")),
        ("keyless.jsonl", (), ("keyless.jsonl:1", '"response"')),
        ("missing.txt", (), ("missing.txt does not exist",)),
    ],
)
def test_bad_training_input_is_one_line_exit_2(base_dir, data_files, cache, tmp_path, data, extra, fragments):
    out = tmp_path / "out"
    res = run_cli(
        "finetune", str(data_files / data), "--checkpoint", str(base_dir), "-o", str(out), *extra, cache=cache
    )
    assert_bad_input(res, *fragments)
    assert not out.exists()


def test_adapter_of_another_base_is_refused(finetuned, tmp_path, cache):
    other = tiny_text_checkpoint(tmp_path / "other", seed=9)
    res = run_cli("convert", "--format", "onnx", "--checkpoint", str(other), "--kv-cache-max-len", "64",
                  "--prefill-seq-lens", "8", "-o", str(tmp_path / "art"), cache=cache)  # fmt: skip
    assert res.code == 0, res.stderr[-2000:]
    res = run_cli(
        "verify",
        str(tmp_path / "art"),
        "--checkpoint",
        str(other),
        "--adapter",
        str(finetuned / "adapter"),
        cache=cache,
    )
    assert_bad_input(res, "trained on another base checkpoint", "pass --checkpoint")


def test_lora_spec_refuses_bad_values():
    from tinyexport.finetune.lora import LoraError

    with pytest.raises(LoraError, match="positive"):
        LoraSpec(rank=0)
    with pytest.raises(LoraError, match="empty"):
        LoraSpec(targets=())
    assert dataclasses.replace(LoraSpec(), rank=4).scaling == 4.0
