"""Parity of a candidate runner against a reference runner on the same tokens.

The reference runs once (``reference_trace``): prompt logits and a greedy continuation. Each
candidate is then run *teacher-forced* on the reference's tokens, so every compared position has the
same context in both: the prompt positions its prefill returns, then one decode step per generated
token. Metrics over those positions: max/mean |Δlogit|, top-1 agreement, mean KL(ref‖cand). Greedy
agreement is the number of leading generated tokens the candidate would pick itself; only if it
diverges is the candidate run free to get its own text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tinyexport.formats.recipes import Tolerance
from tinyexport.runners.base import Runner
from tinyexport.runners.decoding import collect, decode_steps, greedy_generate, teacher_forced

from .metrics import kl_divergence, top1_matches


@dataclass(frozen=True)
class ReferenceTrace:
    name: str
    prompt: np.ndarray  # (T,)
    prompt_logits: np.ndarray  # (T, V)
    tokens: list[int]  # greedy continuation
    step_logits: np.ndarray  # (N, V): row i chose tokens[i]; row 0 is the prompt's last position


def reference_trace(runner: Runner, prompt: np.ndarray, max_new_tokens: int) -> ReferenceTrace:
    if runner.logits_positions != "all":
        raise ValueError(f"reference {runner.name} must return logits for every prompt position")
    prefill: list[np.ndarray] = []
    run = collect(
        decode_steps(runner, prompt, max_new_tokens, on_prefill=lambda logits, _s: prefill.append(logits)),
        runner.config.vocab_size,
    )
    return ReferenceTrace(runner.name, np.asarray(prompt), prefill[0], run.tokens, run.step_logits)


@dataclass(frozen=True)
class ParityReport:
    name: str
    format: str
    recipe: str
    max_abs: float
    mean_abs: float
    prefill_max_abs: float
    decode_max_abs: float
    top1_agreement: float
    kl: float  # mean over compared positions
    kl_max: float
    positions: int  # compared positions (prompt rows returned by prefill + decode steps)
    greedy_match: int
    greedy_total: int
    first_divergence: int | None
    candidate_tokens: list[int]
    passed: bool
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def compare(
    reference: ReferenceTrace, candidate: Runner, tolerance: Tolerance, *, fmt: str, recipe: str
) -> ParityReport:
    """Run ``candidate`` teacher-forced on ``reference``'s tokens and measure it against the tolerance."""
    prefill: list[np.ndarray] = []
    forced = teacher_forced(
        candidate, reference.prompt, reference.tokens, on_prefill=lambda logits, _s: prefill.append(logits)
    )
    prefill_logits = prefill[0]
    rows = prefill_logits.shape[0]
    choices = [int(c) for c in forced.step_logits.argmax(-1)]
    # compared positions: the prompt rows the prefill returned, then every decode step (steps 1..N-1)
    ref_rows = np.concatenate([reference.prompt_logits[-rows:], reference.step_logits[1:]])
    cand_rows = np.concatenate([prefill_logits, forced.step_logits[1:]])
    diff = np.abs(ref_rows.astype(np.float64) - cand_rows.astype(np.float64))
    kl = kl_divergence(ref_rows, cand_rows)
    top1 = float(np.mean(top1_matches(ref_rows, cand_rows)))

    mismatch = [i for i, (a, b) in enumerate(zip(choices, reference.tokens)) if a != b]
    first_div = mismatch[0] if mismatch else None
    match = len(reference.tokens) if first_div is None else first_div
    own_tokens = (
        list(reference.tokens)
        if first_div is None
        else greedy_generate(candidate, reference.prompt, len(reference.tokens)).tokens
    )
    total = len(reference.tokens)
    greedy_fraction = match / total if total else 1.0

    max_abs = float(diff.max())
    failures = tolerance.violations(max_abs, top1, float(kl.mean()), greedy_fraction)
    return ParityReport(
        name=candidate.name,
        format=fmt,
        recipe=recipe,
        max_abs=max_abs,
        mean_abs=float(diff.mean()),
        prefill_max_abs=float(diff[:rows].max()),
        decode_max_abs=float(diff[rows:].max()) if diff.shape[0] > rows else 0.0,
        top1_agreement=top1,
        kl=float(kl.mean()),
        kl_max=float(kl.max()),
        positions=int(diff.shape[0]),
        greedy_match=match,
        greedy_total=total,
        first_divergence=first_div,
        candidate_tokens=own_tokens,
        passed=not failures,
        failures=failures,
    )


def check_room(inputs: Any, prompt_len: int, max_new_tokens: int) -> None:
    """The prompt and the greedy continuation must fit the model and every artefact's cache."""
    inputs.check_capacity(
        prompt_len + max_new_tokens,
        f"prompt ({prompt_len} tokens) + --max-new-tokens {max_new_tokens}",
        "shorten the prompt or lower --max-new-tokens",
    )


def run_parity(
    inputs: Any,
    prompt: np.ndarray,
    max_new_tokens: int,
    *,
    open_reference: Callable[[Any, int], Runner] | None = None,
) -> tuple[ReferenceTrace, list[ParityReport]]:
    """The transformers reference once, then every candidate of ``inputs`` (one in memory at a time).

    ``open_reference(checkpoint, max_len)`` replaces the plain transformers reference (``verify --adapter``:
    base + a LoRA adapter applied unmerged)."""
    from tinyexport.formats.recipes import tolerance_for

    needed = int(prompt.size) + max_new_tokens
    if open_reference is not None:
        reference = open_reference(inputs.checkpoint, needed)
    else:
        reference = inputs.reference.open(inputs.checkpoint, max_len=needed)
    trace = reference_trace(reference, prompt, max_new_tokens)
    del reference
    reports = []
    for candidate in inputs.candidates:
        runner = candidate.open(inputs.checkpoint, max_len=needed, all_logits=True)
        tolerance = tolerance_for(candidate.format, candidate.recipe)
        reports.append(compare(trace, runner, tolerance, fmt=candidate.format, recipe=candidate.recipe))
        del runner
    return trace, reports
