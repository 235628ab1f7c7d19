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


# Peak RSS of `tinyexport convert` = base_mib + mib_per_mparam x (parameters / 1e6): a line through the
# two shapes measured per format and recipe (docs/tflite.md, its measured table, and docs/onnx.md, the
# "Conversion:" line; GB there = 1e9 bytes, converted to MiB): SmolLM2-135M (134.5M parameters)
# and the TinyLlama-1.1B shape (1100.0M parameters). Measured peaks, GB:
#   tflite  fp32 2.3 / 5.2   dynamic_int8 2.3 / 6.4   weight_only_int8 2.3 / 6.5   int4_block32 2.3 / 6.9
#           fp16 with the float16 cast done once (docs/performance.md section 4; quiet machine, 2026-12-02,
#           scripts/conversion_memory.py): 2,342 / 7,635 MiB (was 3.4 / 15.7 GB before the cast-once change)
#   onnx    SmolLM2 2.1-2.7 for every recipe (2.7 used); 1.1B fp32 5.1, fp16 7.2
#           streamed quantizer (docs/performance.md section 4): dynamic_int8 1.879 / 6.293,
#           int4_block32 1.431 / 5.621
# Each manifest records its prediction next to the measured peak (conversion.predicted_peak_rss_mb,
# conversion.peak_rss_mb): refit from those when a new shape or recipe is measured.
MEMORY_MODEL: dict[tuple[str, str], tuple[float, float]] = {
    ("tflite", "fp32"): (1808, 2.864),
    ("tflite", "fp16"): (1605, 5.482),
    ("tflite", "dynamic_int8"): (1649, 4.050),
    ("tflite", "weight_only_int8"): (1635, 4.148),
    ("tflite", "int4_block32"): (1582, 4.544),
    ("onnx", "fp32"): (2256, 2.371),
    ("onnx", "fp16"): (1977, 4.445),
    ("onnx", "dynamic_int8"): (1206, 4.359),
    ("onnx", "int4_block32"): (808, 4.139),
    # GGUF: lines through SmolLM2 (134.5 M parameters: fp32 768, q4_0 929, q8_0 979 MiB, quiet machine,
    # 2026-12-02) and the 1.1B shape (q8_0 5,913, q4_0 5,549 MiB, same run). The old single line through a
    # tiny model predicted 18.2 GB for the 1.1B (3x its 5.9 GB) and refused it on a 24 GB machine. fp32/fp16
    # of the 1.1B were not measured: they share q8_0's line (the fp32 state dict dominates every recipe).
    ("gguf", "fp32"): (292, 5.110),
    ("gguf", "fp16"): (292, 5.110),
    ("gguf", "q8_0"): (292, 5.110),
    ("gguf", "q4_0"): (285, 4.785),
    # ExecuTorch: a line through tiny fp32 (433 MiB, 0.1 M parameters) and SmolLM2 fp32 measured whole on a
    # quiet machine (3,776 MiB, 392 s; the earlier 50-minute "did not finish" was a machine at load 25).
    # Torchao's quantized copies are small next to that; the recipes share it.
    ("executorch", "fp32"): (431, 24.89),
    ("executorch", "8da4w"): (431, 14.61),  # its own line: SmolLM2 8da4w peaked at 2,395 MiB
    ("executorch", "dynamic_int8"): (431, 24.89),
}


def predicted_peak_rss_mb(fmt: str, recipe: str, num_parameters: int) -> float | None:
    """Predicted peak RSS (MiB) of converting ``num_parameters`` to ``fmt``/``recipe``; None if never measured."""
    coefficients = MEMORY_MODEL.get((fmt, recipe))
    if coefficients is None:
        return None
    base, per_mparam = coefficients
    return base + per_mparam * num_parameters / 1e6
