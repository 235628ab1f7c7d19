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
CASES = {
    "prune": (PRUNE,),
    "kvint8": parse_transforms([], kv_cache="int8"),
    "prune_kvint8": (PRUNE, *parse_transforms([], kv_cache="int8")),
}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from tinyexport.resolve import open_checkpoint

    directory = save_hf_checkpoint(G3, tmp_path_factory.mktemp("g3_hf"), seed=4)
    return directory, open_checkpoint(str(directory))


def _export(source, tmp_path_factory, fmt: str, case: str):
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
    if "kvint8" in case:
        assert art.config.kv_cache_dtype == "int8"
    # round trip: the source checkpoint + the manifest's transforms = the manifest's model
    from tinyexport.resolve import artefact_transforms, transform

    assert transform(source[1], artefact_transforms(art)).config == art.config


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_pruned_artefact_is_smaller(source, tmp_path_factory, fmt: str) -> None:
    _, plain = _export(source, tmp_path_factory, fmt, "kvint8")  # same weights as the source
    _, pruned = _export(source, tmp_path_factory, fmt, "prune")
    assert pruned.size_bytes() < plain.size_bytes()
    saved = plain.manifest["weight_bytes"] - pruned.manifest["weight_bytes"]
    assert saved >= 4 * pruned.manifest["transforms"][0]["removed"]["parameters"] * 0.99


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_manifest_that_disagrees_with_graph_refused(source, tmp_path_factory, fmt: str) -> None:
    """A manifest edited to claim other heads than its graph has: the runner refuses in one line."""
    from tinyexport.artefact import MANIFEST, write_manifest

    _, art = _export(source, tmp_path_factory, fmt, "prune")
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
