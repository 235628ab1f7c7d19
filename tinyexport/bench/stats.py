"""Median / p10 / p90 of a list of timings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not len(values):
            raise ValueError("no values to summarise")
        p10, median, p90 = np.percentile(np.asarray(values, dtype=np.float64), [10, 50, 90])
        return cls(float(median), float(p10), float(p90))

    def map(self, fn) -> Spread:
        """Apply a monotonic function; a decreasing one (e.g. 1/x) swaps p10 and p90."""
        lo, mid, hi = fn(self.p10), fn(self.median), fn(self.p90)
        return Spread(mid, min(lo, hi), max(lo, hi))

    def to_json(self) -> dict[str, float]:
        return asdict(self)
