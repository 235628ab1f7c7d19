"""Scaling: power-law fits of a cost against model size, ``cost = a · params^b``, by least squares in
log-log space, with the exponent ``b`` and the fit's R² (of log cost). Points come from bench
documents (files or recorded runs): one series per (format, recipe), x = parameters of the
document's model config, y = decode ms/token, size MB, peak RSS or 1/prefill tok/s."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS: dict[str, str] = {
    "decode_ms_per_token": "decode ms/token",
    "size_mb": "size MB",
    "peak_rss_mb": "peak RSS MiB",
    "prefill_s_per_token": "prefill s/token",
}


@dataclass(frozen=True)
class PowerLaw:
    coefficient: float  # a
    exponent: float  # b
    r2: float
    points: int

    def __call__(self, x: float) -> float:
        return self.coefficient * x**self.exponent


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> PowerLaw:
    """Least squares of log y = log a + b log x over points with x, y > 0 (at least two distinct x)."""
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len({x for x, _ in pairs}) < 2:
        raise ValueError("a power-law fit needs at least two points with distinct, positive x")
    lx = np.log([x for x, _ in pairs])
    ly = np.log([y for _, y in pairs])
    b, log_a = np.polyfit(lx, ly, 1)
    residual = ly - (log_a + b * lx)
    total = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - float((residual**2).sum() / total) if total > 0 else 1.0
    return PowerLaw(math.exp(float(log_a)), float(b), r2, len(pairs))


def points_from_bench(documents: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[dict[str, float]]]:
    """(format, recipe) -> [{"params", metric: value, ...}] from bench documents' measured candidates."""
    from tinyexport.models.config import ModelConfig

    series: dict[tuple[str, str], list[dict[str, float]]] = {}
    for doc in documents:
        params = ModelConfig.from_dict(doc["model"]["config"]).num_parameters()
        for c in doc["candidates"]:
            if c.get("error"):
                continue
            prefill = c["prefill_tok_s"]["median"]
            series.setdefault((c["format"], c["recipe"]), []).append(
                {
                    "params": float(params),
                    "decode_ms_per_token": c["decode_ms_per_token"]["median"],
                    "size_mb": c["size_bytes"] / 1e6,
                    "peak_rss_mb": c["peak_rss_mb"],
                    "prefill_s_per_token": 1.0 / prefill if prefill else 0.0,
                }
            )
    return series


def fit_series(series: Mapping[tuple[str, str], list[dict[str, float]]]) -> list[dict[str, Any]]:
    """One row per (format, recipe, metric) with at least two model sizes."""
    rows = []
    for (fmt, recipe), points in sorted(series.items()):
        for metric in METRICS:
            try:
                law = fit_power_law([p["params"] for p in points], [p[metric] for p in points])
            except ValueError:
                continue
            rows.append(
                {
                    "format": fmt,
                    "recipe": recipe,
                    "metric": metric,
                    "exponent": law.exponent,
                    "coefficient": law.coefficient,
                    "r2": law.r2,
                    "points": law.points,
                }
            )
    return rows
