"""Real TFLite conversions of a tiny random Llama, run through TFLiteRunner and compared with
transformers: signatures and I/O read from the file, every recipe against the tolerance table,
prefill chunking and padding, prefill-then-decode against one forward, cache overflow."""

from __future__ import annotations

import numpy as np
import pytest

from tinyexport.converters.export_config import ExportConfig
from tinyexport.formats.recipes import RECIPES, recipes_for, tolerance_for
from tinyexport.models.config import TINY

from .tiny_models import save_hf_checkpoint

S = 16  # a small cache, so the end of the cache is reachable in a test
PROMPT = np.random.default_rng(7).integers(0, TINY.vocab_size, S, dtype=np.int64)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from tinyexport.models.checkpoint import resolve_checkpoint

    directory = save_hf_checkpoint(TINY, tmp_path_factory.mktemp("tflite_tiny_hf"), seed=3)
    return resolve_checkpoint(str(directory), cache=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def hf_logits(tiny_ckpt) -> np.ndarray:
    """transformers' logits for every position of PROMPT (one forward), (S, V)."""
    from tinyexport.runners.hf_runner import HFRunner

    return HFRunner.from_checkpoint(tiny_ckpt, max_len=S).prefill(PROMPT)


def _convert(ckpt, directory, **export):
    from tinyexport.converters.pipeline import export_artefact

    config = ExportConfig(format="tflite", kv_cache_max_len=S, **export)
    export_artefact(ckpt, config, directory, source_ref={"spec": str(ckpt.directory)})
    return directory


@pytest.fixture(scope="module")
def art_all(tiny_ckpt, tmp_path_factory):
    """fp32, standard attention, prefill_4 + prefill_8 returning every position's logits."""
    return _convert(tiny_ckpt, tmp_path_factory.mktemp("art") / "all", prefill_seq_lens=(4, 8), prefill_logits="all")


@pytest.fixture(scope="module")
def art_last(tiny_ckpt, tmp_path_factory):
    """fp32, flash attention (block 4), prefill_4 + prefill_8 returning the last position's logits."""
    return _convert(
        tiny_ckpt,
        tmp_path_factory.mktemp("art") / "last",
        prefill_seq_lens=(4, 8),
        prefill_logits="last",
        attention="flash",
        flash_block_size=4,
    )


def _runner(path):
    from tinyexport.runners import open_artefact_runner

    return open_artefact_runner(path, threads=2)


def test_signatures_and_shapes_read_from_the_file(art_all, art_last):
    from ai_edge_litert.interpreter import Interpreter

    from tinyexport.artefact import load_artefact

    cache = [1, TINY.num_kv_heads, S, TINY.head_dim]
    for art, rows in ((art_all, {4: 4, 8: 8}), (art_last, {4: 1, 8: 1})):
        interpreter = Interpreter(model_path=str(art / "model.tflite"))
        signatures = interpreter.get_signature_list()
        assert sorted(signatures) == ["decode", "prefill_4", "prefill_8"]
        names = ["input_pos", "tokens"] + [f"kv_cache_{kv}_{i}" for i in range(TINY.num_layers) for kv in "kv"]
        for name, length in (("prefill_4", 4), ("prefill_8", 8), ("decode", 1)):
            sig = interpreter.get_signature_runner(name)
            inputs, outputs = sig.get_input_details(), sig.get_output_details()
            assert sorted(inputs) == sorted(names)
            assert sorted(outputs) == sorted(n for n in names if n.startswith("kv")) + ["logits"]
            assert inputs["tokens"]["shape"].tolist() == [1, length]
            assert inputs["input_pos"]["shape"].tolist() == [length]
            assert inputs["tokens"]["dtype"] == np.int32
            assert outputs["logits"]["shape"].tolist() == [1, rows.get(length, 1), TINY.vocab_size]
            for n in names[2:]:
                assert inputs[n]["shape"].tolist() == cache and outputs[n]["shape"].tolist() == cache
        manifest = load_artefact(art).manifest
        assert manifest["signatures"]["decode"]["inputs"]["tokens"]["shape"] == [1, 1]
        assert manifest["conversion"]["size_ratio_vs_fp32"] <= RECIPES["fp32"].size_bound("tflite")
        assert set(manifest["tflite"]["constant_bytes_by_type"]) <= {"FLOAT32", "INT32"}


def test_all_logits_prefill_then_decode_matches_transformers(art_all, hf_logits):
    tol = tolerance_for("tflite", "fp32").max_abs
    runner = _runner(art_all)
    assert runner.logits_positions == "all" and runner.prefill_lengths == (4, 8)
    # 13 tokens: prefill_8 then prefill_8 padded with 3 copies of the last token
    rows = runner.prefill(PROMPT[:13])
    assert rows.shape == (13, TINY.vocab_size)
    np.testing.assert_allclose(rows, hf_logits[:13], atol=tol, rtol=0)
    steps = np.stack([runner.decode(int(t)) for t in PROMPT[13:]])
    np.testing.assert_allclose(steps, hf_logits[13:], atol=tol, rtol=0)
    assert runner.position == S
    # the same tokens fed one at a time give the same logits as one forward
    runner.reset()
    one_by_one = np.stack([runner.decode(int(t)) for t in PROMPT])
    np.testing.assert_allclose(one_by_one, hf_logits, atol=tol, rtol=0)


def test_last_logits_padding_and_end_of_cache(art_last, hf_logits):
    """Padded chunks return the real last token's logits; near the cache end the runner falls back to
    smaller signatures (prefill_8 there would clamp its cache write onto earlier slots)."""
    from tinyexport.runners import CacheOverflowError
    from tinyexport.runners.tflite_chunks import Chunk, plan_chunks

    tol = tolerance_for("tflite", "fp32").max_abs
    runner = _runner(art_last)
    assert runner.logits_positions == "last"
    calls = [
        (0, 5, [Chunk(8, 0, 5)]),  # padded prefill_8
        (5, 6, [Chunk(8, 5, 6)]),  # padded prefill_8 ending at slot 12
        (11, 3, [Chunk(4, 11, 3)]),  # prefill_8 would reach slot 18: padded prefill_4
        (14, 2, [Chunk(1, 14, 1), Chunk(1, 15, 1)]),
    ]  # only decode fits
    for start, count, plan in calls:
        assert plan_chunks(start, count, (1, 4, 8), S) == plan
        out = runner.prefill(PROMPT[start : start + count])
        assert out.shape == (1, TINY.vocab_size)
        np.testing.assert_allclose(out[0], hf_logits[start + count - 1], atol=tol, rtol=0)
    assert runner.position == S
    with pytest.raises(CacheOverflowError, match="exceeds its KV cache of 16"):
        runner.decode(1)
    runner.reset()
    with pytest.raises(CacheOverflowError):
        runner.prefill(np.zeros(S + 1, np.int64))
    assert runner.position == 0
    with pytest.raises(ValueError, match="token ids"):
        runner.prefill(np.array([TINY.vocab_size]))
    np.testing.assert_allclose(runner.prefill(PROMPT)[0], hf_logits[-1], atol=tol, rtol=0)


@pytest.mark.parametrize("recipe", [r for r in recipes_for("tflite") if r != "fp32"])
def test_quantized_recipe_through_runner_vs_transformers(recipe, tiny_ckpt, tmp_path):
    from tinyexport.artefact import load_artefact
    from tinyexport.runners.hf_runner import HFRunner
    from tinyexport.verify.parity import compare, reference_trace

    art = _convert(tiny_ckpt, tmp_path / recipe, prefill_seq_lens=(8,), recipe=recipe)
    manifest = load_artefact(art).manifest
    stored = manifest["tflite"]["constant_bytes_by_type"]
    main_type = {"fp16": "FLOAT16", "dynamic_int8": "INT8", "weight_only_int8": "INT8"}.get(recipe, "INT4")
    assert stored[main_type] > 0.75 * sum(stored.values()), stored  # weights really are in the recipe's type
    smallest_matrix_fp32 = 4 * TINY.hidden_size * TINY.kv_dim  # wk / wv
    assert stored.get("FLOAT32", 0) < smallest_matrix_fp32, stored  # only norms and RoPE tables stay fp32
    assert manifest["conversion"]["size_ratio_vs_fp32"] <= RECIPES[recipe].size_bound("tflite")

    trace = reference_trace(HFRunner.from_checkpoint(tiny_ckpt, max_len=S), PROMPT[:8], 8)
    report = compare(trace, _runner(art), tolerance_for("tflite", recipe), fmt="tflite", recipe=recipe)
    assert report.passed, report.failures
    assert report.max_abs > 0  # it is not the float model


def test_every_tflite_recipe_has_a_quantizer_entry():
    from tinyexport.converters.tflite_quant import LAYER_RECIPES, generative_recipe

    assert sorted(LAYER_RECIPES) == sorted(r for r in recipes_for("tflite") if r != "fp32")
    for name in LAYER_RECIPES:
        generative_recipe(name)  # accepted by litert-torch's supported-scheme check
    with pytest.raises(ValueError, match="no TFLite quantization"):
        generative_recipe("fp32")


@pytest.mark.parametrize(
    "damage, fragment",
    [
        ("tamper", "does not match the sha256"),
        ("remove", "is missing model.tflite"),
    ],
)
def test_verify_refuses_a_damaged_artefact(art_all, tmp_path, damage, fragment):
    import shutil

    from .cli_helpers import assert_bad_input, run_cli

    art = tmp_path / "damaged"
    shutil.copytree(art_all, art)
    model = art / "model.tflite"
    if damage == "tamper":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
        model.write_bytes(bytes(data))
    else:
        model.unlink()
    assert_bad_input(run_cli("verify", str(art), "--prompt-tokens", "4", "--max-new-tokens", "2"), fragment)


def test_verify_refuses_a_prompt_beyond_the_cache(art_all):
    from .cli_helpers import assert_bad_input, run_cli

    assert_bad_input(
        run_cli("verify", str(art_all), "--prompt-tokens", "12", "--max-new-tokens", "8"),
        "exceeds the KV cache",
        f"({S})",
    )


def test_runner_refuses_a_file_litert_cannot_load(tmp_path):
    from tinyexport.artefact import ArtefactError
    from tinyexport.runners.tflite_runner import TFLiteRunner

    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(200))
    with pytest.raises(ArtefactError, match="LiteRT cannot load"):
        TFLiteRunner(bogus, TINY, kv_cache_max_len=S)


def test_fp16_cast_once_writes_the_same_file_as_ai_edge_quantizer(art_all, tmp_path):
    """``quantize_file``'s fp16 path (one float16 copy per weight, shared by the three signatures)
    against ai-edge-quantizer run as it comes (a copy per signature): byte-identical files."""
    from ai_edge_quantizer import quantizer
    from litert_torch.quantize import translate_recipe

    from tinyexport.converters.tflite_quant import generative_recipe, quantize_file

    float_model = art_all / "model.tflite"
    quantize_file(float_model, "fp16", tmp_path / "once.tflite")
    recipe = translate_recipe.translate_to_ai_edge_recipe(generative_recipe("fp16"))
    quantizer.Quantizer(float_model, recipe).quantize(serialize_to_path=tmp_path / "per_op.tflite")
    once, per_op = (tmp_path / "once.tflite").read_bytes(), (tmp_path / "per_op.tflite").read_bytes()
    assert len(once) < len(float_model.read_bytes()) * 0.75  # really cast to float16
    assert once == per_op
