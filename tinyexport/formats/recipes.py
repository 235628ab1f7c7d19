"""The quantization-recipe registry: one entry per recipe says which formats can build it and how
close to the reference each must be. The CLI's ``--quantize`` choices, converter dispatch, the
verifier's tolerances and the test parametrisation all read this table.

Format ``torch`` is the re-implementation itself (fp32 only): its row is the level-1 parity bar.
Pure data: no heavy imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Tolerance:
    """Bounds on the parity metrics; ``None`` means the metric is reported but not gated."""

    max_abs: float | None = None  # max |logit_ref - logit_cand| over compared positions
    min_top1: float = 1.0  # fraction of compared positions whose argmax agrees
    max_kl: float | None = None  # mean KL(ref || cand) in nats per position
    min_greedy: float = 1.0  # fraction of greedy tokens identical before the first divergence

    def violations(self, max_abs: float, top1: float, kl: float, greedy_fraction: float) -> list[str]:
        """Human-readable list of the bounds a measurement breaks (empty = pass)."""
        out = []
        if self.max_abs is not None and not max_abs <= self.max_abs:
            out.append(f"max_abs {max_abs:.3g} > {self.max_abs:g}")
        if not top1 >= self.min_top1:
            out.append(f"top1 {top1:.3f} < {self.min_top1:g}")
        if self.max_kl is not None and not kl <= self.max_kl:
            out.append(f"kl {kl:.3g} > {self.max_kl:g}")
        if not greedy_fraction >= self.min_greedy:
            out.append(f"greedy {greedy_fraction:.2f} < {self.min_greedy:g}")
        return out


# ExecuTorch through its XNNPACK delegate (executorch 1.5.1); docs/executorch.md. Measured: tiny fp32 max_abs
# 1.8e-7 (fp32 bound as TFLite's XNNPACK); SmolLM2 8da4w (`tinyexport verify`, 17-token prompt + 32 greedy)
# top-1 0.72 KL 0.53 3/32, so int4's bounds; dynamic_int8 (8da8w) bounds are TFLite int8's, not yet measured
# on SmolLM2 (tiny: max_abs 0.01, top-1 1.0).
EXECUTORCH_FP32 = Tolerance(max_abs=2.5e-4, min_top1=1.0, max_kl=1e-6, min_greedy=1.0)
EXECUTORCH_8DA8W = Tolerance(min_top1=0.8, max_kl=0.05, min_greedy=0.0)
EXECUTORCH_8DA4W = Tolerance(min_top1=0.4, max_kl=1.0, min_greedy=0.0)

FP32_TIGHT = Tolerance(max_abs=1e-4, min_top1=1.0, max_kl=1e-6, min_greedy=1.0)

# TFLite bounds, measured on SmolLM2 (8 prompts of 3-17 tokens + 32 greedy tokens, and one of 108 + 64;
# `tinyexport verify` with default threads) and set with a margin. Measured ranges:
#   fp32             max_abs 5.8e-5 .. 1.24e-4 (XNNPACK's fp32 kernels sum in another order), KL < 1e-10
#   fp16             top-1 1.0, KL 1.2e-6 .. 3.3e-6, greedy 32/32 on every prompt
#   dynamic_int8     top-1 0.84 .. 1.0, KL 0.015 .. 0.029, greedy 0/32 .. 32/32
#   weight_only_int8 top-1 0.91 .. 1.0, KL 0.0026 .. 0.0070, greedy 2/32 .. 32/32
#   int4_block32     top-1 0.47 .. 0.78, KL 0.34 .. 0.74, greedy 0/32 .. 6/32
# Greedy agreement is not gated for the integer recipes: at a near-tie the first generated token can
# already differ (it did for both int8 recipes), so top-1 and KL are their gates. int4 with symmetric
# blocks is poor on SmolLM2 whose only weights are asymmetric Q4_1 (a plain-torch simulation of the same
# rounding gives the same KL), so its bounds only catch a broken model, not a mediocre one.
TFLITE_FP32 = Tolerance(max_abs=2.5e-4, min_top1=1.0, max_kl=1e-6, min_greedy=1.0)

# GGUF through llama.cpp (llama-cpp-python 0.3.36, CPU, F32 KV cache for fp32, F16 otherwise), measured on
# SmolLM2 (`tinyexport verify`, 17-token prompt + 32 greedy tokens): fp32 max_abs 5.8e-5 KL 7e-12 32/32;
# fp16 top-1 1.0 KL 4.8e-6 32/32; q8_0 top-1 1.0 KL 0.0057 32/32; q4_0 top-1 0.75 KL 0.37 0/32 (SmolLM2's
# only weights are asymmetric Q4_1, which the symmetric Q4_0 grid cannot hold: see int4_block32). The fp32
# bound keeps TFLite's margin for llama.cpp's own summation order (tiny test models: 3.6e-7).
GGUF_FP32 = Tolerance(max_abs=2.5e-4, min_top1=1.0, max_kl=1e-6, min_greedy=1.0)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)  # format -> bound; keys = supported formats
    short: str = ""  # tag used in default artefact names (e.g. "q8")
    # Largest allowed (model file bytes) / (fp32 parameter bytes), one bound for every format or one per
    # format. A converter that silently leaves weights in fp32 fails this check instead of shipping a
    # "quantized" file that is not.
    max_size_ratio: float | Mapping[str, float] | None = None

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(self.tolerances)

    def size_bound(self, fmt: str | None = None) -> float | None:
        if isinstance(self.max_size_ratio, Mapping):
            return self.max_size_ratio.get(fmt) if fmt is not None else max(self.max_size_ratio.values())
        return self.max_size_ratio


RECIPES: Mapping[str, Recipe] = MappingProxyType(
    {
        r.name: r
        for r in (
            # max_size_ratio: stored weight bytes / fp32 parameter bytes. TFLite measures 1.001 (fp32),
            # 0.501 (fp16), 0.250 (int8), 0.141 (int4, fp16 block scales) on SmolLM2 and the 1.1B shape.
            # Each bound sits below the size the recipe would have with the embedding and lm_head left in
            # fp32 (1.1B: 0.56 / 0.34 / 0.24), or with int8 instead of int4.
            Recipe(
                "fp32",
                "no quantization (float32 weights and activations)",
                {
                    "torch": FP32_TIGHT,
                    "tflite": TFLITE_FP32,
                    "onnx": FP32_TIGHT,
                    "gguf": GGUF_FP32,
                    "executorch": EXECUTORCH_FP32,
                },
                short="f32",
                max_size_ratio=1.1,
            ),
            # ONNX rows: SmolLM2 `tinyexport verify` (17-token prompt, 32 greedy tokens), with margin. Measured:
            # fp16 top-1 1.0 KL 1.7e-6 32/32; dynamic_int8 top-1 1.0 KL 0.0053 32/32; int4 top-1 0.56 KL 0.39 1/32.
            Recipe(
                "fp16",
                "float16 weights",
                {
                    "tflite": Tolerance(min_top1=0.97, max_kl=1e-5, min_greedy=0.5),
                    "onnx": Tolerance(min_top1=0.95, max_kl=1e-4, min_greedy=0.5),
                    "gguf": Tolerance(min_top1=0.95, max_kl=1e-4, min_greedy=0.5),
                },
                short="f16",
                max_size_ratio={"tflite": 0.55, "onnx": 0.55, "gguf": 0.55},
            ),
            Recipe(
                "dynamic_int8",
                "int8 weights, int8 dynamic-range activations in matmuls "
                "(TFLite: per-channel weights; ONNX: a scale per block of 32)",
                {
                    "tflite": Tolerance(min_top1=0.8, max_kl=0.05, min_greedy=0.0),
                    "onnx": Tolerance(min_top1=0.9, max_kl=0.02, min_greedy=0.5),
                    "executorch": EXECUTORCH_8DA8W,
                },
                short="q8",
                max_size_ratio={"tflite": 0.3, "onnx": 0.4, "executorch": 0.3},  # ExecuTorch: its linear weights only
            ),
            Recipe(
                "weight_only_int8",
                "int8 per-channel weights, float activations",
                {"tflite": Tolerance(min_top1=0.85, max_kl=0.012, min_greedy=0.0)},
                short="w8",
                max_size_ratio={"tflite": 0.3},
            ),
            Recipe(
                "int4_block32",
                "int4 weights in blocks of 32 with a scale per block (dynamic-range matmuls)",
                {
                    "tflite": Tolerance(min_top1=0.4, max_kl=1.0, min_greedy=0.0),
                    "onnx": Tolerance(min_top1=0.45, max_kl=0.6, min_greedy=0.0),
                },
                short="q4b32",
                max_size_ratio={"tflite": 0.22, "onnx": 0.25},
            ),
            # GGUF (llama.cpp) recipes, quantized by gguf.quants; bounds: see GGUF_FP32. 34 bytes per block
            # of 32 (Q8_0) is 0.266 of fp32; Q4_0 blocks take 18 bytes (0.141), token_embd/output stay Q8_0.
            Recipe(
                "q8_0",
                "llama.cpp Q8_0: int8 weights, one fp16 scale per block of 32",
                {"gguf": Tolerance(min_top1=0.9, max_kl=0.02, min_greedy=0.0)},
                short="q8_0",
                max_size_ratio={"gguf": 0.3},
            ),
            Recipe(
                "q4_0",
                "llama.cpp Q4_0: int4 weights, one fp16 scale per block of 32 (embeddings/output Q8_0)",
                {"gguf": Tolerance(min_top1=0.4, max_kl=1.0, min_greedy=0.0)},
                short="q4_0",
                max_size_ratio={"gguf": 0.22},
            ),
            # ExecuTorch (XNNPACK) 8-bit dynamic activations / 4-bit weights, ExecuTorch's Llama recipe (torchao
            # Int8DynamicActivationIntxWeightConfig, int4 weights with a scale per group of 32, every nn.Linear,
            # embeddings fp32). Bounds: see EXECUTORCH_FP32. The size check covers the linear weights only (the
            # recipe keeps the embedding fp32 by design): 0.5 byte + 4/32 per weight = 0.156 of fp32.
            Recipe(
                "8da4w",
                "int8 dynamic per-token activations, int4 weights with a scale per group of 32 (ExecuTorch)",
                {"executorch": EXECUTORCH_8DA4W},
                short="8da4w",
                max_size_ratio={"executorch": 0.2},
            ),
        )
    }
)

BARE_QUANTIZE = "dynamic_int8"  # what a bare `--quantize` means


def recipes_for(fmt: str) -> tuple[str, ...]:
    return tuple(name for name, r in RECIPES.items() if fmt in r.tolerances)


def tolerance_for(fmt: str, recipe: str) -> Tolerance:
    try:
        return RECIPES[recipe].tolerances[fmt]
    except KeyError:
        raise KeyError(f"no tolerance for format {fmt!r} recipe {recipe!r}") from None
