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

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["prefill_seq_lens"] = list(self.prefill_seq_lens)
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
