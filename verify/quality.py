"""Sliding-window perplexity of any Runner on a text, and its distance from the reference.

``score_text`` walks the windows of ``SlidingWindow`` (see ``windows.py``), asks the runner for the
logits of each window's new tokens (``scoring.continuation_logits``: one prefill for runners that
return every position, context prefill + one decode per token for last-position-only runners), and
records per scored token: NLL of the text's token; with a reference store, KL(ref ‖ candidate) over
the whole vocabulary and whether both put the same token first. The reference itself is scored once
through ``ReferenceWriter``, which stores its distributions (``reference_store.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyexport.runners.base import Runner

from .metrics import ROW_CHUNK, kl_from_logprobs, log_softmax, nll_of
from .reference_store import ReferenceStore, ReferenceWriter
from .scoring import continuation_logits
from .windows import SlidingWindow

Progress = Callable[[int], None]


@dataclass(frozen=True)
class TokenScores:
    nll: np.ndarray  # (scored,) float64
    kl: np.ndarray | None  # (scored,) KL(ref ‖ candidate) in nats, when compared with a reference
    top1: np.ndarray | None  # (scored,) bool: candidate's argmax == reference's argmax
    seconds: float


def logits_path(runner: Runner) -> str:
    """How ``score_text`` gets every position's logits from this runner."""
    return "prefill" if runner.logits_positions == "all" else "decode"


def score_text(
    runner: Runner,
    ids: np.ndarray,
    protocol: SlidingWindow,
    *,
    reference: ReferenceStore | None = None,
    writer: ReferenceWriter | None = None,
    progress: Progress | None = None,
) -> TokenScores:
    """Score every window of ``ids``; compare with ``reference`` or fill ``writer`` (not both)."""
    if reference is not None and writer is not None:
        raise ValueError("score against a reference or write one, not both")
    spans = protocol.spans(len(ids))
    rows = sum(s.n_targets for s in spans)
    if reference is not None and reference.top1.shape[0] != rows:
        raise ValueError(f"reference store has {reference.top1.shape[0]} rows, the protocol scores {rows}")
    nll = np.empty(rows, dtype=np.float64)
    kl = np.empty(rows, dtype=np.float64) if reference is not None else None
    top1 = np.empty(rows, dtype=bool) if reference is not None else None
    start_time = time.perf_counter()
    offset = 0
    for span in spans:
        targets = ids[span.first_target : span.end]
        logits = continuation_logits(runner, ids[span.begin : span.first_target], targets)
        if writer is not None:
            nll[offset : offset + len(targets)] = writer.write(logits, targets)
        else:
            for start in range(0, len(targets), ROW_CHUNK):
                stop = min(start + ROW_CHUNK, len(targets))
                lq = log_softmax(logits[start:stop])
                nll[offset + start : offset + stop] = nll_of(lq, targets[start:stop])
                if reference is not None:
                    lp = reference.reference_logprobs(offset + start, offset + stop)
                    kl[offset + start : offset + stop] = kl_from_logprobs(lp, lq)
                    top1[offset + start : offset + stop] = (
                        np.argmax(logits[start:stop], axis=-1) == reference.top1[offset + start : offset + stop]
                    )
        offset += len(targets)
        if progress is not None:
            progress(len(targets))
    return TokenScores(nll, kl, top1, time.perf_counter() - start_time)


@dataclass(frozen=True)
class QualityRow:
    """One candidate's line in the perplexity report (JSON keys fixed by the report schema)."""

    name: str
    format: str
    recipe: str
    scored_tokens: int
    perplexity: float
    delta_ppl: float | None  # perplexity - reference perplexity
    kl_mean: float | None
    kl_p99: float | None
    top1_agreement: float | None
    seconds: float  # scoring wall time (model loading excluded)
    load_seconds: float
    logits_path: str  # "prefill" (all positions at once) or "decode" (token by token)
    cached: bool = False  # the reference row, read from its store rather than re-run

    @property
    def tokens_per_second(self) -> float:
        return self.scored_tokens / self.seconds if self.seconds > 0 else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "perplexity": self.perplexity,
            "delta_ppl": self.delta_ppl,
            "kl_mean": self.kl_mean,
            "kl_p99": self.kl_p99,
            "top1_agreement": self.top1_agreement,
            "seconds": round(self.seconds, 3),
            "format": self.format,
            "recipe": self.recipe,
            "scored_tokens": self.scored_tokens,
            "nll_mean": math.log(self.perplexity),
            "load_seconds": round(self.load_seconds, 3),
            "tokens_per_second": self.tokens_per_second,
            "logits_path": self.logits_path,
            "cached": self.cached,
        }


def summarize(
    name: str,
    scores: TokenScores,
    *,
    fmt: str,
    recipe: str,
    reference_ppl: float | None,
    load_seconds: float,
    path: str,
    cached: bool = False,
) -> QualityRow:
    ppl = float(np.exp(scores.nll.mean()))
    kl = scores.kl
    return QualityRow(
        name=name,
        format=fmt,
        recipe=recipe,
        scored_tokens=int(scores.nll.size),
        perplexity=ppl,
        delta_ppl=None if reference_ppl is None else ppl - reference_ppl,
        kl_mean=None if kl is None else float(kl.mean()),
        kl_p99=None if kl is None else float(np.percentile(kl, 99)),
        top1_agreement=None if scores.top1 is None else float(scores.top1.mean()),
        seconds=scores.seconds,
        load_seconds=load_seconds,
        logits_path=path,
        cached=cached,
    )


def reference_scores(store: ReferenceStore) -> TokenScores:
    """The reference compared with its own stored form: KL = the store's resolution, top-1 = 1."""
    return TokenScores(
        np.asarray(store.nll),
        np.asarray(store.resolution),
        np.ones(store.nll.shape[0], dtype=bool),
        float(store.meta.get("seconds", 0.0)),
    )
