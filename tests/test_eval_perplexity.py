"""`tinyexport eval perplexity`: the sliding-window protocol, equality with a plain transformers
computation, KL / top-1 against the stored reference, the reference cache, and bad input."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from tinyexport.verify.windows import SlidingWindow

from .cli_helpers import assert_bad_input, run_cli
from .eval_helpers import (
    STRIDE,
    TEXT,
    WINDOW,
    LastPositionOnly,
    bigram_checkpoint,
    bigram_logprobs,
    byte_ids,
    tiny_text_checkpoint,
    transformers_sliding_perplexity,
    write_byte_tokenizer,
)


@pytest.mark.parametrize("n, window, stride", [(96, 96, 40), (300, 96, 40), (301, 64, 64), (250, 10, 1), (97, 96, 96)])
def test_windows_score_each_token_once_with_context(n, window, stride):
    protocol = SlidingWindow(window, stride)
    spans = protocol.spans(n)
    scored = [t for s in spans for t in range(s.first_target, s.end)]
    if stride < window:
        assert scored == list(range(1, n))  # every token but the first, once, in order
    else:  # no overlap: a window's first token has no context inside it and is not scored (as in transformers)
        assert scored == [t for t in range(1, n) if t % window != 0]
    for s in spans:
        assert s.end - s.begin <= window and s.begin < s.first_target
        if s.begin > 0 and stride < window:
            assert s.first_target - s.begin >= window - stride
    assert spans[-1].end == n and protocol.scored_tokens(n) == len(scored)


def test_window_protocol_refuses_bad_values():
    for window, stride in [(1, 1), (64, 0), (64, 65)]:
        with pytest.raises(ValueError):
            SlidingWindow(window, stride)
    with pytest.raises(ValueError, match="fewer than one window"):
        SlidingWindow(64, 32).spans(63)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_text_checkpoint(tmp_path_factory.mktemp("tiny_text"), seed=3)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "macbeth_5_5.txt"
    path.write_text(TEXT)
    return path


def test_cli_matches_transformers_kl_zero_and_reuses_the_reference(tmp_path, tiny_dir, text_file):
    from transformers import LlamaForCausalLM

    out = tmp_path / "ppl.json"
    args = (
        "eval",
        "perplexity",
        "--checkpoint",
        str(tiny_dir),
        "--text",
        str(text_file),
        "--window",
        str(WINDOW),
        "--stride",
        str(STRIDE),
        "--attention",
        "standard",
        "--attention",
        "flash",
        "--reference-precision",
        "float32",
        "--json",
        str(out),
    )
    res = run_cli(*args, cache=tmp_path / "cache")
    assert res.code == 0, res.stderr
    assert "perplexity on macbeth_5_5.txt" in res.stdout and res.stderr.strip() == ""
    report = json.loads(out.read_text())
    ids = byte_ids(TEXT)
    assert report["text"] == {**report["text"], "path": str(text_file.resolve()), "tokens": ids.size}
    assert report["protocol"]["window"] == WINDOW and report["protocol"]["stride"] == STRIDE
    names = [c["name"] for c in report["candidates"]]
    assert names == ["hf", "torch:standard", "torch:flash"]
    for cand in report["candidates"]:
        assert {"name", "perplexity", "delta_ppl", "kl_mean", "kl_p99", "top1_agreement", "seconds"} <= set(cand)

    model = LlamaForCausalLM.from_pretrained(str(tiny_dir), attn_implementation="eager").eval()
    expected, count = transformers_sliding_perplexity(model, ids, WINDOW, STRIDE)
    hf, standard, flash = report["candidates"]
    assert hf["scored_tokens"] == count == ids.size - 1
    assert hf["perplexity"] == pytest.approx(expected, rel=1e-6)  # the issue asks for 0.1%; fp32 gives far better
    assert hf["delta_ppl"] == 0.0 and hf["top1_agreement"] == 1.0 and hf["kl_mean"] < 1e-12
    for cand in (standard, flash):  # the same model: KL 0 (float32 store), same argmax, same perplexity
        assert cand["perplexity"] == pytest.approx(expected, rel=1e-5)
        assert abs(cand["delta_ppl"]) < 1e-3 and cand["kl_mean"] < 1e-9 and cand["kl_p99"] < 1e-9
        assert cand["top1_agreement"] == 1.0
    assert not hf["cached"]
    stores = list((tmp_path / "cache" / "eval-reference").iterdir())
    assert len(stores) == 1

    again = run_cli(*args[:-2], "--attention", "sdpa", "--json", str(out), cache=tmp_path / "cache")
    assert again.code == 0, again.stderr
    second = json.loads(out.read_text())
    assert second["candidates"][0]["cached"] and second["candidates"][0]["perplexity"] == hf["perplexity"]
    assert list((tmp_path / "cache" / "eval-reference").iterdir()) == stores


def test_reference_pass_runs_sdpa_and_equals_eager(tmp_path, tiny_dir):
    """The perplexity reference pass opens transformers with sdpa attention (2.3x faster per long window);
    its logits equal the eager reference's to float rounding, and the store key records which ran."""
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.resolve import Candidate
    from tinyexport.verify.evaluation import REFERENCE_PASS
    from tinyexport.verify.reference_store import ReferenceKey

    ckpt = resolve_checkpoint(str(tiny_dir), cache=tmp_path)
    ids = byte_ids(TEXT)[:WINDOW]
    eager = Candidate("hf").open(ckpt, max_len=WINDOW).prefill(ids)
    sdpa = REFERENCE_PASS.open(ckpt, max_len=WINDOW).prefill(ids)
    assert REFERENCE_PASS.attention == "sdpa" and REFERENCE_PASS.label == "hf"
    assert eager.shape == sdpa.shape == (ids.size, ckpt.config.vocab_size)
    np.testing.assert_allclose(sdpa, eager, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="flash"):
        Candidate("hf", "flash").open(ckpt, max_len=WINDOW)
    base = dict(checkpoint_fingerprint="c", tokenizer_fingerprint="t", text_sha256="x", window=8, stride=4, tokens=9)
    digests = {ReferenceKey(**base, precision="fixed16", attention=a).digest() for a in ("eager", "sdpa")}
    assert len(digests) == 2  # a store built by one implementation is never read as the other's


def _store(tmp_path, ckpt_dir, ids, protocol, precision):
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.runners.hf_runner import HFRunner
    from tinyexport.verify.quality import score_text
    from tinyexport.verify.reference_store import ReferenceKey, ReferenceStore, reference_writer

    ckpt = resolve_checkpoint(str(ckpt_dir), cache=tmp_path)
    key = ReferenceKey(ckpt.fingerprint(), "bytes", "text", protocol.window, protocol.stride, ids.size, precision)
    with reference_writer(key, tmp_path, protocol.scored_tokens(ids.size), ckpt.config.vocab_size) as writer:
        score_text(HFRunner.from_checkpoint(ckpt, max_len=protocol.window), ids, protocol, writer=writer)
        writer.finish({})
    return ckpt, ReferenceStore.open(key, tmp_path)


def test_kl_of_perturbed_model_matches_an_independent_computation(tmp_path, tiny_dir):
    """KL(ref ‖ cand) per scored token, from two transformers models and torch's own kl_div."""
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.runners.torch_runner import TorchRunner
    from tinyexport.verify.quality import score_text

    perturbed = tmp_path / "perturbed"
    shutil.copytree(tiny_dir, perturbed)
    model = LlamaForCausalLM.from_pretrained(str(perturbed)).eval()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.add_(0.3 * p.std() * torch.randn(p.shape, generator=gen))
    model.save_pretrained(str(perturbed))

    ids = byte_ids(TEXT)
    protocol = SlidingWindow(WINDOW, STRIDE)
    expected = []
    ref_model = LlamaForCausalLM.from_pretrained(str(tiny_dir), attn_implementation="eager").eval()
    for span in protocol.spans(ids.size):
        window = torch.from_numpy(ids[span.begin : span.end])[None]
        rows = slice(span.first_target - span.begin - 1, span.end - span.begin - 1)
        with torch.no_grad():
            lp = F.log_softmax(ref_model(window).logits[0, rows].double(), -1)
            lq = F.log_softmax(model(window).logits[0, rows].double(), -1)
        expected.append(F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).numpy())
    expected = np.concatenate(expected)
    assert expected.mean() > 1e-3  # the perturbation is visible

    cand = TorchRunner.from_checkpoint(resolve_checkpoint(str(perturbed), cache=tmp_path), max_len=WINDOW)
    for precision, rel in (("float32", 1e-6), ("fixed16", 1e-3)):
        _, store = _store(tmp_path / precision, tiny_dir, ids, protocol, precision)
        scores = score_text(cand, ids, protocol, reference=store)
        np.testing.assert_allclose(scores.kl, expected, rtol=rel, atol=1e-9)
        assert 0 < scores.top1.mean() < 1
        assert store.resolution.mean() < (1e-14 if precision == "float32" else 1e-7)


def test_bigram_model_perplexity_by_hand_on_both_logits_paths(tmp_path):
    """A model whose next-token distribution is a known table: perplexity is exact arithmetic, and an
    off-by-one in which logits score which token would change it by orders of magnitude."""
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.runners.torch_runner import TorchRunner
    from tinyexport.verify.quality import score_text

    ids = byte_ids(TEXT)
    table = np.random.default_rng(7).normal(0, 1, (256, 256))
    table[ids[:-1], ids[1:]] += 10.0  # the model has learnt this text's bigrams
    ckpt = resolve_checkpoint(str(bigram_checkpoint(tmp_path / "bigram", table)), cache=tmp_path)
    lp = bigram_logprobs(table)
    by_hand = math.exp(-np.mean(lp[ids[:-1], ids[1:]]))
    runner = TorchRunner.from_checkpoint(ckpt, max_len=64)
    for r in (runner, LastPositionOnly(runner)):
        scores = score_text(r, ids, SlidingWindow(64, 20))
        assert math.exp(scores.nll.mean()) == pytest.approx(by_hand, rel=1e-5)
    shifted = math.exp(-np.mean(lp[ids[1:-1], ids[1:-1]]))  # scoring each token with its own position's logits
    assert by_hand < 30 and shifted > 100 * by_hand


@pytest.mark.parametrize(
    "content, fragments",
    [
        (b"", ["is empty"]),
        (b"  \n\t\n", ["is empty"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["binary file"]),
        (b"caf\xe9 au lait", ["not UTF-8", "0xe9", "offset 3"]),
    ],
)
def test_bad_text_files_exit_2(tmp_path, tiny_dir, content, fragments):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    res = run_cli(
        "eval",
        "perplexity",
        "--checkpoint",
        str(tiny_dir),
        "--text",
        str(path),
        "--window",
        "32",
        "--stride",
        "16",
        cache=tmp_path,
    )
    assert_bad_input(res, "input.txt", *fragments)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--window", "600", "--stride", "300"], ["--window 600", "max_position_embeddings (512)"]),
        (["--window", "500", "--stride", "100"], ["has 403 tokens", "fewer than one --window of 500"]),
        (
            ["--window", "64", "--stride", "32", "--max-tokens", "50"],
            ["has 403 tokens (--max-tokens 50)", "--window of 64"],
        ),
        (["--window", "64", "--stride", "65"], ["--stride", "between 1 and the window (64)"]),
        (["--window", "64", "--stride", "32", "--text", "/no/such/file.txt"], ["/no/such/file.txt", "does not exist"]),
    ],
)
def test_bad_protocol_or_text_exit_2(tmp_path, tiny_dir, text_file, extra, fragments):
    res = run_cli("eval", "perplexity", "--checkpoint", str(tiny_dir), "--text", str(text_file), *extra, cache=tmp_path)
    assert_bad_input(res, *fragments)


def test_checkpoint_without_tokenizer_and_json_to_missing_dir_exit_2(tmp_path, tiny_dir, text_file):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_dir, bare)
    (bare / "tokenizer.json").unlink()
    res = run_cli(
        "eval",
        "perplexity",
        "--checkpoint",
        str(bare),
        "--text",
        str(text_file),
        "--window",
        "64",
        "--stride",
        "32",
        cache=tmp_path,
    )
    assert_bad_input(res, "has no tokenizer")
    res = run_cli(
        "eval", "perplexity", "--checkpoint", str(tiny_dir), "--json", str(tmp_path / "no" / "r.json"), cache=tmp_path
    )
    assert_bad_input(res, "does not exist")


def test_artefact_with_another_vocabulary_is_refused(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models

    from tinyexport.artefact import Artefact
    from tinyexport.errors import UserError
    from tinyexport.resolve import check_same_vocabulary
    from tinyexport.tokenizer import Tokenizer

    (tmp_path / "ours").mkdir()
    ours = Tokenizer(write_byte_tokenizer(tmp_path / "ours"))
    check_same_vocabulary(ours, Artefact(tmp_path / "ours", {}))  # same vocabulary: accepted
    other = tmp_path / "other"
    other.mkdir()
    HFTokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]")).save(str(other / "tokenizer.json"))
    with pytest.raises(UserError, match="different tokenizer"):
        check_same_vocabulary(ours, Artefact(other, {}))
    with pytest.raises(UserError, match=r"no tokenizer\.json"):
        check_same_vocabulary(ours, Artefact(tmp_path, {}))


def test_abandoned_temp_stores_are_removed_live_ones_kept(tmp_path):
    import os
    import time

    from tinyexport.verify.reference_store import ABANDONED_AFTER_S, remove_abandoned

    old, live = tmp_path / ".tmp-old-x", tmp_path / ".tmp-live-y"
    for d in (old, live):
        d.mkdir()
        (d / "logprobs.npy").write_bytes(b"x")
    past = time.time() - ABANDONED_AFTER_S - 60
    for path in (old / "logprobs.npy", old):
        os.utime(path, (past, past))
    remove_abandoned(tmp_path)
    assert not old.exists() and live.exists()
