"""LiteRT-LM bundles of a tiny fp32 artefact: `tinyexport bundle` writes model.litertlm into the manifest
atomically, Google's LiteRT-LM engine loads it, and its greedy output equals our LiteRT runner's and
transformers' token for token.

The tiny checkpoint gets a character-level tokenizer.json (id i <-> the one character U+0100+i, no
merges), so every token is one printable character: LiteRT-LM's text output maps back to token ids
exactly, and text equality is token equality.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from tinyexport.artefact import load_artefact
from tinyexport.models.config import TINY

from .cli_helpers import assert_bad_input, run_cli
from .tiny_models import save_hf_checkpoint

pytest.importorskip(
    "litert_lm_builder", reason="litert-lm-builder is not installed (pip install 'tinyexport[litertlm]')"
)
pytest.importorskip("litert_lm", reason="litert-lm-api is not installed (pip install 'tinyexport[litertlm]')")

CACHE = 96
EOS = 255
CONFIG = dataclasses.replace(TINY, eos_token_id=EOS)
PROMPT_IDS = np.random.default_rng(7).integers(0, 255, 12)
NEW_TOKENS = 40


def char_text(ids) -> str:
    return "".join(chr(0x100 + int(i)) for i in ids)


def char_ids(text: str) -> list[int]:
    return [ord(c) - 0x100 for c in text]


def write_char_tokenizer(directory, vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models

    tok = Tokenizer(models.BPE(vocab={chr(0x100 + i): i for i in range(vocab_size)}, merges=[]))
    tok.decoder = decoders.Fuse()
    tok.save(str(directory / "tokenizer.json"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from tinyexport.models.checkpoint import resolve_checkpoint

    directory = save_hf_checkpoint(CONFIG, tmp_path_factory.mktemp("litertlm_hf"), seed=5)
    write_char_tokenizer(directory, CONFIG.vocab_size)
    return resolve_checkpoint(str(directory), cache=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny_art(tiny_ckpt, tmp_path_factory):
    """fp32 .tflite (prefill_8, prefill_32, decode; cache 96) with one attention span of 16 slots
    (prefill_8_s16, decode_s16, stored before the whole-cache signatures), never bundled: tests copy it.
    The prompt and generation run past slot 16, so the bundle must use the whole-cache signatures."""
    from tinyexport.converters.export_config import ExportConfig
    from tinyexport.converters.pipeline import export_artefact

    target = tmp_path_factory.mktemp("art") / "tiny_f32"
    export_artefact(
        tiny_ckpt,
        ExportConfig(
            format="tflite", kv_cache_max_len=CACHE, prefill_seq_lens=(8, 32), decode_spans=(16,), prefill_spans=True
        ),
        target,
        source_ref={"spec": str(tiny_ckpt.directory)},
    )
    return target


@pytest.fixture(scope="module")
def bundled(tiny_art, tmp_path_factory):
    target = tmp_path_factory.mktemp("bundled") / "tiny_f32"
    shutil.copytree(tiny_art, target)
    result = run_cli("bundle", str(target))
    assert result.code == 0, result.stderr
    assert "tokenizer agrees" in result.stdout
    return target


def test_bundle_is_listed_with_its_hash_and_the_tflite_is_unchanged(tiny_art, bundled):
    from tinyexport.hashing import sha256_file

    before, after = load_artefact(tiny_art), load_artefact(bundled)  # load_artefact checks every sha256
    assert after.manifest["files"]["model.litertlm"]["sha256"] == sha256_file(bundled / "model.litertlm")
    assert after.manifest["files"]["model.tflite"] == before.manifest["files"]["model.tflite"]
    entry = after.manifest["litertlm"]
    assert entry["stop_tokens"] == [EOS] and entry["start_token"] is None and entry["max_num_tokens"] == CACHE
    assert entry["sampler"] == {"type": "TOP_P", "k": 1, "p": 1.0, "temperature": 1.0, "seed": 0}
    assert after.manifest["created"] == before.manifest["created"]
    assert sorted(p.name for p in bundled.parent.iterdir()) == ["tiny_f32"]  # no staging dir left behind


def test_litertlm_reads_the_bundle_metadata(bundled):
    import litert_lm

    with litert_lm.ModelInfo(str(bundled / "model.litertlm")) as info:
        assert info.is_llm_model and info.max_context_tokens == CACHE
        sampler = info.llm.default_sampler_params
        assert (sampler.top_k, sampler.temperature) == (1, 1.0)


def test_litertlm_greedy_equals_our_tflite_runner_and_transformers(tiny_ckpt, bundled):
    from tinyexport.runners import greedy_generate, open_artefact_runner
    from tinyexport.runners.hf_runner import HFRunner
    from tinyexport.runners.litertlm_runner import LiteRtLmEngine

    art = load_artefact(bundled)
    ours = greedy_generate(open_artefact_runner(art, threads=1), PROMPT_IDS, NEW_TOKENS, eos_token_id=EOS).tokens
    hf = greedy_generate(
        HFRunner.from_checkpoint(tiny_ckpt, max_len=CACHE), PROMPT_IDS, NEW_TOKENS, eos_token_id=EOS
    ).tokens
    with LiteRtLmEngine.from_artefact(art, threads=1) as engine:
        assert engine.tokenize(char_text(PROMPT_IDS)) == PROMPT_IDS.tolist()
        assert engine.stop_tokens == [[EOS]] and engine.start_token is None
        result = engine.generate(char_text(PROMPT_IDS), NEW_TOKENS)
    theirs = char_ids(result.text)
    assert len(ours) == NEW_TOKENS and ours == hf
    assert theirs == ours
    assert result.prompt_tokens == len(PROMPT_IDS)
    assert not any(p.name.endswith(".xnnpack_cache") for p in bundled.iterdir())  # engine cache kept out


def test_generate_with_the_litertlm_engine(bundled):
    from tinyexport.runners import greedy_generate, open_artefact_runner

    ours = greedy_generate(open_artefact_runner(bundled, threads=1), PROMPT_IDS, 16, eos_token_id=EOS).tokens
    result = run_cli(
        "generate",
        str(bundled),
        "--engine",
        "litertlm",
        "--prompt",
        char_text(PROMPT_IDS),
        "--max-new-tokens",
        "16",
        "--threads",
        "1",
    )
    assert result.code == 0, result.stderr
    assert result.stdout.rstrip("\n") == char_text(ours)
    assert "[litert-lm]" in result.stderr


def test_bundle_twice_needs_force_and_force_rebuilds(bundled):
    assert_bad_input(run_cli("bundle", str(bundled)), "already has model.litertlm", "--force")
    result = run_cli("bundle", str(bundled), "--force", "--no-check", "--stop-token", "3")
    assert result.code == 0, result.stderr
    assert load_artefact(bundled).manifest["litertlm"]["stop_tokens"] == [EOS, 3]


def test_a_failing_check_leaves_the_artefact_untouched(tiny_art, tmp_path):
    from tinyexport.converters.litertlm import bundle_artefact

    target = tmp_path / "art"
    shutil.copytree(tiny_art, target)
    manifest = (target / "manifest.json").read_text()

    def refuse(directory, bundle):
        assert bundle.is_file() and bundle.stat().st_size > 0
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        bundle_artefact(target, check=refuse)
    assert (target / "manifest.json").read_text() == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]
    assert not (target / "model.litertlm").exists()


def test_bad_inputs_exit_2_in_one_line(tiny_art, tmp_path):
    from tinyexport.converters.litertlm import BundleError, check_tokenizer

    no_tok = tmp_path / "no_tok"
    shutil.copytree(tiny_art, no_tok)
    (no_tok / "tokenizer.json").unlink()
    manifest = json.loads((no_tok / "manifest.json").read_text())
    del manifest["files"]["tokenizer.json"]
    (no_tok / "manifest.json").write_text(json.dumps(manifest))
    assert_bad_input(run_cli("bundle", str(no_tok)), "has no tokenizer.json")
    assert_bad_input(run_cli("bundle", str(tmp_path / "missing")), "does not exist")
    weird = tmp_path / "tokenizer.json"
    weird.write_text(json.dumps({"model": {"type": "CharRNN"}}))
    with pytest.raises(BundleError, match=r"field model\.type is 'CharRNN'"):
        check_tokenizer(weird)
    assert_bad_input(
        run_cli("generate", str(tiny_art), "--engine", "litertlm", "--prompt", "Ā"),
        "has no model.litertlm",
        "tinyexport bundle",
    )


def test_bench_runs_litertlms_own_benchmark_beside_ours(bundled, tmp_path):
    out = tmp_path / "bench.json"
    args = ("--prompt-len", "8", "--new-tokens", "6", "--warmup", "0", "--repeats", "1", "--threads", "1")
    result = run_cli("bench", str(bundled), "--litertlm", *args, "--no-log", "--json", str(out), cache=tmp_path)
    assert result.code == 0, result.stderr[-2000:]
    doc = json.loads(out.read_text())
    (ours,) = doc["candidates"]
    (theirs,) = doc["litertlm_benchmark"]
    assert theirs["name"] == ours["name"] == "tiny_f32" and theirs["measured_by"].startswith("LiteRT-LM")
    assert theirs["prefill_tokens"] == 8 and theirs["decode_tokens"] == 5
    assert theirs["prefill_tok_s"] > 0 and theirs["decode_ms_per_token"] > 0
    assert ours["size_bytes"] == load_artefact(bundled).manifest["files"]["model.tflite"]["bytes"]
    assert "LiteRT-LM's own measurement" in result.stdout
    report = run_cli("report", str(out), "-o", str(tmp_path / "report"))
    assert report.code == 0, report.stderr
    assert "| tiny_f32 | LiteRT-LM |" in (tmp_path / "report" / "report.md").read_text()


def test_the_bundle_keeps_span_signatures_only_where_litertlm_ignores_them(tiny_art):
    from tinyexport.converters.litertlm import span_signatures_litertlm_would_run
    from tinyexport.converters.tflite_file import signature_keys

    stored = signature_keys(tiny_art / "model.tflite")
    assert stored == ["prefill_8_s16", "decode_s16", "prefill_8", "prefill_32", "decode"]
    assert span_signatures_litertlm_would_run(stored) == []
    assert span_signatures_litertlm_would_run(["prefill_8", "prefill_8_s16", "decode"]) == ["prefill_8_s16"]
