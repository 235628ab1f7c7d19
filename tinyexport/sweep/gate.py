"""The quality gate and the ranking: reject cells over the gate (with the reason), then the Pareto
front of size / decode speed / quality among the rest, and one recommendation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# (metric, better) — the three axes of the Pareto front
OBJECTIVES: tuple[tuple[str, str], ...] = (("size_mb", "min"), ("decode_tok_s", "max"), ("kl_mean", "min"))


@dataclass(frozen=True)
class Gate:
    max_kl: float | None = None
    max_dppl_pct: float | None = None

    def reasons(self, metrics: Mapping[str, Any]) -> list[str]:
        """Why a measured cell fails the gate (empty: it passes)."""
        out = []
        if self.max_kl is not None:
            kl = metrics.get("kl_mean")
            if kl is None:
                out.append("no KL measured")
            elif kl > self.max_kl:
                out.append(f"KL {kl:.3g} > {self.max_kl:g}")
        if self.max_dppl_pct is not None:
            dppl = metrics.get("dppl_pct")
            if dppl is None:
                out.append("no perplexity measured")
            elif dppl > self.max_dppl_pct:
                out.append(f"Δppl {dppl:+.2f}% > {self.max_dppl_pct:g}%")
        return out


def dominates(a: Mapping[str, float], b: Mapping[str, float], objectives=OBJECTIVES) -> bool:
    """``a`` is at least as good as ``b`` on every objective and strictly better on one."""
    better = False
    for key, sense in objectives:
        x, y = (a[key], b[key]) if sense == "min" else (-a[key], -b[key])
        if x > y:
            return False
        better = better or x < y
    return better


def pareto_front(points: Sequence[Mapping[str, float]], objectives=OBJECTIVES) -> list[int]:
    """Indices of the points no other point dominates (input order)."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p, objectives) for q in points if q is not p)]


@dataclass(frozen=True)
class Ranked:
    name: str
    status: str  # "pareto", "dominated", "rejected", "failed"
    reason: str
    metrics: Mapping[str, Any]


def rank(cells: Sequence[tuple[str, Mapping[str, Any] | None, str]], gate: Gate) -> tuple[list[Ranked], Ranked | None]:
    """``cells``: (name, metrics or None, failure text). Returns the ranked rows and the recommendation:
    the smallest cell on the Pareto front of the cells that pass the gate (ties: faster decode)."""
    failed = [Ranked(n, "failed", why or "failed", m or {}) for n, m, why in cells if m is None]
    measured = [(n, m) for n, m, _ in cells if m is not None]
    rejected, passing = [], []
    for name, m in measured:
        why = gate.reasons(m)
        missing = [k for k, _ in OBJECTIVES if m.get(k) is None]
        if why:
            rejected.append(Ranked(name, "rejected", "; ".join(why), m))
        elif missing:
            rejected.append(Ranked(name, "rejected", f"not measured: {', '.join(missing)}", m))
        else:
            passing.append((name, m))
    front = set(pareto_front([m for _, m in passing]))
    rows = [
        Ranked(n, "pareto" if i in front else "dominated", "" if i in front else "dominated", m)
        for i, (n, m) in enumerate(passing)
    ]
    rows.sort(key=lambda r: (r.status != "pareto", r.metrics["size_mb"], -r.metrics["decode_tok_s"]))
    best = next((r for r in rows if r.status == "pareto"), None)
    return rows + rejected + failed, best
