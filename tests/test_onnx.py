"""ONNX export of tiny random Llamas: every recipe through ORTRunner vs transformers, the graph's
contract read from the file, prefill/decode consistency, and onnxruntime-genai and Optimum running
the artefact directory as it is."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tinyexport.artefact import load_artefact
from tinyexport.converters.export_config import ExportConfig
from tinyexport.converters.pipeline import export_artefact
from tinyexport.formats.recipes import RECIPES, recipes_for, tolerance_for
from tinyexport.runners import open_artefact_runner
from tinyexport.runners.base import CacheOverflowError
from tinyexport.runners.decoding import greedy_generate
from tinyexport.runners.hf_runner import HFRunner
from tinyexport.verify.parity import compare, reference_trace

from .tiny_models import TINY_VARIANTS, save_hf_checkpoint

ONNX_RECIPES = recipes_for("onnx")
CACHE = 64  # kv_cache_max_len of the tiny artefacts
PROMPT = np.random.default_rng(7).integers(0, 256, 12)
NEW_TOKENS = 16


def _checkpoint(directory):
    from tinyexport.resolve import open_checkpoint

    return open_checkpoint(str(directory))


@pytest.fixture(scope="module")
def tied_dir(tmp_path_factory):
    """Tied embeddings (the SmolLM2 layout) and an odd vocabulary: the case the lm_head rewrite is for."""
    return save_hf_checkpoint(TINY_VARIANTS["tied_oddvocab"], tmp_path_factory.mktemp("tied_hf"), seed=3)


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, tied_dir):
    """One artefact per ONNX recipe (tied tiny model), plus an fp32 one that returns every prefill position."""
    ckpt = _checkpoint(tied_dir)
    root = tmp_path_factory.mktemp("onnx_artefacts")
    made = {}
    for recipe, logits in [(r, "last") for r in ONNX_RECIPES] + [("fp32", "all")]:
        target = root / f"{recipe}_{logits}"
        export_artefact(
            ckpt,
            ExportConfig(
                format="onnx", recipe=recipe, kv_cache_max_len=CACHE, prefill_logits=logits, prefill_seq_lens=(8,)
            ),
            target,
            source_ref={"spec": str(tied_dir), "random_weights": False, "seed": 0},
        )
        made[(recipe, logits)] = target
    return made


@pytest.fixture(scope="module")
def reference(tied_dir):
    ref = HFRunner.from_checkpoint(_checkpoint(tied_dir), max_len=CACHE)
    return reference_trace(ref, PROMPT, NEW_TOKENS), ref


@pytest.mark.parametrize("recipe", ONNX_RECIPES)
def test_recipe_matches_transformers_within_the_table(artefacts, reference, recipe):
    trace, _ = reference
    runner = open_artefact_runner(artefacts[(recipe, "last")], threads=1)
    report = compare(trace, runner, tolerance_for("onnx", recipe), fmt="onnx", recipe=recipe)
    assert report.passed, report
    assert report.positions == 1 + NEW_TOKENS - 1  # "last" prefill: one prompt row, then decode steps
    if recipe == "fp32":
        assert report.max_abs <= 1e-4 and report.greedy_match == NEW_TOKENS
    else:
        assert report.max_abs > 1e-4  # really quantized: not bit-identical to fp32


@pytest.mark.parametrize("recipe", ONNX_RECIPES)
def test_weights_are_stored_as_the_recipe_says(artefacts, recipe):
    """Every projection (and the tied lm_head, which Optimum leaves fp32) is in the recipe's format."""
    art = load_artefact(artefacts[(recipe, "last")])
    model = onnx.load(str(art.model_path))
    inits = {i.name: i for i in model.graph.initializer}
    ops = [n.op_type for n in model.graph.node]
    float_matmuls = [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in inits and inits[n.input[1]].data_type == onnx.TensorProto.FLOAT
    ]
    cfg = art.config
    if recipe == "fp32":
        assert len(float_matmuls) == 5 * cfg.num_layers  # wqkv, wo, gate, up, down; lm_head reads Transpose(table)
    if recipe in ("dynamic_int8", "int4_block32"):
        assert float_matmuls == [] and "Transpose" not in ops
        nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
        bits = {a.i for n in nbits for a in n.attribute if a.name == "bits"}
        assert len(nbits) == 5 * cfg.num_layers + 1 and bits == {8 if recipe == "dynamic_int8" else 4}
        assert art.manifest["onnx"]["lm_head_untied"] is True
    if recipe == "fp16":
        halves = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
        assert len(halves) == 5 * cfg.num_layers + 1  # wqkv, wo, gate, up, down per layer + the tied table
    assert ops.count("GroupQueryAttention") == cfg.num_layers
    ratio = art.manifest["conversion"]["size_ratio_vs_fp32"]
    assert ratio <= RECIPES[recipe].size_bound("onnx")


def test_io_names_and_shapes_read_from_the_file(artefacts):
    art = load_artefact(artefacts[("fp32", "last")])
    cfg = art.config
    graph = onnx.load(str(art.model_path)).graph

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {v.name: dims(v) for v in graph.input}
    outputs = {v.name: dims(v) for v in graph.output}
    past = [f"past_key_values.{i}.{kv}" for i in range(cfg.num_layers) for kv in ("key", "value")]
    assert list(inputs) == ["input_ids", "attention_mask", "position_ids", *past]
    assert list(outputs) == ["logits", *[f"present.{i}.{kv}" for i in range(cfg.num_layers) for kv in ("key", "value")]]
    assert inputs["input_ids"] == inputs["position_ids"] == ["batch_size", "sequence_length"]
    assert inputs["attention_mask"] == ["batch_size", "total_sequence_length"]
    for name in past:
        assert inputs[name] == ["batch_size", cfg.num_kv_heads, "past_sequence_length", cfg.head_dim]
        present = name.replace("past_key_values", "present")
        assert outputs[present] == ["batch_size", cfg.num_kv_heads, "total_sequence_length", cfg.head_dim]
    assert outputs["logits"] == ["batch_size", 1, cfg.vocab_size]  # last position only (genai: pruned)
    all_graph = onnx.load(str(load_artefact(artefacts[("fp32", "all")]).model_path)).graph
    assert [d.dim_param for d in all_graph.output[0].type.tensor_type.shape.dim][:2] == [
        "batch_size",
        "sequence_length",
    ]
    signature = art.manifest["signatures"]["decoder"]
    assert [i["name"] for i in signature["inputs"]] == list(inputs)
    genai = json.loads((art.path / "genai_config.json").read_text())["model"]
    assert genai["decoder"]["filename"] == "model.onnx" and genai["context_length"] == CACHE
    assert genai["decoder"]["num_key_value_heads"] == cfg.num_kv_heads


def test_prefill_then_decode_equals_full_forward(artefacts, reference):
    """Chunked prefill and decode on the growing cache give the rows of one full-sequence forward."""
    _, hf = reference
    tokens = np.random.default_rng(11).integers(0, 257, 20)
    hf.reset()
    full = hf.prefill(tokens)
    runner = open_artefact_runner(artefacts[("fp32", "all")], threads=1)
    runner.reset()
    rows = [runner.prefill(tokens[:7]), runner.prefill(tokens[7:12])]  # a second prompt chunk on a non-empty past
    rows += [runner.decode(int(t))[None] for t in tokens[12:]]
    np.testing.assert_allclose(np.concatenate(rows), full, atol=1e-4, rtol=0)
    last = open_artefact_runner(artefacts[("fp32", "last")], threads=1, io_binding=False)
    out = last.prefill(tokens[:12])
    assert out.shape == (1, full.shape[1]) and last.position == 12
    np.testing.assert_allclose(out[0], full[11], atol=1e-4, rtol=0)
    np.testing.assert_allclose(last.decode(int(tokens[12])), full[12], atol=1e-4, rtol=0)


@pytest.mark.parametrize("recipe", ["dynamic_int8", "int4_block32"])
def test_external_weights_give_the_logits_of_the_inline_file(artefacts, tmp_path, recipe):
    """The artefact keeps its tensors in model.onnx.data (memory-mapped by onnxruntime, docs/performance.md);
    the same graph saved as one inline protobuf gives bit-identical logits through the same runner."""
    import onnxruntime as ort

    from tinyexport.runners.ort_runner import ORTRunner, session_options

    art = load_artefact(artefacts[(recipe, "last")])
    data = art.path / "model.onnx.data"
    assert data.stat().st_size > art.model_path.stat().st_size  # the weights live in the data file
    inline = tmp_path / "inline.onnx"
    onnx.save(onnx.load(str(art.model_path)), str(inline))  # onnx.load reads the external data back in
    tokens = np.random.default_rng(5).integers(0, art.config.vocab_size, 20)
    rows = []
    for path in (art.model_path, inline):
        session = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
        runner = ORTRunner(session, art.config, max_len=CACHE, logits_positions="last")
        rows.append(np.stack([runner.prefill(tokens[:12])[-1], *[runner.decode(int(t)) for t in tokens[12:]]]))
    np.testing.assert_array_equal(rows[0], rows[1])


def test_runner_refuses_to_run_past_the_cache(artefacts):
    runner = open_artefact_runner(artefacts[("fp32", "last")], threads=1)
    runner.prefill(np.zeros(CACHE - 1, dtype=np.int64))
    runner.decode(1)
    with pytest.raises(CacheOverflowError, match="exceeds its KV cache of 64"):
        runner.decode(2)


@pytest.mark.parametrize("recipe", ["fp32", "int4_block32"])
def test_onnxruntime_genai_loads_the_directory_and_agrees(artefacts, recipe):
    og = pytest.importorskip("onnxruntime_genai")
    directory = artefacts[(recipe, "last")]
    model = og.Model(str(directory))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(PROMPT) + NEW_TOKENS, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(PROMPT.tolist())
    theirs = []
    while not generator.is_done():
        generator.generate_next_token()
        theirs.append(int(generator.get_next_tokens()[0]))
    art = load_artefact(directory)
    eos = json.loads((directory / "genai_config.json").read_text())["model"]["eos_token_id"]
    ours = greedy_generate(open_artefact_runner(art, threads=1), PROMPT, NEW_TOKENS, eos_token_id=eos).tokens
    assert len(theirs) >= 4 and theirs == ours


@pytest.mark.parametrize("recipe", ONNX_RECIPES)
def test_optimum_loads_the_directory_and_agrees(artefacts, tied_dir, recipe):
    """Optimum's ORTModelForCausalLM opens the artefact as it is (config.json + generation_config.json
    written by the converter) and its greedy generate returns our runner's ids and logits."""
    import optimum.onnxruntime as optimum_ort
    import torch

    directory = artefacts[(recipe, "last")]
    files = load_artefact(directory).manifest["files"]
    assert {"config.json", "generation_config.json"} <= set(files)  # hashed like every file
    written = json.loads((directory / "config.json").read_text())
    source = json.loads((tied_dir / "config.json").read_text())
    assert written == {**source, "max_position_embeddings": CACHE, "use_cache": True}
    model = optimum_ort.ORTModelForCausalLM.from_pretrained(str(directory))
    out = model.generate(
        torch.tensor(PROMPT)[None],
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        output_logits=True,
        return_dict_in_generate=True,
    )
    theirs = out.sequences[0, len(PROMPT) :].tolist()
    ours = greedy_generate(open_artefact_runner(directory, threads=1), PROMPT, NEW_TOKENS)
    assert theirs == ours.tokens and len(theirs) == NEW_TOKENS
    np.testing.assert_allclose(torch.stack(out.logits)[:, 0].numpy(), ours.step_logits, atol=1e-4, rtol=0)


def test_config_json_reflects_the_exported_shape_or_refuses():
    """An export that changes the architecture rewrites config.json's shape fields; a source field the
    exported model cannot honour is refused rather than shipped."""
    import dataclasses

    from tinyexport.converters.onnx_hf_config import HFConfigError, generation_config, hf_config
    from tinyexport.models.config import TINY, config_from_hf_dict

    source = {**TINY.to_hf_dict(), "initializer_range": 0.02}
    pruned = dataclasses.replace(TINY, num_heads=2, num_kv_heads=1)
    written = hf_config(source, pruned, context_length=32)
    assert written["num_attention_heads"] == 2 and written["num_key_value_heads"] == 1
    assert written["initializer_range"] == 0.02 and written["use_cache"] is True
    assert config_from_hf_dict(written) == dataclasses.replace(pruned, max_position_embeddings=32)
    with pytest.raises(HFConfigError, match="pretraining_tp"):
        hf_config({**source, "pretraining_tp": 2}, TINY, context_length=32)
    eos = dataclasses.replace(TINY, bos_token_id=1, eos_token_id=2)
    assert generation_config(None, eos) == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    assert generation_config({"eos_token_id": [2, 5]}, eos)["eos_token_id"] == [2, 5]


def test_shared_cpu_sessions_park_their_threads():
    """A speculative pair opens ONNX runners with the registry's shared-CPU options: intra-op threads
    spin inside a run but are parked the moment it returns, not spinning on the cores the other runtime
    needs next; ``spin=False`` never spins."""
    from tinyexport.formats.registry import FORMATS
    from tinyexport.runners.ort_runner import session_options

    assert dict(FORMATS["onnx"].shared_cpu_options) == {"spin_between_runs": False}
    shared = session_options(1, spin_between_runs=False)
    assert shared.get_session_config_entry("session.force_spinning_stop") == "1"
    assert session_options(1, spin=False).get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for key in ("session.intra_op.allow_spinning", "session.force_spinning_stop"):
        with pytest.raises(RuntimeError, match=key.rsplit(".", 1)[-1]):  # not set: onnxruntime's default
            session_options(1).get_session_config_entry(key)
    with pytest.raises(RuntimeError, match="allow_spinning"):  # spinning inside a run stays on
        shared.get_session_config_entry("session.intra_op.allow_spinning")
