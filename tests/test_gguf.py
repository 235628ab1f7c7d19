"""GGUF export of tiny random Llamas: every recipe through llama.cpp (llama-cpp-python) vs transformers,
prefill-then-decode vs one full forward, metadata and weights read back by our own GGUF reader, the
tokenizer written as llama.cpp expects it, and the one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinyexport.artefact import load_artefact
from tinyexport.converters.export_config import ExportConfig
from tinyexport.converters.gguf import GGUF_RECIPES, permute_qk
from tinyexport.converters.pipeline import export_artefact
from tinyexport.formats.recipes import RECIPES, recipes_for, tolerance_for
from tinyexport.models.weights import _unpermute_qk, read_gguf, read_hf_state
from tinyexport.runners import open_artefact_runner
from tinyexport.runners.hf_runner import HFRunner
from tinyexport.verify.parity import compare, reference_trace

from .cli_helpers import assert_bad_input, env_without, run_cli
from .tiny_models import TINY_VARIANTS, save_hf_checkpoint

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra runtime-gguf) is not installed")

GGUF_RECIPE_NAMES = recipes_for("gguf")
CACHE = 64
PROMPT = np.random.default_rng(7).integers(0, 256, 12)
NEW_TOKENS = 16
VARIANTS = ("tied_oddvocab", "headdim24")  # SmolLM2's tied layout; head_dim != hidden / heads (key_length)


def _checkpoint(directory):
    from tinyexport.resolve import open_checkpoint

    return open_checkpoint(str(directory))


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    return {v: save_hf_checkpoint(TINY_VARIANTS[v], tmp_path_factory.mktemp(f"gguf_{v}"), seed=3) for v in VARIANTS}


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, hf_dirs) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("gguf_artefacts")
    made = {}
    for variant, directory in hf_dirs.items():
        ckpt = _checkpoint(directory)
        for recipe in GGUF_RECIPE_NAMES:
            target = root / f"{variant}_{recipe}"
            export = ExportConfig(format="gguf", recipe=recipe, kv_cache_max_len=CACHE, prefill_seq_lens=(8,))
            export_artefact(ckpt, export, target, source_ref={"spec": str(directory)})
            made[(variant, recipe)] = target
    return made


@pytest.fixture(scope="module")
def references(hf_dirs):
    out = {}
    for variant, directory in hf_dirs.items():
        ref = HFRunner.from_checkpoint(_checkpoint(directory), max_len=CACHE)
        out[variant] = (reference_trace(ref, PROMPT, NEW_TOKENS), ref)
    return out


def test_recipes_are_registered_for_gguf_only_where_gguf_can_carry_them():
    assert set(GGUF_RECIPE_NAMES) == set(GGUF_RECIPES) == {"fp32", "fp16", "q8_0", "q4_0"}
    assert "gguf" not in RECIPES["int4_block32"].tolerances and "gguf" not in RECIPES["dynamic_int8"].tolerances


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("recipe", GGUF_RECIPE_NAMES)
def test_recipe_matches_transformers_within_the_table(artefacts, references, variant, recipe):
    trace, _ = references[variant]
    runner = open_artefact_runner(artefacts[(variant, recipe)], threads=1, all_logits=True)  # as verify opens it
    assert runner.logits_positions == "all"
    report = compare(trace, runner, tolerance_for("gguf", recipe), fmt="gguf", recipe=recipe)
    assert report.passed, report
    assert report.positions == PROMPT.size + NEW_TOKENS - 1  # every prompt row, then the decode steps
    if recipe == "fp32":
        assert report.max_abs <= 1e-4 and report.greedy_match == NEW_TOKENS  # F32 weights and F32 KV cache
    else:
        assert report.max_abs > 1e-4  # really quantized: not bit-identical to fp32


def test_prefill_then_decode_equals_full_forward(artefacts, references):
    """A second prompt chunk on a non-empty cache and single-token decodes give one full forward's rows."""
    _, hf = references["tied_oddvocab"]
    tokens = np.random.default_rng(11).integers(0, 257, 20)
    hf.reset()
    full = hf.prefill(tokens)
    runner = open_artefact_runner(artefacts[("tied_oddvocab", "fp32")], threads=1, logits="all")
    rows = [runner.prefill(tokens[:7]), runner.prefill(tokens[7:12])]
    rows += [runner.decode(int(t))[None] for t in tokens[12:]]
    assert runner.position == tokens.size
    np.testing.assert_allclose(np.concatenate(rows), full, atol=1e-4, rtol=0)
    runner.reset()  # the same again from an empty cache
    np.testing.assert_allclose(runner.prefill(tokens), full, atol=1e-4, rtol=0)


def test_last_logits_runner_returns_the_last_row_only(artefacts):
    art = artefacts[("tied_oddvocab", "fp32")]
    every = open_artefact_runner(art, threads=1, logits="all")
    last = open_artefact_runner(art, threads=1)  # the manifest's default: --prefill-logits last
    assert last.logits_positions == "last"
    tokens = PROMPT[:9]
    all_rows, last_row = every.prefill(tokens), last.prefill(tokens)
    assert all_rows.shape == (9, 257) and last_row.shape == (1, 257)
    np.testing.assert_allclose(last_row[0], all_rows[-1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(last.decode(5), every.decode(5), atol=1e-5, rtol=0)


def test_cache_overflow_is_refused(artefacts):
    from tinyexport.runners.base import CacheOverflowError

    runner = open_artefact_runner(artefacts[("tied_oddvocab", "fp32")], threads=1)
    runner.prefill(np.arange(60) % 200)
    with pytest.raises(CacheOverflowError, match="KV cache of 64"):
        runner.prefill(np.arange(5))


@pytest.mark.parametrize("variant", VARIANTS)
def test_metadata_and_weights_read_back_equal_the_checkpoint(artefacts, hf_dirs, variant):
    """Our GGUF reader (which undoes llama.cpp's q/k permutation) returns the config and, for fp32, the
    very weights we wrote; the quantized files dequantize to within their block precision."""
    config = TINY_VARIANTS[variant]
    hf_state = read_hf_state(hf_dirs[variant])
    for recipe in GGUF_RECIPE_NAMES:
        read_config, state, meta = read_gguf(artefacts[(variant, recipe)] / "model.gguf")
        assert read_config.rms_norm_eps == pytest.approx(config.rms_norm_eps, rel=1e-6)  # stored as float32
        assert read_config == _with_eps(_checkpoint(hf_dirs[variant]).config, read_config.rms_norm_eps)
        assert meta["general.architecture"] == "llama" and meta["tokenizer.ggml.model"] == "no_vocab"
        assert meta["llama.context_length"] == config.max_position_embeddings
        assert meta["llama.attention.key_length"] == config.head_dim
        worst = max(float((state[k] - hf_state[k]).abs().max()) for k in state)
        bound = {"fp32": 0.0, "fp16": 1e-3, "q8_0": 2e-3, "q4_0": 0.03}[recipe]  # weights ~ N(0, 0.02)
        assert worst <= bound, (recipe, worst)
    manifest = load_artefact(artefacts[(variant, "q4_0")]).manifest
    assert manifest["gguf"]["tensor_types"]["Q4_0"] == 7 * config.num_layers
    assert manifest["gguf"]["file_type"] == "MOSTLY_Q4_0"


def _with_eps(config, eps):
    import dataclasses

    return dataclasses.replace(config, rms_norm_eps=eps)


def test_permutation_is_the_inverse_of_the_readers():
    w = np.random.default_rng(0).standard_normal((3 * 16, 8)).astype(np.float32)
    permuted = permute_qk(w, 3)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(_unpermute_qk(permuted, 3), w)
    # llama.cpp pairs rotary dims (2i, 2i+1); HF pairs (i, i + d/2): row 1 of a head is HF row d/2.
    np.testing.assert_array_equal(permuted[1], w[8])


def test_recipe_gguf_cannot_carry_is_refused_in_one_line(tmp_path):
    res = run_cli(
        "convert",
        "--format",
        "gguf",
        "--quantize",
        "int4_block32",
        "--checkpoint",
        "tiny",
        "--random-weights",
        "-o",
        str(tmp_path / "x"),
        cache=tmp_path / "cache",
    )
    assert_bad_input(res, "int4_block32", "gguf", "q8_0")
    assert not (tmp_path / "x").exists()


def test_missing_llama_cpp_names_the_extra(tmp_path, artefacts):
    """Where llama-cpp-python is absent (a sitecustomize refuses the import), verify says which extra to install."""
    result = run_cli(
        "verify",
        str(artefacts[("tied_oddvocab", "q8_0")]),
        "--prompt-tokens",
        "4",
        "--max-new-tokens",
        "2",
        env=env_without(tmp_path, "llama_cpp"),
        timeout=300,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "llama-cpp-python" in lines[0] and "tinyexport[runtime-gguf]" in lines[0]


def test_gguf_file_llama_cpp_refuses_is_one_line(tmp_path, artefacts):
    """A model.gguf whose bytes were replaced (and the manifest re-hashed) fails at llama.cpp's load, in one line."""
    import shutil

    from tinyexport.artefact import write_manifest

    art = tmp_path / "broken"
    shutil.copytree(artefacts[("tied_oddvocab", "fp32")], art)
    (art / "model.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    manifest = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").unlink()
    write_manifest(art, {k: v for k, v in manifest.items() if k not in ("files", "schema", "created", "tool_versions")})
    res = run_cli("verify", str(art), "--prompt-tokens", "4", "--max-new-tokens", "2")
    assert_bad_input(res, "llama.cpp cannot load", "model.gguf")
