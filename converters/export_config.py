"""ExportConfig: how to export (format, recipe, signatures, cache), separate from the model's config.

Frozen and validated on construction; the CLI turns its ``ValueError`` into a one-line exit 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tinyexport.formats.recipes import RECIPES, recipes_for
from tinyexport.formats.registry import FORMATS
from tinyexport.models.config import ATTENTION_IMPLS

PREFILL_LOGITS = ("last", "all")


@dataclass(frozen=True)
class ExportConfig:
    format: str
    recipe: str = "fp32"
    prefill_seq_lens: tuple[int, ...] = (8, 64, 128)
    kv_cache_max_len: int = 1024
    attention: str = "standard"
    flash_block_size: int = 128
    prefill_logits: str = "last"  # "last": logits of the last prompt position only; "all": every position
    opset: int | None = None  # ONNX only: the graph's opset (None: the converter's default)
    # TFLite only: extra attention spans (< kv_cache_max_len): decode_s{W} / prefill_{N}_s{W} signatures
    # that read only cache slots [0, W); the runner picks the smallest span that holds the call.
    decode_spans: tuple[int, ...] = ()
    # TFLite only: also prefill_{N}_s{W} signatures for each span (each adds a prefill graph per span:
    # conversion time and ~3 MB of quantization metadata per signature on SmolLM2 int8)
    prefill_spans: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.format not in RECIPES[self.recipe].tolerances:
            raise ValueError(
                f"recipe {self.recipe!r} is not available for {self.format}; "
                f"{self.format} supports {', '.join(recipes_for(self.format))}"
            )
        if not self.prefill_seq_lens:
            raise ValueError("prefill_seq_lens is empty; give at least one length, e.g. 8,64,128")
        bad = [n for n in self.prefill_seq_lens if not isinstance(n, int) or n <= 0]
        if bad:
            raise ValueError(f"prefill_seq_lens must be positive integers, got {list(self.prefill_seq_lens)}")
        if len(set(self.prefill_seq_lens)) != len(self.prefill_seq_lens):
            raise ValueError(f"prefill_seq_lens has duplicates: {list(self.prefill_seq_lens)}")
        if not isinstance(self.kv_cache_max_len, int) or self.kv_cache_max_len <= 0:
            raise ValueError(f"kv_cache_max_len must be a positive integer, got {self.kv_cache_max_len}")
        too_long = [n for n in self.prefill_seq_lens if n > self.kv_cache_max_len]
        if too_long:
            raise ValueError(f"prefill_seq_lens {too_long} exceed kv_cache_max_len {self.kv_cache_max_len}")
        if self.attention not in ATTENTION_IMPLS:
            raise ValueError(f"unknown attention {self.attention!r}; choose one of {', '.join(ATTENTION_IMPLS)}")
        if self.flash_block_size <= 0:
            raise ValueError(f"flash_block_size must be positive, got {self.flash_block_size}")
        if self.prefill_logits not in PREFILL_LOGITS:
            raise ValueError(f"prefill_logits must be one of {PREFILL_LOGITS}, got {self.prefill_logits!r}")
        if self.opset is not None:
            if self.format != "onnx":
                raise ValueError(f"--opset applies to --format onnx only (got --format {self.format})")
            from .onnx_quantize import check_opset

            check_opset(self.recipe, self.opset)
        if self.decode_spans:
            if self.format != "tflite":
                raise ValueError(f"--decode-spans applies to --format tflite only (got --format {self.format})")
            bad = [w for w in self.decode_spans if not isinstance(w, int) or not 0 < w < self.kv_cache_max_len]
            if bad or len(set(self.decode_spans)) != len(self.decode_spans):
                raise ValueError(
                    f"--decode-spans {list(self.decode_spans)}: spans must be distinct integers between 1 and "
                    f"kv_cache_max_len - 1 ({self.kv_cache_max_len - 1}), e.g. 256,512"
                )
        elif self.prefill_spans and self.format == "tflite":
            raise ValueError("--prefill-spans needs attention spans; pass --decode-spans auto or a list, e.g. 256,512")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["prefill_seq_lens"] = list(self.prefill_seq_lens)
        data["decode_spans"] = list(self.decode_spans)
        return data


def parse_seq_lens(text: str) -> tuple[int, ...]:
    """``"8,64,128"`` -> (8, 64, 128), sorted; ValueError naming the bad part."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"--prefill-seq-lens {text!r} is empty; pass comma-separated lengths, e.g. 8,64,128")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(
            f"--prefill-seq-lens {text!r} has a non-integer; pass comma-separated lengths, e.g. 8,64,128"
        ) from None
    return tuple(sorted(values))


def parse_spans(text: str, kv_cache_max_len: int, fmt: str = "tflite", recipe: str = "fp32") -> tuple[int, ...]:
    """``--decode-spans``: ``"256,512"`` -> (256, 512); ``"auto"`` (the CLI default) -> ``default_spans``
    for a TFLite export, () for the other formats; ``"none"`` or ``""`` -> (). ValueError naming the bad part."""
    text = text.strip().lower()
    if text == "auto":
        return default_spans(kv_cache_max_len, recipe) if fmt == "tflite" else ()
    if text in ("", "none"):
        return ()
    try:
        return tuple(sorted(int(p) for p in text.split(",") if p.strip()))
    except ValueError:
        raise ValueError(
            f"--decode-spans {text!r} is not a list of integers; pass e.g. 256,512, auto or none"
        ) from None


# Recipes whose weights XNNPACK widens to float32 when it prepares each signature (explicit DEQUANTIZE
# ops), and whose ai-edge-quantizer fp16 cast copies every weight per signature at conversion: each extra
# signature would add a float copy of the weights to run (weight_only_int8) or conversion (fp16) memory,
# so ``auto`` gives them no spans (docs/tflite.md: 1.1B weight_only_int8 held 21 GB with 4 signatures).
NO_DEFAULT_SPANS = ("fp16", "weight_only_int8")


def default_spans(kv_cache_max_len: int, recipe: str = "fp32") -> tuple[int, ...]:
    """The spans ``auto`` gives: 256, 512, ... below the cache length (none for caches of <= 256 slots,
    none for the recipes in ``NO_DEFAULT_SPANS``).

    Each span adds signatures (conversion time, a few KB of graph each; the weights are shared) and
    saves reading ``S - W`` cache slots per step while the fill is below ``W`` (docs/performance.md).
    """
    if recipe in NO_DEFAULT_SPANS:
        return ()
    spans, span = [], 256
    while span < kv_cache_max_len:
        spans.append(span)
        span *= 2
    return tuple(spans)
