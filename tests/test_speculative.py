"""Speculative decoding: greedy output equals the target's own greedy decoding on torch, ONNX and TFLite
targets for k = 1..5 (drafts that are always right, never right, and in between); speculative sampling
reproduces the target's distribution (chi-square); rollback leaves every runner equal to a fresh one;
bad pairs and options exit 2 in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tinyexport.generate import SamplingConfig
from tinyexport.models.config import TINY
from tinyexport.runners.decoding import greedy_generate
from tinyexport.speculative import (
    SpeculativeError,
    SpeculativeStats,
    accept_sampled,
    check_pair,
    distribution,
    speculative_tokens,
)

from .cli_helpers import assert_bad_input, run_cli
from .spec_helpers import chi2_critical, chi_square, text_checkpoint

CACHE = 64
PROMPT = np.random.default_rng(11).integers(0, 256, 9)
NEW = 40


def _open(directory):
    from tinyexport.resolve import open_checkpoint

    return open_checkpoint(str(directory))


def _torch(directory, max_len=CACHE):
    from tinyexport.runners.torch_runner import TorchRunner

    return TorchRunner.from_checkpoint(_open(directory), max_len=max_len)


def _export(directory, target, fmt, recipe="fp32", logits="last", cache=CACHE, transforms=(), **options):
    from tinyexport.converters.export_config import ExportConfig
    from tinyexport.converters.pipeline import export_artefact
    from tinyexport.models.transforms import parse_transform
    from tinyexport.resolve import open_checkpoint

    ckpt = open_checkpoint(str(directory), transforms=tuple(parse_transform(t) for t in transforms))
    config = ExportConfig(format=fmt, recipe=recipe, kv_cache_max_len=cache, prefill_logits=logits, **options)
    export_artefact(ckpt, config, target, source_ref={"spec": str(directory)})
    return target


def _truncated(directory, layers: int):
    """A torch runner of the checkpoint's first ``layers`` layers + final norm + LM head."""
    from tinyexport.models.transforms import parse_transform
    from tinyexport.resolve import open_checkpoint
    from tinyexport.runners.torch_runner import TorchRunner

    ckpt = open_checkpoint(str(directory), transforms=(parse_transform(f"truncate-layers={layers}"),))
    return TorchRunner.from_checkpoint(ckpt, max_len=CACHE)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("spec_ckpts")
    return {
        "target": text_checkpoint(root / "target", seed=3),
        "other": text_checkpoint(root / "other", seed=5),  # same shape, other weights: mostly rejected
        "zero": text_checkpoint(root / "zero", seed=3, zero_lm_head=True),  # always proposes token 0
        "vocab257": text_checkpoint(root / "v257", seed=3, config=dataclasses.replace(TINY, vocab_size=257)),
    }


@pytest.fixture(scope="module")
def arts(tmp_path_factory, ckpts):
    root = tmp_path_factory.mktemp("spec_arts")
    t = ckpts["target"]
    return {
        "onnx_all": _export(t, root / "onnx_all", "onnx", logits="all", prefill_seq_lens=(8,)),
        "onnx_int8": _export(t, root / "onnx_int8", "onnx", recipe="dynamic_int8", prefill_seq_lens=(8,)),
        "tflite_all": _export(t, root / "tflite_all", "tflite", logits="all", prefill_seq_lens=(4, 8)),
        "tflite_last": _export(t, root / "tflite_last", "tflite", prefill_seq_lens=(4, 8)),
        # layer-truncated self-draft: 1 of TINY's 2 layers
        "onnx_trunc1": _export(
            t, root / "onnx_trunc1", "onnx", prefill_seq_lens=(8,), transforms=("truncate-layers=1",)
        ),
    }


def _artefact(path):
    from tinyexport.runners import open_artefact_runner

    return open_artefact_runner(path, threads=2)


def _check_greedy(target, draft, expect_acceptance=None):
    reference = greedy_generate(target, PROMPT, NEW).tokens
    rates = []
    for k in range(1, 6):
        stats = SpeculativeStats()
        got = list(speculative_tokens(target, draft, PROMPT, NEW, k, stats=stats))
        assert got == reference, (k, target.name, draft.name)
        assert stats.new_tokens == NEW and stats.drafted >= stats.accepted
        # every round emits its accepted tokens plus one of the target's (the last one may be cut short)
        assert stats.accepted + stats.rounds - 1 <= stats.new_tokens - 1 <= stats.accepted + stats.rounds
        rates.append(stats.acceptance_rate)
        if expect_acceptance is not None:
            assert stats.acceptance_rate == expect_acceptance, (k, stats)
    return reference, rates


def test_torch_target_all_accepted_all_rejected_and_mixed(ckpts):
    target = _torch(ckpts["target"])
    _, rates = _check_greedy(target, _torch(ckpts["target"]), expect_acceptance=1.0)
    reference = greedy_generate(target, PROMPT, NEW).tokens
    assert 0 not in reference  # so the zero-head draft (always token 0) is always wrong
    _check_greedy(target, _torch(ckpts["zero"]), expect_acceptance=0.0)
    _, rates = _check_greedy(target, _torch(ckpts["other"]))
    assert max(rates) < 0.5


def test_onnx_target_with_int8_and_foreign_drafts(ckpts, arts):
    target = _artefact(arts["onnx_all"])
    np.testing.assert_array_equal(
        greedy_generate(target, PROMPT, NEW).tokens, greedy_generate(_torch(ckpts["target"]), PROMPT, NEW).tokens
    )
    _check_greedy(target, _artefact(arts["onnx_int8"]))
    _check_greedy(target, _torch(ckpts["zero"]), expect_acceptance=0.0)
    _check_greedy(target, _artefact(arts["onnx_all"]), expect_acceptance=1.0)


def test_tflite_target_with_onnx_and_torch_drafts(ckpts, arts):
    target = _artefact(arts["tflite_all"])
    _check_greedy(target, _artefact(arts["tflite_last"]), expect_acceptance=1.0)
    _check_greedy(target, _artefact(arts["onnx_int8"]))
    _check_greedy(target, _torch(ckpts["other"]))


def test_speculative_sampling_keeps_the_target_distribution_one_step():
    """accept_sampled alone: draft proposal d ~ q, output ~ p exactly (chi-square, 60k draws)."""
    rng = np.random.default_rng(0)
    p = np.array([0.05, 0.4, 0.1, 0.25, 0.2, 0.0])
    q = np.array([0.3, 0.1, 0.1, 0.1, 0.2, 0.2])
    counts = np.zeros(6, int)
    for _ in range(60_000):
        d = int(rng.choice(6, p=q))
        accepted, following = accept_sampled([d], [q], [p, p], rng)
        counts[d if accepted else following] += 1
    stat, df = chi_square(counts, p)
    assert stat < chi2_critical(df), (counts / counts.sum(), p)
    assert counts[5] == 0  # never emits what the target gives probability 0


@pytest.mark.parametrize("min_draft_prob", [0.0, 0.7])
def test_speculative_sampling_matches_the_target_joint_distribution(tmp_path, min_draft_prob):
    """Three new tokens from a vocab-3 target with a vocab-3 draft of other weights (k = 2): the joint
    frequency of the 27 outcomes against the target's exact joint probabilities; also when rounds stop
    early on an unsure draft token (``min_draft_prob``)."""
    cfg = dataclasses.replace(TINY, vocab_size=3)
    target = _torch(text_checkpoint(tmp_path / "t", seed=1, config=cfg), max_len=16)
    draft = _torch(text_checkpoint(tmp_path / "d", seed=2, config=cfg), max_len=16)
    sampling = SamplingConfig(temperature=0.05)  # random-init logits are ~0.1 apart: sharpen them
    prompt = np.array([1, 2, 0])
    exact = np.zeros((3, 3, 3))
    for a in range(3):
        for b in range(3):
            target.reset()
            rows = target.prefill(np.array([*prompt, a, b]))[-3:]
            pa, pb, pc = (distribution(r, sampling) for r in rows)
            exact[a, b] = pa[a] * pb[b] * pc
    counts = np.zeros((3, 3, 3), int)
    accepted = drafted = rounds_cut = 0
    for seed in range(700):
        stats = SpeculativeStats()
        a, b, c = speculative_tokens(
            target,
            draft,
            prompt,
            3,
            2,
            dataclasses.replace(sampling, seed=seed),
            stats=stats,
            min_draft_prob=min_draft_prob,
        )
        counts[a, b, c] += 1
        accepted, drafted = accepted + stats.accepted, drafted + stats.drafted
        rounds_cut += stats.stopped_early
    assert 0.2 < accepted / drafted < 0.95  # both branches (accept, resample) were exercised
    assert (rounds_cut > 0) == (min_draft_prob > 0)  # the early stop really happened (and only when asked)
    stat, df = chi_square(counts.ravel(), exact.ravel())
    assert stat < chi2_critical(df), stat


def test_min_draft_prob_shortens_rounds_never_the_output(ckpts):
    """An unsure draft (a tiny random model: top probability far below 0.5) stops every round after one
    proposal; the output is still the target's greedy. A negligible threshold is plain fixed-k."""
    target, draft = _torch(ckpts["target"]), _torch(ckpts["other"])
    reference = greedy_generate(target, PROMPT, NEW).tokens
    for k in (1, 3, 5):
        cut, plain = SpeculativeStats(), SpeculativeStats()
        assert list(speculative_tokens(target, draft, PROMPT, NEW, k, stats=cut, min_draft_prob=0.5)) == reference
        assert cut.drafted == cut.rounds  # one proposal per round
        assert (cut.stopped_early > 0) == (k > 1)  # k = 1 rounds have nothing to cut
        assert list(speculative_tokens(target, draft, PROMPT, NEW, k, stats=plain, min_draft_prob=1e-9)) == reference
        assert plain.drafted > plain.rounds or k == 1
    with pytest.raises(SpeculativeError, match="draft-min-prob"):
        next(speculative_tokens(target, draft, PROMPT, NEW, 3, min_draft_prob=1.0))


def _rollback_equals_fresh(make):
    """Prefill, run 5 junk tokens, roll back: the next logits (one token, then three) equal a fresh
    runner's at the same position — the stale slots are never read."""
    junk = np.array([7, 7, 200, 3, 99])
    rolled, fresh = make(), make()
    rolled.prefill(PROMPT)
    rolled.prefill(junk)
    rolled.rollback(PROMPT.size)
    assert rolled.position == PROMPT.size
    fresh.prefill(PROMPT)
    np.testing.assert_array_equal(rolled.decode(42), fresh.decode(42))
    np.testing.assert_array_equal(rolled.prefill(np.array([5, 6, 8])), fresh.prefill(np.array([5, 6, 8])))
    rolled.rollback(2)  # into the first prefill: its slots 0-1 came from a 9-token call, the fresh one's
    fresh.reset()  # from a 2-token call, so they agree to float rounding only
    fresh.prefill(PROMPT[:2])
    np.testing.assert_allclose(rolled.decode(9), fresh.decode(9), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="roll back"):
        rolled.rollback(rolled.position + 1)


def test_rollback_equals_a_fresh_runner_torch_and_hf(ckpts):
    from tinyexport.runners.hf_runner import HFRunner

    _rollback_equals_fresh(lambda: _torch(ckpts["target"]))
    _rollback_equals_fresh(lambda: HFRunner.from_checkpoint(_open(ckpts["target"]), max_len=CACHE))


def test_rollback_equals_a_fresh_runner_onnx_and_tflite(arts):
    for name in ("onnx_all", "onnx_int8", "tflite_all", "tflite_last"):
        _rollback_equals_fresh(lambda name=name: _artefact(arts[name]))


def test_pair_checks(ckpts, arts):
    target = _artefact(arts["tflite_all"])
    draft = _torch(ckpts["target"])
    with pytest.raises(SpeculativeError, match="-k must be at least 1"):
        check_pair(target, draft, 0)
    with pytest.raises(SpeculativeError, match="longest prefill signature is 8"):
        check_pair(target, draft, 8)
    check_pair(target, draft, 7)
    with pytest.raises(SpeculativeError, match="--prefill-logits all"):
        check_pair(_artefact(arts["tflite_last"]), draft, 2)
    with pytest.raises(SpeculativeError, match="vocabulary of 257"):
        check_pair(target, _torch(ckpts["vocab257"]), 2)
    with pytest.raises(SpeculativeError, match="different tokenizers"):
        check_pair(target, draft, 2, target_vocab="a", draft_vocab="b")
    with pytest.raises(SpeculativeError, match="KV cache of 64"):
        check_pair(target, draft, 2, needed_tokens=65)


def test_generate_cli_draft_output_and_bench(arts, tmp_path):
    plain = run_cli("generate", str(arts["onnx_all"]), "--prompt", "hello", "--max-new-tokens", "20")
    assert plain.code == 0, plain.stderr
    spec = run_cli(
        "generate", str(arts["onnx_all"]), "--draft", str(arts["onnx_int8"]), "-k", "3", "--prompt", "hello",
        "--max-new-tokens", "20", "--bench", "1", "--json", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert spec.code == 0, spec.stderr
    assert spec.stdout == plain.stdout
    assert "acceptance" in spec.stderr and "tokens per target call" in spec.stderr
    assert "output identical" in spec.stderr
    import json

    report = json.loads((tmp_path / "s.json").read_text())
    assert report["identical"] is True and report["k"] == 3 and report["new_tokens"] == 20


def _generate(*args: str):
    return run_cli("generate", *args, "--prompt", "hello", "--max-new-tokens", "8")


def test_generate_cli_bad_drafts(ckpts, arts, tmp_path):
    target = str(arts["onnx_all"])
    v257 = _export(ckpts["vocab257"], tmp_path / "v257", "onnx", prefill_seq_lens=(8,))
    assert_bad_input(_generate(target, "--draft", str(v257)), "vocabulary of 257", "same tokenizer")
    other_tok = tmp_path / "other_tok"
    import shutil

    shutil.copytree(arts["onnx_int8"], other_tok)
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({f"w{i}": i for i in range(256)}, unk_token="w0")).save(
        str(other_tok / "tokenizer.json")
    )
    import json

    from tinyexport.artefact import write_manifest

    manifest = json.loads((other_tok / "manifest.json").read_text())
    manifest.pop("files", None)
    write_manifest(other_tok, manifest)
    assert_bad_input(_generate(target, "--draft", str(other_tok)), "different tokenizers")
    assert_bad_input(_generate(target, "--draft", str(arts["onnx_int8"]), "-k", "0"), "-k must be")
    assert_bad_input(
        _generate(str(arts["tflite_all"]), "--draft", str(arts["onnx_int8"]), "-k", "9"),
        "longest prefill signature is 8",
    )
    assert_bad_input(_generate(str(arts["tflite_last"]), "--draft", str(arts["onnx_int8"])), "--prefill-logits all")
    short = _export(ckpts["target"], tmp_path / "short", "onnx", cache=32, prefill_seq_lens=(8,))
    assert_bad_input(
        run_cli("generate", target, "--draft", str(short), "--max-new-tokens", "40", "--prompt", "hello"),
        "draft short",
        "KV cache of 32",
    )


def test_rollback_equals_a_fresh_runner_gguf(tmp_path):
    """llama.cpp: rollback drops the cache cells from ``position`` on; then the same as a fresh context."""
    pytest.importorskip("llama_cpp", reason="the GGUF runner needs llama-cpp-python (tinyexport[runtime])")
    from .tiny_models import save_hf_checkpoint

    directory = save_hf_checkpoint(TINY, tmp_path / "hf", seed=3)
    art = _export(directory, tmp_path / "gguf", "gguf", prefill_seq_lens=(8,))
    _rollback_equals_fresh(lambda: _artefact(art))


def test_truncated_draft_is_the_early_exit_and_keeps_greedy_exact(ckpts, arts):
    """truncate-layers=1: its logits are the full model's layer-0 output through the final norm and LM
    head (hooked on the untruncated model); as a draft (torch, and its ONNX export) the
    speculative output equals the ONNX and TFLite targets' own greedy decoding for k = 1..5."""
    import torch

    from tinyexport.models.llama import empty_kv_cache
    from tinyexport.models.loading import load_model

    full = load_model(_open(ckpts["target"]), max_seq_len=CACHE).eval()
    captured = {}
    full.layers[0].register_forward_hook(lambda module, args, out: captured.__setitem__("h", out[0]))
    ids = torch.as_tensor(PROMPT).reshape(1, -1)
    with torch.inference_mode():
        full(ids, torch.arange(ids.shape[1]), empty_kv_cache(full.config, CACHE))
        expected = full.lm_head(full.norm(captured["h"]))[0].numpy()
    draft = _truncated(ckpts["target"], 1)
    assert draft.config.num_layers == 1
    np.testing.assert_allclose(draft.prefill(PROMPT), expected, atol=1e-5, rtol=0)
    draft.reset()
    _check_greedy(_artefact(arts["onnx_all"]), draft)
    _check_greedy(_artefact(arts["tflite_all"]), _artefact(arts["onnx_trunc1"]))


def test_truncate_layers_round_trips_through_the_manifest(ckpts, arts):
    import json

    from tinyexport.artefact import load_artefact
    from tinyexport.models.transforms import Transform, parse_transform
    from tinyexport.resolve import artefact_transforms

    art = load_artefact(arts["onnx_trunc1"])
    entry = json.loads((arts["onnx_trunc1"] / "manifest.json").read_text())["transforms"]
    assert entry == [{"name": "truncate-layers", "params": {"layers": 1}, "removed": {"layers": 1}}]
    assert artefact_transforms(art) == (parse_transform("truncate-layers=1"),)
    assert Transform.from_json(entry[0]).label == "truncate-layers=1"
    assert art.config.num_layers == 1
    # the file computes what the truncated torch model computes (fp32 rounding only)
    onnx, torch_draft = _artefact(arts["onnx_trunc1"]), _truncated(ckpts["target"], 1)
    np.testing.assert_allclose(onnx.prefill(PROMPT)[-1], torch_draft.prefill(PROMPT)[-1], atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx.decode(5), torch_draft.decode(5), atol=1e-4, rtol=0)


def test_truncate_layers_bad_values_exit_2(ckpts, tmp_path):
    out = tmp_path / "x"
    for value, fragments in (
        ("2", ("truncate-layers=2", "has 2 layers", "between 1 and 1")),
        ("0", ("truncate-layers=0", "at least 1 layer")),
        ("half", ("'half' is not a whole number",)),
    ):
        result = run_cli(
            "convert", "--format", "onnx", "--checkpoint", str(ckpts["target"]), "--transform",
            f"truncate-layers={value}", "-o", str(out),
        )  # fmt: skip
        assert_bad_input(result, *fragments)
        assert not out.exists()


def test_bench_draft_row(arts, tmp_path):
    """``bench TARGET --draft DRAFT``: the candidates' table plus one speculative row, timed interleaved
    against the target alone, in the JSON; a bad -k, no target, or a cache too short for the prompt exit 2
    before any work."""
    import json

    out = tmp_path / "bench.json"
    common = ("--prompt-len", "8", "--new-tokens", "12", "--repeats", "1", "--threads", "1", "--no-log")
    common += ("--draft-prompt", "hello there")
    res = run_cli(
        "bench", str(arts["onnx_all"]), "--draft", str(arts["onnx_int8"]), "-k", "2", *common, "--json", str(out)
    )
    assert res.code == 0, res.stderr
    row = json.loads(out.read_text())["speculative"]
    assert row["target"] == "onnx_all" and row["draft"] == "onnx_int8" and row["k"] == 2
    assert row["identical"] is True and row["new_tokens"] == 12
    assert 0 <= row["acceptance_rate"] <= 1 and 1 <= row["tokens_per_target_call"] <= 3
    assert row["speedup"] > 0 and row["draft_ms"] > 0 and row["verify_ms"] > 0
    assert "speculative decoding" in res.stdout and "acceptance" in res.stdout
    bad = run_cli("bench", str(arts["onnx_all"]), "--draft", str(arts["onnx_int8"]), "-k", "0", *common)
    assert_bad_input(bad, "-k must be at least 1")
    assert_bad_input(run_cli("bench", "--draft", str(arts["onnx_int8"]), *common), "--draft needs a target")
    long = run_cli("bench", str(arts["onnx_all"]), "--draft", str(arts["onnx_int8"]), *common, "--new-tokens", "60")
    assert_bad_input(long, "KV cache of 64", "needs")
    assert "[1/1]" not in long.stderr  # refused before the candidates ran
