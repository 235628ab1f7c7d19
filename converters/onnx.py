"""ONNX converter: checkpoint -> ``model.onnx`` (+ ``model.onnx.data``) + ``genai_config.json``
+ ``config.json`` / ``generation_config.json``.

Steps, one module each: trace our Llama with the ``concat`` KV writer (``onnx_export``), fuse it for
onnxruntime (``onnx_fusion``), apply the recipe (``onnx_quantize``), save (tensors in
``model.onnx.data``, memory-mapped by onnxruntime), write the onnxruntime-genai config (``onnx_genai``)
and the transformers/Optimum configs (``onnx_hf_config``), and run ``onnx.checker`` on the file.
The pipeline (``converters/pipeline.py``) does the atomic directory, tokenizer files and manifest.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .export_config import ExportConfig
from .onnx_quantize import ONNX_RECIPES, check_opset

DEFAULT_OPSET = 21
MODEL_FILE = "model.onnx"
EXTERNAL_MIN_BYTES = 1024  # initializers at least this big go to model.onnx.data (see save_model)


def convert(
    checkpoint: Any, export: ExportConfig, out_dir: Path, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Write ``out_dir/model.onnx`` and ``genai_config.json``; ``progress`` is told each stage as it starts."""
    import numpy as np

    from tinyexport.models.loading import load_model

    from .onnx_export import export_graph
    from .onnx_fusion import fuse_for_ort
    from .onnx_genai import write_genai_config
    from .onnx_hf_config import write_hf_configs

    opset = export.opset or DEFAULT_OPSET
    check_opset(export.recipe, opset)
    progress("loading weights")
    model = load_model(
        checkpoint,
        max_seq_len=export.kv_cache_max_len,
        attention=export.attention,
        flash_block_size=export.flash_block_size,
        kv_writer="concat",
    )
    rope_cos, rope_sin = np.array(model.rope_cos.numpy()), np.array(model.rope_sin.numpy())
    progress("tracing the decoder graph (torch.onnx.export, dynamo)")
    graph = export_graph(model, logits=export.prefill_logits, opset=opset)
    del model
    progress("fusing for onnxruntime (attention, RMSNorm, RoPE)")
    fusions = fuse_for_ort(graph, checkpoint.config, rope_cos, rope_sin)
    out_dir = Path(out_dir)
    recipe = ONNX_RECIPES[export.recipe]
    with tempfile.TemporaryDirectory(prefix=".onnx-scratch-", dir=out_dir) as scratch:  # inside the atomic temp dir
        if recipe.streamed:
            from .onnx_stream_quant import offload

            progress("writing the fp32 graph to scratch (external data)")
            graph = offload(graph, Path(scratch) / "float.onnx")  # rebinding drops the traced graph
            gc.collect()
        if export.recipe != "fp32":
            progress(f"quantizing to {export.recipe}")
        graph, facts = recipe.apply(graph, Path(scratch))
        progress(f"writing {MODEL_FILE}")
        weight_bytes = save_model(graph, out_dir / MODEL_FILE)
    del graph
    config = checkpoint.config
    genai = config.uniform_heads and config.kv_cache_dtype == "float32"  # what genai and HF configs can describe
    if genai:
        write_genai_config(out_dir, config, model_file=MODEL_FILE, context_length=export.kv_cache_max_len)
        write_hf_configs(out_dir, checkpoint.directory, config, context_length=export.kv_cache_max_len)
    progress("checking the file (onnx.checker)")
    check_file(out_dir / MODEL_FILE)
    # a tied lm_head gets its own (quantized) copy of the embedding: the size check counts it
    untied = config.vocab_size * config.hidden_size if facts.get("lm_head_untied") else 0
    return {
        "signatures": {"decoder": read_signature(out_dir / MODEL_FILE)},
        "weight_bytes": weight_bytes,
        "stored_parameters": config.num_parameters() + untied,
        "onnx": {
            "opset": opset,
            "exporter": "torch.onnx.export(dynamo=True)",
            "fusions": fusions,
            "external_data": (out_dir / (MODEL_FILE + ".data")).exists(),
            "genai_config": genai,
            **facts,
        },
    }


def save_model(model, path: Path) -> int:
    """Save with every tensor over 1 KiB in ``<file>.data`` (small ones stay inline). Returns tensor bytes.

    Always external, not only past protobuf's 2 GB limit: onnxruntime memory-maps external initializers
    (the pages are the file's, shared with the page cache, and the ones its kernels prepack into their
    own layout are never touched again), while inline ones are parsed out of the protobuf into heap
    copies that stay resident. SmolLM2 int8: 301 vs 368 MiB RSS while decoding, logits bit-identical
    (docs/performance.md, ``scripts/runtime_memory_study.py``).
    """
    import onnx_ir as ir

    ir.passes.common.RemoveUnusedNodesPass()(model)  # quantizers leave the replaced fp32 weights behind
    weight_bytes = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    ir.save(model, path, external_data=path.name + ".data", size_threshold_bytes=EXTERNAL_MIN_BYTES)
    return int(weight_bytes)


def check_file(path: Path) -> None:
    """``onnx.checker`` on the written file (by path, so external data is checked too)."""
    import onnx

    onnx.checker.check_model(str(path))


def read_signature(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs with element type and shape (symbolic dims by name), read from the file."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def describe(values) -> list[dict[str, Any]]:
        return [
            {
                "name": v.name,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name,
                "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            }
            for v in values
        ]

    return {"inputs": describe(graph.input), "outputs": describe(graph.output)}


__all__ = ["DEFAULT_OPSET", "MODEL_FILE", "ONNX_RECIPES", "convert"]
