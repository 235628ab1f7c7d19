"""Transformed tiny models exported to TFLite and ONNX: each artefact equals our transformed torch
model (pruned heads with different counts per layer; int8 KV cache), the artefact is smaller, the
manifest records the transforms and re-applying them to the source gives the manifest's model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tinyexport.artefact import ArtefactError, load_artefact
from tinyexport.converters.export_config import ExportConfig
from tinyexport.converters.pipeline import export_artefact
from tinyexport.models.config import TINY
from tinyexport.models.transforms import Transform, TransformError, parse_transforms
from tinyexport.runners import open_artefact_runner
from tinyexport.runners.torch_runner import TorchRunner

from .tiny_models import save_hf_checkpoint

CACHE = 32
PROMPT = np.random.default_rng(5).integers(0, 256, 11)
G3 = dataclasses.replace(TINY, num_heads=6, num_kv_heads=2, num_layers=3)
# layer 0 keeps 4 of 6 heads (groups of 2), layer 1 all 6, layer 2 keeps 2 (groups of 1)
PRUNE = Transform("prune-heads", (("criterion", "o_proj"), ("ratio", 0.33)), ((0, 4), (), (1, 2, 3, 5)))
# whole KV groups: layer 0 keeps group 1 (3 heads, 1 KV head), layer 1 all, layer 2 loses group 0 and
# one head of group 1 (2 heads, 1 KV head): per-layer KV heads (1, 2, 1)
GROUPS = Transform(
    "prune-heads",
    (("criterion", "o_proj"), ("ratio", 0.33), ("unit", "groups")),
    ((0, 1, 2), (), (0, 1, 2, 5)),
)
CASES = {
    "prune": (PRUNE,),
    "groups": (GROUPS,),
    "groups_kvint8": (GROUPS, *parse_transforms([], kv_cache="int8")),
    "kvint8": parse_transforms([], kv_cache="int8"),
    "prune_kvint8": (PRUNE, *parse_transforms([], kv_cache="int8")),
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from tinyexport.resolve import open_checkpoint

    directory = save_hf_checkpoint(G3, tmp_path_factory.mktemp("g3_hf"), seed=4)
    return directory, open_checkpoint(str(directory))


_EXPORTED: dict[tuple[str, str], tuple] = {}  # each (format, case) converted once per session


def _export(source, tmp_path_factory, fmt: str, case: str):
    if (fmt, case) not in _EXPORTED:
        _EXPORTED[fmt, case] = _convert(source, tmp_path_factory, fmt, case)
    return _EXPORTED[fmt, case]


def _convert(source, tmp_path_factory, fmt: str, case: str):
    from tinyexport.resolve import transform

    directory, ckpt = source
    tckpt = transform(ckpt, CASES[case])
    target = tmp_path_factory.mktemp(f"{fmt}_{case}") / "art"
    export_artefact(
        tckpt,
        ExportConfig(format=fmt, kv_cache_max_len=CACHE, prefill_seq_lens=(4,), prefill_logits="all"),
        target,
        source_ref={"spec": str(directory), "random_weights": False, "seed": 0},
    )
    return tckpt, load_artefact(target)


def _trace(runner) -> np.ndarray:
    """Logits of a prefill of PROMPT then 6 decode steps on fixed tokens."""
    runner.reset()
    rows = [runner.prefill(PROMPT)]
    for token in (7, 100, 3, 250, 42, 9):
        rows.append(runner.decode(token)[None])
    return np.concatenate(rows)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_artefact_equals_transformed_torch(source, tmp_path_factory, fmt: str, case: str) -> None:
    tckpt, art = _export(source, tmp_path_factory, fmt, case)
    want = _trace(TorchRunner.from_checkpoint(tckpt, max_len=CACHE))
    got = _trace(open_artefact_runner(art, threads=1))
    assert np.abs(got - want).max() < 1e-4
    recorded = art.manifest["transforms"]
    assert [t["name"] for t in recorded] == [t.name for t in CASES[case]]
    assert art.config == tckpt.config
    if "prune" in case:
        assert recorded[0]["removed"]["query_heads_per_layer"] == [[0, 4], [], [1, 2, 3, 5]]
        assert recorded[0]["removed"]["query_heads"] == 6
        assert art.config.num_heads_per_layer == (4, 6, 2)
    if "groups" in case:
        assert recorded[0]["removed"]["kv_heads"] == 2
        assert art.config.num_heads_per_layer == (3, 6, 2) and art.config.num_kv_heads_per_layer == (1, 2, 1)
        assert _graph_kv_heads(art, fmt) == [1, 2, 1]
    if "kvint8" in case:
        assert art.config.kv_cache_dtype == "int8"
    # round trip: the source checkpoint + the manifest's transforms = the manifest's model
    from tinyexport.resolve import artefact_transforms, transform

    assert transform(source[1], artefact_transforms(art)).config == art.config


def _graph_kv_heads(art, fmt: str) -> list[int]:
    """Per layer, the KV-head dimension of the graph's own key-cache tensors (read from the file, not
    the manifest): TFLite decode inputs and outputs; ONNX past inputs and present outputs."""
    n = art.config.num_layers
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(art.model_path)).get_signature_runner("decode")
        ins, outs = runner.get_input_details(), runner.get_output_details()
        heads = [int(ins[f"kv_cache_k_{i}"]["shape"][1]) for i in range(n)]
        assert heads == [int(outs[f"kv_cache_k_{i}"]["shape"][1]) for i in range(n)]
        return heads
    import onnx

    graph = onnx.load(str(art.model_path), load_external_data=False).graph

    def dims(values, prefix: str) -> list[int]:
        shapes = {v.name: v.type.tensor_type.shape.dim for v in values}
        return [shapes[f"{prefix}.{i}.key"][1].dim_value for i in range(n)]

    heads = dims(graph.input, "past_key_values")
    assert heads == dims(graph.output, "present")
    return heads


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_pruned_artefact_is_smaller(source, tmp_path_factory, fmt: str) -> None:
    _, plain = _export(source, tmp_path_factory, fmt, "kvint8")  # same weights as the source
    for case in ("prune", "groups"):
        _, pruned = _export(source, tmp_path_factory, fmt, case)
        assert pruned.size_bytes() < plain.size_bytes()
        saved = plain.manifest["weight_bytes"] - pruned.manifest["weight_bytes"]
        assert saved >= 4 * pruned.manifest["transforms"][0]["removed"]["parameters"] * 0.99


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_manifest_that_disagrees_with_graph_refused(source, tmp_path_factory, tmp_path, fmt: str) -> None:
    """A manifest edited to claim other heads than its graph has: the runner refuses in one line."""
    import shutil

    from tinyexport.artefact import MANIFEST, write_manifest

    _, exported = _export(source, tmp_path_factory, fmt, "prune")
    art = load_artefact(shutil.copytree(exported.path, tmp_path / "edited"))  # the shared export stays intact
    manifest = dict(art.manifest)
    manifest["model_config"] = dict(
        manifest["model_config"], num_kv_heads_per_layer=[2, 2, 1], num_heads_per_layer=[4, 6, 2]
    )
    fields = {k: v for k, v in manifest.items() if k not in ("schema", "created", "tool_versions", "files")}
    (art.path / MANIFEST).unlink()
    write_manifest(art.path, fields)
    with pytest.raises(ArtefactError, match="re-run"):
        open_artefact_runner(load_artefact(art.path), threads=1)


def test_bf16_cannot_be_exported(source, tmp_path) -> None:
    from tinyexport.resolve import transform

    tckpt = transform(source[1], parse_transforms(["mixed-precision=bf16"]))
    with pytest.raises(TransformError, match="cannot carry"):
        export_artefact(tckpt, ExportConfig(format="onnx"), tmp_path / "x", source_ref={})
    assert not (tmp_path / "x").exists()


def test_manifest_transforms_are_json(source, tmp_path_factory) -> None:
    _, art = _export(source, tmp_path_factory, "onnx", "prune_kvint8")
    text = (art.path / "manifest.json").read_text()
    entries = json.loads(text)["transforms"]
    assert entries[1] == {"name": "kv-cache", "params": {"value": "int8"}}
    assert not (art.path / "genai_config.json").exists()  # genai cannot describe per-layer heads
    assert art.manifest["onnx"]["fusions"]["GroupQueryAttention"] == 0  # int8 cache: explicit ops
