"""The scaling study (``tinyexport scaling --preset seed``): a ladder of model sizes, each converted to
every (format, recipe) and benchmarked, with the conversion's time and peak RSS from its manifest,
FLOPs per decoded token (``tinyexport.flops``), the bench's roofline bound beside the measured speed,
and power-law fits of each cost against parameters. Every stage is the tinyexport command itself in
its own process (recorded in the run store like any run); the result is one JSON document
(``"kind": "tinyexport-scaling"``) that ``tinyexport report`` renders."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tinyexport.models.config import ModelConfig

from .executor import StageFailure, run_stage
from .scaling import fit_power_law

# The research seed's four architectures: (hidden, layers, heads, MLP width); heads = KV heads (MHA).
SEED_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "seed-small": (256, 4, 4, 1024),
    "seed-medium": (384, 6, 8, 1536),
    "seed-large": (512, 8, 8, 2048),
    "seed-xlarge": (768, 12, 12, 3072),
}

# Costs fitted against parameters: row key -> label.
FIT_METRICS: dict[str, str] = {
    "decode_ms_per_token": "decode ms/token",
    "prefill_ms_per_token": "prefill ms/token",
    "size_mb": "file MB",
    "convert_s": "conversion s",
    "convert_peak_rss_mb": "conversion peak RSS MiB",
    "bench_peak_rss_mb": "bench peak RSS MiB",
}


def seed_config(base: ModelConfig, hidden: int, layers: int, heads: int, ffn: int) -> ModelConfig:
    """``base`` (vocabulary, RoPE, norms, tied embeddings) with a seed architecture's shape."""
    return replace(
        base,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=hidden // heads,
        intermediate_size=ffn,
        num_heads_per_layer=None,
        num_kv_heads_per_layer=None,
    )


@dataclass(frozen=True)
class StudyModel:
    name: str
    checkpoint_args: tuple[str, ...]  # --checkpoint SPEC [--random-weights --seed N]
    config: ModelConfig
    weights: str  # what the weights are ("random, seed 0", "trained")


@dataclass(frozen=True)
class StudySettings:
    formats: tuple[str, ...]
    recipes: tuple[str, ...]
    cache_length: int = 256
    prompt_len: int = 64
    new_tokens: int = 32
    repeats: int = 3


def _finished(art: Path, fmt: str, recipe: str, cache_length: int) -> bool:
    try:
        m = json.loads((art / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (m.get("format"), m.get("recipe"), m.get("kv_cache_max_len")) == (fmt, recipe, cache_length)


def _bench_done(path: Path, arts: Sequence[Path], settings: StudySettings) -> bool:
    """An earlier run's bench document of exactly these exports, with these settings (kept: resume)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    s = doc.get("settings", {})
    same = (s.get("prompt_len"), s.get("new_tokens"), s.get("repeats")) == (
        settings.prompt_len,
        settings.new_tokens,
        settings.repeats,
    )
    names = {Path(c.get("path") or c["name"]).name for c in doc.get("candidates", []) if not c.get("error")}
    return same and names == {a.name for a in arts}


def measure_model(
    model: StudyModel, settings: StudySettings, out_dir: Path, artefact_dir: Path, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Convert ``model`` to every (format, recipe) (kept when already complete), bench them all in one
    `bench` run, and return one row per export (``error`` set where a stage failed)."""
    from tinyexport.flops import decode_flops_per_token
    from tinyexport.formats.recipes import RECIPES

    rows: dict[str, dict[str, Any]] = {}
    arts: list[Path] = []
    lens = ",".join(str(n) for n in (8, 64, 128) if n <= settings.cache_length) or str(settings.cache_length)
    context = settings.prompt_len + settings.new_tokens // 2
    for fmt in settings.formats:
        for recipe in settings.recipes:
            if fmt not in RECIPES[recipe].formats:
                continue
            name = f"{model.name}_{fmt}_{recipe}"
            art = Path(artefact_dir) / name
            row: dict[str, Any] = {
                "model": model.name,
                "format": fmt,
                "recipe": recipe,
                "params": model.config.num_parameters(),
                "decode_flops_per_token": decode_flops_per_token(model.config, context),
                "artefact": name,
                "error": None,
            }
            rows[name] = row
            start = time.perf_counter()
            try:
                if not _finished(art, fmt, recipe, settings.cache_length):
                    say(f"  convert {name}")
                    run_stage(
                        "convert",
                        ["convert", "--format", fmt, "--quantize", recipe, "-o", str(art), "--force"]
                        + list(model.checkpoint_args)
                        + ["--kv-cache-max-len", str(settings.cache_length), "--prefill-seq-lens", lens],
                    )
            except StageFailure as err:
                row["error"] = f"convert: {err.message}"
                continue
            conversion = json.loads((art / "manifest.json").read_text()).get("conversion", {})
            row["convert_s"] = conversion.get("seconds", round(time.perf_counter() - start, 1))
            row["convert_peak_rss_mb"] = conversion.get("peak_rss_mb")
            arts.append(art)
    if not arts:
        return list(rows.values())
    bench_json = out_dir / "bench" / f"{model.name}.json"
    bench_json.parent.mkdir(parents=True, exist_ok=True)
    try:
        if not _bench_done(bench_json, arts, settings):
            say(f"  bench {len(arts)} export(s) of {model.name}")
            run_stage(
                "bench",
                [
                    "bench",
                    *map(str, arts),
                    "--prompt-len",
                    str(settings.prompt_len),
                    "--new-tokens",
                    str(settings.new_tokens),
                ]
                + ["--repeats", str(settings.repeats), "--warmup", "1", "--no-log", "--json", str(bench_json)],
            )
    except StageFailure as err:
        for art in arts:
            rows[art.name]["error"] = f"bench: {err.message}"
        return list(rows.values())
    doc = json.loads(bench_json.read_text())
    for cand in doc["candidates"]:
        row = rows.get(Path(cand.get("path") or cand["name"]).name) or rows.get(cand["name"])
        if row is None:
            continue
        if cand.get("error"):
            row["error"] = f"bench: {cand['error']}"
            continue
        roof = cand["roofline"]
        row.update(
            {
                "size_mb": cand["size_bytes"] / 1e6,
                "decode_ms_per_token": cand["decode_ms_per_token"]["median"],
                "decode_tok_s": cand["decode_tok_s"]["median"],
                "prefill_tok_s": cand["prefill_tok_s"]["median"],
                "prefill_ms_per_token": 1000.0 / cand["prefill_tok_s"]["median"],
                "bench_peak_rss_mb": cand["peak_rss_mb"],
                "roofline_decode_ms_per_token": 1000.0 / roof["decode"]["bound_tok_s"],
                "roofline_decode_fraction": roof["decode"]["fraction"],
                "roofline_prefill_tok_s": roof["prefill"]["bound_tok_s"],
                "roofline_prefill_fraction": roof["prefill"]["fraction"],
                "bytes_per_token": roof["decode"]["bytes_per_token"],
            }
        )
    return list(rows.values())


def fit_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (format, recipe, metric) over its model sizes: ``cost = a · params^b``, exponent and R²."""
    fits = []
    series = sorted({(r["format"], r["recipe"]) for r in rows})
    for fmt, recipe in series:
        mine = [r for r in rows if (r["format"], r["recipe"]) == (fmt, recipe) and not r.get("error")]
        for metric, label in FIT_METRICS.items():
            points = [(r["params"], r[metric]) for r in mine if r.get(metric)]
            try:
                law = fit_power_law([p for p, _ in points], [v for _, v in points])
            except ValueError:
                continue
            fits.append(
                {
                    "format": fmt,
                    "recipe": recipe,
                    "metric": metric,
                    "label": label,
                    "exponent": law.exponent,
                    "coefficient": law.coefficient,
                    "r2": law.r2,
                    "points": law.points,
                }
            )
    return fits


def run_study(
    models: Sequence[StudyModel],
    settings: StudySettings,
    out_dir: Path,
    artefact_dir: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Measure every model and fit; the study document (also for ``tinyexport report``)."""
    rows: list[dict[str, Any]] = []
    for model in models:
        say(f"scaling: {model.name} ({model.config.num_parameters() / 1e6:.1f} M parameters, {model.weights})")
        rows += measure_model(model, settings, Path(out_dir), artefact_dir, say)
    machine = None
    bench_files = sorted((Path(out_dir) / "bench").glob("*.json"))
    if bench_files:
        doc = json.loads(bench_files[0].read_text())
        machine = {"machine": doc.get("machine"), "probes": doc.get("probes")}
    return {
        "kind": "tinyexport-scaling",
        "settings": {
            "formats": list(settings.formats),
            "recipes": list(settings.recipes),
            "cache_length": settings.cache_length,
            "prompt_len": settings.prompt_len,
            "new_tokens": settings.new_tokens,
            "repeats": settings.repeats,
        },
        "models": [
            {
                "name": m.name,
                "weights": m.weights,
                "params": m.config.num_parameters(),
                "hidden": m.config.hidden_size,
                "layers": m.config.num_layers,
                "heads": m.config.num_heads,
                "kv_heads": m.config.num_kv_heads,
                "ffn": m.config.intermediate_size,
                "vocab": m.config.vocab_size,
            }
            for m in models
        ],
        "rows": rows,
        "fits": fit_rows(rows),
        **(machine or {}),
    }
