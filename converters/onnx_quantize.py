"""ONNX recipes: what each entry of the recipe registry does to the fused fp32 graph.

Every recipe takes the ``onnx_ir`` model (and may consume it) and a scratch directory, and returns the
model to save plus a few facts for the manifest. Recipes are looked up by name (``ONNX_RECIPES``); ``converters/recipes.py``
holds their tolerances and size bounds.

* ``fp32``: unchanged.
* ``fp16``: matrices (projections, embedding, lm_head) stored as float16, each behind a ``Cast`` to
  float32: half the file, while compute stays float32 -- onnxruntime has no float16 GEMM for x86
  CPUs, and it folds the casts once at session load.
* ``dynamic_int8``: int8 symmetric weights with a scale per block of 32 (``MatMulNBits`` bits=8), the
  activations quantized to int8 dynamically, per block, inside the kernel (accuracy_level 4); the
  embedding table as an int8 ``Gather``. Why not ``quantize_dynamic``'s MatMulInteger: see
  ``_dynamic_int8``.
* ``int4_block32``: onnxruntime's ``MatMulNBitsQuantizer``: symmetric int4 in blocks of 32 with one
  scale per block, MatMul -> ``MatMulNBits`` (accuracy_level 4: int8 activations in the kernel) and the
  embedding -> ``GatherBlockQuantized``.

A tied lm_head is a ``Transpose`` of the embedding table; the quantizers only quantize a MatMul whose
weight is an initializer, so (as in Optimum's int8 export) it would stay a float32 matrix multiply
over a dequantized table on every decode step -- the single largest kernel of a small model. The
quantized recipes therefore give the lm_head its own transposed copy first, which is then quantized
like every other projection (the file carries the table twice, each at 8 or 4 bits).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.errors import UserError
from tinyexport.formats import onnx_io as io

ONNX_EXPORTER_MIN_OPSET = 18  # torch.onnx's dynamo exporter emits opset 18 and newer
ONNX_MAX_OPSET = 23  # newest opset every pinned consumer (onnx 1.23, onnxruntime 1.31, genai 0.18) runs


class OpsetError(UserError, ValueError):
    """The requested ONNX opset cannot carry the recipe."""


@dataclass(frozen=True)
class OnnxRecipe:
    name: str
    apply: Callable[[Any, Path], tuple[Any, dict[str, Any]]]  # (model, scratch dir) -> (model to save, facts)
    min_opset: int
    why_min_opset: str
    streamed: bool = False  # reads the weights one at a time: give it the graph offloaded to scratch (lazy tensors)


def _cast_to(graph, value, dtype, name: str):
    import onnx_ir as ir

    node = ir.Node("", "Cast", [value], attributes=[ir.AttrInt64("to", dtype)], name=name)
    node.outputs[0].dtype = dtype
    node.outputs[0].shape = value.shape
    return node


def untie_lm_head(model) -> bool:
    """Give a tied lm_head (MatMul over Transpose(embedding)) its own transposed initializer."""
    import onnx_ir as ir

    graph = model.graph
    logits = next(v for v in graph.outputs if v.name == io.LOGITS)
    matmul = logits.producer()
    if matmul is None or matmul.op_type != "MatMul":
        return False
    transpose = matmul.inputs[1].producer()
    if transpose is None or transpose.op_type != "Transpose" or not transpose.inputs[0].is_initializer():
        return False
    stored = transpose.inputs[0].const_value
    table = stored.numpy()
    lm_head = np.ascontiguousarray(table.T)
    del table
    if isinstance(stored, ir.ExternalTensor):
        stored.release()  # unmap the table (it is read again when quantized)
    weight = ir.Value(
        name="lm_head.weight_t",
        const_value=ir.tensor(lm_head, name="lm_head.weight_t"),
        shape=ir.Shape(lm_head.shape),
        type=ir.TensorType(ir.DataType.FLOAT),
    )
    graph.register_initializer(weight)
    matmul.replace_input_with(1, weight)
    graph.remove(transpose, safe=True)
    return True


def _fp32(model, scratch: Path) -> tuple[Any, dict[str, Any]]:
    return model, {}


def _fp16(model, scratch: Path) -> tuple[Any, dict[str, Any]]:
    """Store every float32 matrix (rank >= 2 initializer read by MatMul/Gather/Transpose) as float16."""
    import onnx_ir as ir

    graph = model.graph
    converted = 0
    for value in list(graph.initializers.values()):
        tensor = value.const_value
        consumers = {u.node.op_type for u in value.uses()}
        if (
            tensor is None
            or value.dtype != ir.DataType.FLOAT
            or len(value.shape) < 2
            or not consumers <= {"MatMul", "Gather", "Transpose"}
        ):
            continue
        half = value.name + ".fp16"
        stored = ir.Value(
            name=half,
            const_value=ir.tensor(tensor.numpy().astype(np.float16), name=half),
            shape=value.shape,
            type=ir.TensorType(ir.DataType.FLOAT16),
        )
        graph.register_initializer(stored)
        cast = _cast_to(graph, stored, ir.DataType.FLOAT, f"{value.name}/to_fp32")
        graph.insert_before(next(iter(graph)), cast)
        ir.convenience.replace_all_uses_with(value, cast.outputs[0])
        graph.initializers.pop(value.name)
        converted += 1
    return model, {"fp16_matrices": converted}


@contextlib.contextmanager
def _quiet_quantizer_logging():
    """onnxruntime.quantization logs "consider pre-processing" on the root logger, and importing its
    MatMulNBits module runs ``logging.basicConfig(level=INFO)``, which would print a line per node.
    Keep the root logger quiet meanwhile and put its level and handlers back afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    import onnxruntime.quantization.matmul_nbits_quantizer  # noqa: F401  (its basicConfig runs now, not later)

    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def _streamed(model, scratch: Path, recipe) -> dict[str, int]:
    from .onnx_stream_quant import quantize_weights

    with _quiet_quantizer_logging():
        return quantize_weights(model, recipe, scratch / "quantized.data")


def _dynamic_int8(model, scratch: Path) -> tuple[Any, dict[str, Any]]:
    """int8 weights in blocks of 32 (MatMulNBits bits=8), int8 activations quantized per block inside the
    kernel; the embedding table as a uint8 Gather + DequantizeLinear (``quantize_dynamic``'s form).

    Measured on SmolLM2 (vs the fp32 artefact, 32 teacher-forced positions): ``quantize_dynamic``'s
    MatMulInteger quantizes each activation row with ONE scale, and the MLP down-projection inputs have
    outlier channels -- mean KL 0.138, top-1 0.75, greedy 1/32; blocks of 32 keep KL at 0.005, top-1 1.0.
    Decode is as fast (MatMulNBits 20 ms vs DynamicQuantizeMatMul 21 ms per token, 2 threads).

    Streamed one weight at a time (``onnx_stream_quant``); the bytes equal those of onnxruntime's
    ``MatMulNBitsQuantizer(bits=8)`` + ``quantize_dynamic`` (tests/test_onnx_stream_quant.py)."""
    from .onnx_stream_quant import StreamRecipe

    untied = untie_lm_head(model)
    counts = _streamed(model, scratch, StreamRecipe(bits=8, embedding="uint8"))
    return model, {
        "lm_head_untied": untied,
        "quantizer": "streamed, onnxruntime's arithmetic: MatMulNBits(bits=8, block_size=32, symmetric, "
        "accuracy_level=4); embedding Gather as uint8 + DequantizeLinear (quantize_dynamic's form)",
        "quantized_weights": counts,
    }


def _int4_block32(model, scratch: Path) -> tuple[Any, dict[str, Any]]:
    from .onnx_stream_quant import StreamRecipe

    untied = untie_lm_head(model)
    counts = _streamed(model, scratch, StreamRecipe(bits=4, embedding="block"))
    return model, {
        "lm_head_untied": untied,
        "quantizer": "streamed, onnxruntime's arithmetic: MatMulNBits(bits=4, block_size=32, symmetric, "
        "accuracy_level=4), embedding -> GatherBlockQuantized",
        "quantized_weights": counts,
    }


ONNX_RECIPES: dict[str, OnnxRecipe] = {
    r.name: r
    for r in (
        OnnxRecipe("fp32", _fp32, ONNX_EXPORTER_MIN_OPSET, "torch.onnx's exporter emits opset 18+"),
        OnnxRecipe("fp16", _fp16, ONNX_EXPORTER_MIN_OPSET, "torch.onnx's exporter emits opset 18+"),
        OnnxRecipe(
            "dynamic_int8", _dynamic_int8, ONNX_EXPORTER_MIN_OPSET, "torch.onnx's exporter emits opset 18+", True
        ),
        OnnxRecipe(
            "int4_block32",
            _int4_block32,
            21,
            "its embedding table is stored with the ONNX int4 element type, introduced with opset 21",
            True,
        ),
    )
}


def check_opset(recipe: str, opset: int) -> None:
    """Raise ``OpsetError`` (bad input) if ``opset`` cannot carry ``recipe``."""
    spec = ONNX_RECIPES[recipe]
    if opset > ONNX_MAX_OPSET:
        raise OpsetError(
            f"--opset {opset} is newer than the pinned onnxruntime/genai support ({ONNX_MAX_OPSET}); "
            f"use --opset {ONNX_MAX_OPSET} or lower"
        )
    if opset < spec.min_opset:
        raise OpsetError(
            f"--opset {opset} is too old for recipe {recipe}: it needs opset >= {spec.min_opset} "
            f"({spec.why_min_opset}); pass --opset {max(spec.min_opset, 21)}"
        )
