"""What a conversion will need before it starts: disk (from the recipe's size bound) and peak memory
(a linear model fitted to measured conversions). Pure data and arithmetic: no heavy imports.
"""

from __future__ import annotations

from .recipes import RECIPES

FP32_BYTES = 4


def artefact_disk_bytes(fmt: str, recipe: str, num_parameters: int) -> int:
    """Upper estimate of the bytes a conversion writes at its peak: the model file at the recipe's size
    bound (``max_size_ratio`` x fp32 bytes), plus, for a quantized recipe, the fp32 intermediate the
    quantizer reads (TFLite's float flatbuffer, ONNX's fp32 initializers in scratch)."""
    fp32 = FP32_BYTES * num_parameters
    bound = RECIPES[recipe].size_bound(fmt) or 1.1
    intermediate = fp32 if recipe != "fp32" else 0
    return int(fp32 * bound) + intermediate


def largest_file_bytes(fmt: str, recipe: str, num_parameters: int) -> int:
    """Upper estimate of the largest single file a conversion writes (the fp32 intermediate or the model)."""
    fp32 = FP32_BYTES * num_parameters
    return max(int(fp32 * (RECIPES[recipe].size_bound(fmt) or 1.1)), fp32 if recipe != "fp32" else 0)
