"""The format-independent part of an export: atomic directory, tokenizer files, size check, manifest.

A format's converter (named in ``formats.FORMATS``) has the contract

    convert(checkpoint, export: ExportConfig, out_dir: Path) -> dict

It writes its model file(s) into ``out_dir`` (a temp dir) and returns format-specific manifest fields
(at least ``"signatures"``; optionally ``"weight_bytes"``, the constant data it stored, which the size
check then uses instead of the file sizes -- a tiny model's file is mostly graph, not weights).
Everything else about an artefact is done here, once.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tinyexport.artefact import copy_tokenizer_files, write_manifest
from tinyexport.atomic import atomic_directory
from tinyexport.errors import CheckError
from tinyexport.formats.recipes import RECIPES
from tinyexport.formats.registry import FORMATS, load_object
from tinyexport.resources import peak_rss_mb

from .export_config import ExportConfig


class QuantizationCheckError(CheckError):
    """The converter produced a file too large for its recipe: weights were not really quantized."""


def check_quantized_size(model_bytes: int, num_parameters: int, recipe: str, fmt: str | None = None) -> float:
    """Ratio of the model's bytes (file, or stored weights) to fp32 parameter bytes; raise if above the bound."""
    ratio = model_bytes / (4 * num_parameters)
    bound = RECIPES[recipe].size_bound(fmt)
    if bound is not None and ratio > bound:
        raise QuantizationCheckError(
            f"recipe {recipe}: the model stores {model_bytes / 1e6:.1f} MB = {ratio:.2f} x the fp32 weights "
            f"(bound {bound}); the weights were not quantized as the recipe promises"
        )
    return ratio


def rope_table_bytes(config: Any, export: ExportConfig) -> int:
    """fp32 cos/sin tables the graph carries besides the parameters (2 x cache length x head_dim).

    Not weights, and never quantized: left out of the size check, where on a tiny model they would
    otherwise look like unquantized weights (they are 0.4% of SmolLM2's int8 file)."""
    return 2 * export.kv_cache_max_len * config.head_dim * 4


def export_artefact(
    checkpoint: Any,
    export: ExportConfig,
    target: Path,
    *,
    replace: bool = False,
    source_ref: Mapping[str, Any],
    predicted_peak_rss_mb: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Convert ``checkpoint`` into the artefact directory ``target``; return the manifest written.
    ``predicted_peak_rss_mb`` (``formats.budget``) is recorded next to the measured peak; ``progress``
    is told each stage as it starts (the converter's, if it takes ``progress=``, then this function's)."""
    fmt = FORMATS[export.format]
    transforms = tuple(getattr(checkpoint, "transforms", ()))
    if transforms:
        from tinyexport.models.transforms import check_carried, transforms_json

        check_carried(transforms, export.format, fmt.transforms)
    convert = load_object(fmt.converter)
    start = time.perf_counter()
    with atomic_directory(Path(target), replace=replace) as tmp:
        takes_progress = "progress" in inspect.signature(convert).parameters
        fields = dict(
            convert(checkpoint, export, tmp, progress=progress) if takes_progress else convert(checkpoint, export, tmp)
        )
        seconds = time.perf_counter() - start
        model_bytes = sum(p.stat().st_size for p in tmp.iterdir() if p.is_file())
        stored = int(fields.get("weight_bytes", model_bytes)) - rope_table_bytes(checkpoint.config, export)
        params = int(fields.pop("stored_parameters", checkpoint.config.num_parameters()))  # untied copies count
        ratio = check_quantized_size(max(stored, 0), params, export.recipe, export.format)
        copy_tokenizer_files(checkpoint.tokenizer_dir, tmp)
        progress("hashing the files into manifest.json")
        manifest = write_manifest(
            tmp,
            {
                "format": export.format,
                "recipe": export.recipe,
                "model_file": fmt.model_file,
                "model_config": checkpoint.config.to_dict(),
                "export": export.to_json(),
                "kv_cache_max_len": export.kv_cache_max_len,
                "prefill_seq_lens": list(export.prefill_seq_lens),
                "prefill_logits": export.prefill_logits,
                "source": {
                    **dict(source_ref),
                    "name": checkpoint.name,
                    "directory": str(checkpoint.directory),
                    "fingerprint": checkpoint.fingerprint(),
                    **({"model_config": checkpoint.directory_config.to_dict()} if transforms else {}),
                },
                "conversion": {
                    "seconds": round(seconds, 2),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                    "predicted_peak_rss_mb": None if predicted_peak_rss_mb is None else round(predicted_peak_rss_mb, 1),
                    "size_ratio_vs_fp32": round(ratio, 4),
                },
                **({"transforms": transforms_json(checkpoint.directory_config, transforms)} if transforms else {}),
                **fields,
            },
        )
    return manifest
