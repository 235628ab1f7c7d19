"""What ``tinyexport eval`` runs: resolve the reference checkpoint and the candidates, refuse bad
input before any model loads, then score each candidate in turn (one model in memory at a time).

Candidates: ``hf`` (transformers, the reference; always first), our model per ``--attention``
(``standard`` by default when no artefact is given), then each artefact directory.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.errors import UserError
from tinyexport.progress import UnitProgress
from tinyexport.resolve import REFERENCE, Candidate, Inputs, resolve
from tinyexport.verify.choice import SCORINGS, ChoiceResult, encode_question, evaluate_choice, load_questions
from tinyexport.verify.quality import QualityRow, logits_path, reference_scores, score_text, summarize
from tinyexport.verify.reference_store import ReferenceKey, ReferenceStore, reference_writer
from tinyexport.verify.textfile import EvalText
from tinyexport.verify.windows import SlidingWindow


def prepare(
    artefact_paths: Sequence[Path],
    checkpoint: str | None,
    random_weights: bool,
    seed: int,
    attentions: Sequence[str],
    flash_block_size: int,
    transforms: Sequence[Any] = (),
) -> Inputs:
    """The resolved inputs of an evaluation: text needs a tokenizer; our model (standard) by default.
    ``transforms`` apply to our model; the reference stays the untransformed transformers model."""
    return resolve(
        artefact_paths,
        checkpoint=checkpoint,
        random_weights=random_weights,
        seed=seed,
        attentions=attentions,
        default_attentions=("standard",),
        flash_block_size=flash_block_size,
        need_tokenizer=True,
        transforms=transforms,
    )


def _open(candidate: Candidate, setup: Inputs, max_len: int) -> tuple[Any, float]:
    start = time.perf_counter()
    runner = candidate.open(setup.checkpoint, max_len=max_len, all_logits=True)
    return runner, time.perf_counter() - start


# ---------------------------------------------------------------- perplexity


@dataclass(frozen=True)
class PerplexityReport:
    text: EvalText
    text_source: str
    tokens: int
    protocol: SlidingWindow
    rows: tuple[QualityRow, ...]
    reference: ReferenceStore

    def to_json(self) -> dict[str, Any]:
        return {
            "text": {
                "path": str(self.text.path),
                "sha256": self.text.sha256,
                "tokens": self.tokens,
                "source": self.text_source,
            },
            "protocol": {
                "window": self.protocol.window,
                "stride": self.protocol.stride,
                "scored_tokens": self.rows[0].scored_tokens if self.rows else 0,
                "reference_precision": self.reference.precision.name,
                "reference_store": str(self.reference.directory),
            },
            "candidates": [r.to_json() for r in self.rows],
        }


def encode_text(setup: Inputs, text: EvalText, protocol: SlidingWindow, max_tokens: int | None) -> np.ndarray:
    ids = setup.tokenizer.encode(text.text)
    total = ids.size
    if max_tokens is not None:
        ids = ids[:max_tokens]
    if ids.size < protocol.window:
        cut = f" (--max-tokens {max_tokens})" if ids.size < total else ""
        raise UserError(
            f"{text.path.name} has {total} tokens{cut}, fewer than one --window of {protocol.window}; "
            "pass a longer text or a smaller --window"
        )
    return ids


def run_perplexity(
    setup: Inputs,
    text: EvalText,
    text_source: str,
    protocol: SlidingWindow,
    max_tokens: int | None,
    precision: str,
    cache: Path,
) -> PerplexityReport:
    setup.check_capacity(protocol.window, f"--window {protocol.window}", "pass --window {limit} or less")
    ids = encode_text(setup, text, protocol, max_tokens)
    key = ReferenceKey(
        setup.checkpoint.fingerprint(),
        setup.tokenizer.vocab_fingerprint(),
        text.sha256,
        protocol.window,
        protocol.stride,
        int(ids.size),
        precision,
        REFERENCE_PASS.attention,
    )
    rows_total = protocol.scored_tokens(ids.size)
    rows: list[QualityRow] = []
    with UnitProgress("tok") as bars:
        store = ReferenceStore.open(key, cache)
        cached = store is not None
        if store is None:
            store = _build_reference(setup, ids, protocol, key, cache, bars.task("hf (reference)", rows_total))
        ref = reference_scores(store)
        ref_row = summarize(
            REFERENCE.label,
            ref,
            fmt="hf",
            recipe="fp32",
            reference_ppl=math.exp(float(ref.nll.mean())),
            load_seconds=float(store.meta.get("load_seconds", 0.0)),
            path=str(store.meta.get("logits_path", "prefill")),
            cached=cached,
        )
        rows.append(ref_row)
        for spec in setup.candidates:
            runner, load_s = _open(spec, setup, protocol.window)
            fmt, recipe = spec.format, spec.recipe
            scores = score_text(
                runner,
                ids,
                protocol,
                reference=store,
                progress=bars.task(f"{spec.label} ({logits_path(runner)})", rows_total),
            )
            rows.append(
                summarize(
                    spec.label,
                    scores,
                    fmt=fmt,
                    recipe=recipe,
                    reference_ppl=ref_row.perplexity,
                    load_seconds=load_s,
                    path=logits_path(runner),
                )
            )
            del runner
            gc.collect()
    return PerplexityReport(text, text_source, int(ids.size), protocol, tuple(rows), store)


# The perplexity reference pass: transformers fp32 with torch's fused attention. Eager attention
# materialises every (window x window) score matrix: 2.3x slower per 1024-token window on SmolLM2
# (docs/eval.md); the logits agree to float rounding, far below the store's 16-bit resolution.
REFERENCE_PASS = Candidate("hf", "sdpa")


def _build_reference(
    setup: Inputs, ids: np.ndarray, protocol: SlidingWindow, key: ReferenceKey, cache: Path, progress: Any
) -> ReferenceStore:
    runner, load_s = _open(REFERENCE_PASS, setup, protocol.window)
    rows = protocol.scored_tokens(ids.size)
    with reference_writer(key, cache, rows, setup.checkpoint.config.vocab_size) as writer:
        scores = score_text(runner, ids, protocol, writer=writer, progress=progress)
        writer.finish(
            {
                "reference": f"transformers LlamaForCausalLM ({key.attention}, fp32) of {setup.checkpoint.name}",
                "seconds": round(scores.seconds, 3),
                "load_seconds": round(load_s, 3),
                "logits_path": logits_path(runner),
                "perplexity": math.exp(float(scores.nll.mean())),
            }
        )
    del runner
    gc.collect()
    store = ReferenceStore.open(key, cache)
    if store is None:
        raise RuntimeError(f"reference store {key.directory(cache)} was not written")
    return store


# ---------------------------------------------------------------- multiple choice


@dataclass(frozen=True)
class ChoiceReport:
    location: Path
    scoring: str
    questions: int
    results: tuple[ChoiceResult, ...]

    def to_json(self) -> dict[str, Any]:
        from tinyexport.verify.choice import RANDOM_BASELINE

        return {
            "directory": str(self.location),
            "scoring": self.scoring,
            "questions": self.questions,
            "random_baseline": RANDOM_BASELINE,
            "candidates": [r.to_json() for r in self.results],
        }


def run_choice(setup: Inputs, location: Path, scoring: str, limit: int | None) -> ChoiceReport:
    questions = load_questions(location, limit)
    items = [encode_question(q, SCORINGS[scoring], setup.tokenizer) for q in questions]
    longest = max(items, key=lambda it: it.longest)
    setup.check_capacity(
        longest.longest,
        f"question {longest.question.file}:{longest.question.line}",
        "shorten or drop that question, or export with a larger --kv-cache-max-len",
    )
    results = []
    with UnitProgress("q") as bars:
        for spec in (REFERENCE, *setup.candidates):
            runner, _ = _open(spec, setup, longest.longest)
            fmt, recipe = spec.format, spec.recipe
            result = evaluate_choice(
                runner,
                items,
                name=spec.label,
                fmt=fmt,
                recipe=recipe,
                progress=bars.task(f"{spec.label} ({logits_path(runner)})", len(items)),
            )
            results.append(result)
            del runner
            gc.collect()
    return ChoiceReport(Path(location), scoring, len(items), tuple(results))
