"""What "passes" means for a candidate compared with the reference. The numbers live in the recipe
registry (``tinyexport.converters.recipes``), one ``Tolerance`` per (format, recipe)."""

from __future__ import annotations

from dataclasses import dataclass


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
