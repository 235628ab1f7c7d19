"""Exact speculative decoding over any two Runners with one vocabulary. No torch import here.

A *draft* runner proposes ``k`` tokens one at a time (``decode_steps``); the *target* scores the last
accepted token and all ``k`` proposals in **one** prefill call, which must return every position's
logits; both caches then roll back to the accepted length (``Runner.rollback``).

Invariant between rounds: the target's cache holds the context minus its last token ``x`` (``x`` is
the one token it still has to read); the draft's holds the same or one token less (after a round
that accepted every proposal it has not read the last proposal either), and ``pending`` lists what it
still has to read. A round:

1. the draft reads ``pending`` and proposes ``d_1..d_k`` (it reads ``d_1..d_{k-1}``);
2. the target prefills ``[x, d_1..d_k]`` and returns rows ``p_1..p_{k+1}`` (``p_i`` scores ``d_i``);
3. greedy: accept ``d_i`` while it is ``argmax p_i``; the first mismatch is replaced by ``argmax p_i``,
   and if all ``k`` are accepted ``argmax p_{k+1}`` is a bonus token. Sampling: accept ``d_i`` with
   probability ``min(1, p_i(d_i) / q_i(d_i))``; on the first rejection draw from the normalised
   residual ``max(0, p_i - q_i)``; if all are accepted draw the bonus from ``p_{k+1}`` (Leviathan et
   al. 2023, Chen et al. 2023): every emitted token is distributed exactly as the target's own.
4. target rolls back to ``context + accepted``; the draft too (or keeps its proposals when all were
   accepted).

Greedy output is each position's argmax of the target's *verify-pass* logits (a multi-token prefill).
The target's plain greedy decoding takes each argmax from a one-token decode call instead; the two are
the same model on the same tokens, but a different kernel shape can round differently, so at an exact
near-tie (top-2 logits within float rounding) they could pick different tokens. ``SpeculativeStats``
records the smallest top-2 margin seen, and ``docs/speculative.md`` measures how often plain and
speculative output differ.

The first new token is chosen from the target's prompt prefill exactly as ``decode_steps`` does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from tinyexport.errors import UserError
from tinyexport.generate import GREEDY, SamplingConfig
from tinyexport.runners.base import Runner, check_capacity
from tinyexport.runners.decoding import decode_steps


class SpeculativeError(UserError, ValueError):
    """The draft/target pair or ``k`` cannot run speculative decoding (message says why and the fix)."""


@dataclass
class SpeculativeStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    rounds: int = 0  # target verify calls
    drafted: int = 0
    accepted: int = 0
    prefill_seconds: float = 0.0  # both prompt prefills
    draft_seconds: float = 0.0  # draft calls in the rounds
    verify_seconds: float = 0.0  # target verify calls
    rollback_seconds: float = 0.0
    draft_calls: int = 0
    stopped_early: int = 0  # rounds a min_draft_prob cut short of their k proposals
    min_margin: float = float("inf")  # smallest top-2 gap of the verify rows that chose a token (greedy)
    stop_reason: str = ""

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else float("nan")

    @property
    def tokens_per_target_call(self) -> float:
        """New tokens after the first (which comes from the prompt prefill) per verify call."""
        return (self.new_tokens - 1) / self.rounds if self.rounds else float("nan")

    @property
    def decode_seconds(self) -> float:
        return self.draft_seconds + self.verify_seconds + self.rollback_seconds

    @property
    def draft_ms_per_call(self) -> float:
        return 1000 * self.draft_seconds / self.draft_calls if self.draft_calls else float("nan")

    @property
    def verify_ms_per_call(self) -> float:
        return 1000 * self.verify_seconds / self.rounds if self.rounds else float("nan")


def verify_limit(runner: Runner) -> int | None:
    """Most tokens ``runner`` scores at every position in one call: 0 if its prefill returns only the
    last position's logits, a TFLite file's longest prefill signature, else None (its cache is the
    only limit)."""
    if runner.logits_positions != "all":
        return 0
    lengths = getattr(runner, "prefill_lengths", None)  # fixed-shape signatures (TFLiteRunner)
    return max(lengths) if lengths else None


@dataclass(frozen=True)
class PairSide:
    """What the pair checks need from a target or a draft: read from an open runner, or from an
    artefact's manifest and tokenizer before anything loads (``artefact_side``).

    ``max_len`` None: not known yet. ``verify_limit``: as ``verify_limit`` (0: last-position logits
    only; None: only the cache limits). ``vocab_fingerprint``: ``Tokenizer.vocab_fingerprint`` or None.
    """

    name: str
    vocab_size: int
    max_len: int | None = None
    verify_limit: int | None = None
    vocab_fingerprint: str | None = None

    @classmethod
    def of_runner(cls, runner: Runner, vocab_fingerprint: str | None = None) -> PairSide:
        return cls(runner.name, runner.config.vocab_size, runner.max_len, verify_limit(runner), vocab_fingerprint)


def artefact_side(art, role: str) -> PairSide:
    """The pair facts of an artefact before loading its runtime (its tokenizer is required: without it the
    vocabulary cannot be compared). Fixed-shape signature limits are checked once the runner is open."""
    from tinyexport.tokenizer import Tokenizer

    if art.tokenizer_dir is None:
        raise SpeculativeError(f"{role} {art.path} has no tokenizer.json, so its vocabulary cannot be checked")
    all_positions = art.manifest.get("prefill_logits", "last") == "all"
    fingerprint = Tokenizer(art.tokenizer_dir).vocab_fingerprint()
    return PairSide(art.name, art.config.vocab_size, art.kv_cache_max_len, None if all_positions else 0, fingerprint)


def check_sides(target: PairSide, draft: PairSide, k: int, needed_tokens: int | None = None) -> None:
    """Refuse, in one line, a pair that cannot decode speculatively: different vocabularies, ``k`` out of
    range, a target that cannot score ``k + 1`` positions in one call, or a cache shorter than
    ``needed_tokens``. Facts a side does not know yet (None) are not checked."""
    if k < 1:
        raise SpeculativeError(f"-k must be at least 1 (draft tokens per target call), got {k}")
    if target.vocab_size != draft.vocab_size:
        raise SpeculativeError(
            f"draft {draft.name} has a vocabulary of {draft.vocab_size} tokens, target {target.name} "
            f"{target.vocab_size}; use a draft made from the same tokenizer"
        )
    if None not in (target.vocab_fingerprint, draft.vocab_fingerprint) and (
        target.vocab_fingerprint != draft.vocab_fingerprint
    ):
        raise SpeculativeError(
            f"draft {draft.name} and target {target.name} have different tokenizers (vocabulary fingerprints "
            f"{draft.vocab_fingerprint} vs {target.vocab_fingerprint}); use a draft made from the same tokenizer"
        )
    if target.verify_limit == 0:
        raise SpeculativeError(
            f"target {target.name} returns only the last position's logits from a prefill, so it cannot score "
            "draft tokens in one call; re-export it with `tinyexport convert ... --prefill-logits all`"
        )
    if target.verify_limit is not None and k + 1 > target.verify_limit:
        raise SpeculativeError(
            f"-k {k} needs the target to score {k + 1} tokens in one call, but {target.name}'s longest prefill "
            f"signature is {target.verify_limit}; use -k {target.verify_limit - 1} or less, or export it with "
            f"--prefill-seq-lens {k + 1},..."
        )
    if needed_tokens is not None:
        for role, side in (("target", target), ("draft", draft)):
            if side.max_len is not None and needed_tokens > side.max_len:
                raise SpeculativeError(
                    f"{role} {side.name} has a KV cache of {side.max_len} tokens, shorter than the "
                    f"{needed_tokens} this request needs; lower --max-new-tokens or use a longer-cache export"
                )


def check_pair(
    target: Runner,
    draft: Runner,
    k: int,
    *,
    target_vocab: str | None = None,
    draft_vocab: str | None = None,
    needed_tokens: int | None = None,
) -> None:
    """``check_sides`` on two open runners (``*_vocab``: their ``Tokenizer.vocab_fingerprint``)."""
    check_sides(PairSide.of_runner(target, target_vocab), PairSide.of_runner(draft, draft_vocab), k, needed_tokens)


def distribution(logits: np.ndarray, sampling: SamplingConfig) -> np.ndarray:
    """The probabilities ``generate.sample_next`` draws from (float64, (V,)); one-hot at temperature 0."""
    probs = np.zeros(logits.shape[-1], dtype=np.float64)
    if sampling.temperature == 0:
        probs[int(np.argmax(logits))] = 1.0
        return probs
    scaled = logits.astype(np.float64) / sampling.temperature
    order = np.argsort(-scaled, kind="stable")
    if sampling.top_k:
        order = order[: sampling.top_k]
    kept = np.exp(scaled[order] - scaled[order[0]])
    kept /= kept.sum()
    if sampling.top_p < 1:
        keep = int(np.searchsorted(np.cumsum(kept), sampling.top_p) + 1)
        order, kept = order[:keep], kept[:keep] / kept[:keep].sum()
    probs[order] = kept
    return probs


def softmax_max(logits: np.ndarray) -> float:
    """The largest probability of softmax(``logits``): how sure a greedy draft is of its own token."""
    shifted = np.exp(logits.astype(np.float32) - np.float32(np.max(logits)))
    return float(1.0 / shifted.sum())


def draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """One id drawn from ``probs`` (inverse CDF on one uniform, so a seed fixes the draw)."""
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), probs.size - 1))


def accept_greedy(drafted: list[int], target_logits: np.ndarray) -> tuple[int, int]:
    """(accepted count m, next token): ``d_i`` kept while it is the target's argmax; the next token is
    the target's argmax at the first mismatch, or at row ``k`` (the bonus) when all match."""
    for i, token in enumerate(drafted):
        best = int(np.argmax(target_logits[i]))
        if best != token:
            return i, best
    return len(drafted), int(np.argmax(target_logits[len(drafted)]))


def accept_sampled(
    drafted: list[int], q: list[np.ndarray], p: list[np.ndarray], rng: np.random.Generator
) -> tuple[int, int]:
    """Speculative sampling: (accepted count m, next token). ``q[i]``/``p[i]`` are the draft's and the
    target's distributions for ``drafted[i]``; ``p`` has one more row (the bonus)."""
    for i, token in enumerate(drafted):
        if rng.random() * q[i][token] < p[i][token]:  # accept with probability min(1, p/q)
            continue
        residual = np.maximum(p[i] - q[i], 0.0)
        total = residual.sum()
        return i, draw(residual / total if total > 0 else p[i], rng)
    return len(drafted), draw(p[len(drafted)], rng)


def speculative_tokens(
    target: Runner,
    draft: Runner,
    prompt: np.ndarray,
    max_new_tokens: int,
    k: int,
    sampling: SamplingConfig = GREEDY,
    stop_ids: Iterable[int] = (),
    stats: SpeculativeStats | None = None,
    min_draft_prob: float = 0.0,
) -> Iterator[int]:
    """Reset both runners, prefill ``prompt`` on both, then yield up to ``max_new_tokens`` new ids (a stop
    id included) decoded speculatively with up to ``k`` draft tokens per target call.

    ``min_draft_prob`` > 0: the draft stops proposing after a token it gave less than that probability
    (its own softmax, or its sampling distribution ``q``): a round whose next proposal is likely rejected
    ends early, so ``k`` can be larger for confident stretches. It changes only how many tokens each
    round proposes, never which are accepted: greedy output stays the target's, sampling stays exact
    (the acceptance test of every proposed position is unchanged; the length is decided from the draft's
    own proposals, as in dynamic-lookahead speculative decoding)."""
    if not 0.0 <= min_draft_prob < 1.0:
        raise SpeculativeError(f"--draft-min-prob must be in [0, 1), got {min_draft_prob}")
    check_pair(target, draft, k)
    prompt = np.asarray(prompt, dtype=np.int64).reshape(-1)
    check_capacity(target.name, 0, prompt.size + max_new_tokens, target.max_len)
    check_capacity(draft.name, 0, prompt.size + max_new_tokens, draft.max_len)
    stats = stats if stats is not None else SpeculativeStats()
    stats.prompt_tokens, stats.stop_reason = int(prompt.size), "max_new_tokens"
    stops = frozenset(stop_ids)
    greedy = sampling.temperature == 0
    rng = np.random.default_rng(sampling.seed)

    def choose(logits: np.ndarray) -> int:
        return int(np.argmax(logits)) if greedy else draw(distribution(logits, sampling), rng)

    first = next(decode_steps(target, prompt, 1, choose))
    start = time.perf_counter()
    draft.reset()
    draft.prefill(prompt)
    stats.prefill_seconds = first.seconds + time.perf_counter() - start
    produced, pending = 1, [first.token]
    stats.new_tokens = 1
    yield first.token
    if first.token in stops:
        stats.stop_reason = "eos"
        return
    while produced < max_new_tokens:
        k_round = min(k, max_new_tokens - produced)
        base = target.position  # context length - 1: the target has yet to read x = pending[-1]
        drafted: list[int] = []
        q: list[np.ndarray] = []
        for step in decode_steps(draft, np.asarray(pending), k_round, choose, reset=False):
            drafted.append(step.token)
            stats.draft_seconds += step.seconds
            stats.draft_calls += 1
            if greedy:
                confidence = softmax_max(step.logits) if min_draft_prob else 1.0
            else:
                q.append(distribution(step.logits, sampling))
                confidence = q[-1][step.token]
            if confidence < min_draft_prob:
                stats.stopped_early += len(drafted) < k_round
                break  # the draft has read pending + drafted[:-1], as after a round of len(drafted)
        proposed = len(drafted)  # k_round, or fewer when min_draft_prob ended the round early
        start = time.perf_counter()
        rows = target.prefill(np.asarray([pending[-1], *drafted]))
        stats.verify_seconds += time.perf_counter() - start
        if greedy:
            accepted, following = accept_greedy(drafted, rows)
            chosen = np.sort(rows[: accepted + 1], axis=-1)[:, -2:]
            stats.min_margin = min(stats.min_margin, float(np.min(chosen[:, 1] - chosen[:, 0])))
        else:
            p = [distribution(row, sampling) for row in rows]
            accepted, following = accept_sampled(drafted, q, p, rng)
        stats.rounds += 1
        stats.drafted += proposed
        stats.accepted += accepted
        start = time.perf_counter()
        target.rollback(base + 1 + accepted)
        if accepted < proposed:
            draft.rollback(base + 1 + accepted)
            pending = [following]
        else:  # the draft never read its last proposal
            pending = [drafted[-1], following]
        stats.rollback_seconds += time.perf_counter() - start
        for token in [*drafted[:accepted], following]:
            produced += 1
            stats.new_tokens = produced
            yield token
            if token in stops:
                stats.stop_reason = "eos"
                return
            if produced == max_new_tokens:
                return


@dataclass(frozen=True)
class SpeedRow:
    """One timed generation: the ids it produced and its wall time (prompt prefill included)."""

    mode: str  # "target" or "speculative"
    tokens: tuple[int, ...]
    seconds: float
    decode_seconds: float  # wall time after the prompt prefill(s), loop overhead included

    @property
    def tokens_per_second(self) -> float:
        return len(self.tokens) / self.seconds

    @property
    def decode_ms_per_token(self) -> float:
        return 1000 * self.decode_seconds / max(len(self.tokens) - 1, 1)


@dataclass(frozen=True)
class SpeedComparison:
    target: list[SpeedRow]
    speculative: list[SpeedRow]
    stats: list[SpeculativeStats]
    k: int
    greedy: bool
    min_draft_prob: float = 0.0

    @staticmethod
    def _median(values: list[float]) -> float:
        return float(np.median(values))

    @property
    def identical(self) -> bool | None:
        """Greedy: every run (both modes) produced the same ids. Sampling: None (no single answer)."""
        if not self.greedy:
            return None
        return all(s.tokens == self.target[0].tokens for s in self.speculative + self.target)

    @property
    def speedup(self) -> float:
        """Median end-to-end tokens/s, speculative over target alone."""
        return self._median([r.tokens_per_second for r in self.speculative]) / self._median(
            [r.tokens_per_second for r in self.target]
        )

    def summary(self) -> dict[str, float | int | bool | None]:
        med = self._median
        target_ms = med([r.decode_ms_per_token for r in self.target])
        draft_ms = med([s.draft_ms_per_call for s in self.stats])
        verify_ms = med([s.verify_ms_per_call for s in self.stats])
        per_call = med([s.tokens_per_target_call for s in self.stats])
        rollback_ms = med([1000 * s.rollback_seconds / max(s.rounds, 1) for s in self.stats])
        drafted_per_round = med([s.drafted / max(s.rounds, 1) for s in self.stats])
        round_ms = drafted_per_round * draft_ms + verify_ms + rollback_ms
        return {
            "k": self.k,
            "min_draft_prob": self.min_draft_prob,
            "drafted_per_round": drafted_per_round,
            "new_tokens": len(self.target[0].tokens),
            "identical": self.identical,
            "target_tok_s": med([r.tokens_per_second for r in self.target]),
            "speculative_tok_s": med([r.tokens_per_second for r in self.speculative]),
            "speedup": self.speedup,
            "acceptance_rate": med([s.acceptance_rate for s in self.stats]),
            "tokens_per_target_call": per_call,
            "target_decode_ms": target_ms,
            "draft_ms": draft_ms,
            "verify_ms": verify_ms,
            "rollback_ms": rollback_ms,
            "predicted_decode_speedup": target_ms * per_call / round_ms,
            "speculative_decode_ms": (spec_ms := med([r.decode_ms_per_token for r in self.speculative])),
            "measured_decode_speedup": target_ms / spec_ms,
            "min_margin": margin if np.isfinite(margin := min(s.min_margin for s in self.stats)) else None,
        }


def compare_speed(
    target: Runner,
    draft: Runner,
    prompt: np.ndarray,
    max_new_tokens: int,
    k: int,
    sampling: SamplingConfig = GREEDY,
    stop_ids: Iterable[int] = (),
    repeats: int = 3,
    min_draft_prob: float = 0.0,
) -> SpeedComparison:
    """Time the target alone and speculative decoding on the same prompt, interleaved ``repeats`` times
    (one untimed warm-up of each first), so both see the same machine load."""
    from tinyexport.generate import GenerationStats, stream_tokens

    def run_target() -> SpeedRow:
        stats = GenerationStats()
        start = time.perf_counter()
        tokens = tuple(stream_tokens(target, prompt, max_new_tokens, sampling, stop_ids, stats))
        wall = time.perf_counter() - start
        return SpeedRow("target", tokens, wall, wall - stats.prefill_seconds)

    def run_speculative() -> tuple[SpeedRow, SpeculativeStats]:
        stats = SpeculativeStats()
        start = time.perf_counter()
        tokens = tuple(
            speculative_tokens(target, draft, prompt, max_new_tokens, k, sampling, stop_ids, stats, min_draft_prob)
        )
        wall = time.perf_counter() - start
        return SpeedRow("speculative", tokens, wall, wall - stats.prefill_seconds), stats

    run_target(), run_speculative()
    targets, speculatives, all_stats = [], [], []
    for _ in range(repeats):
        targets.append(run_target())
        row, stats = run_speculative()
        speculatives.append(row)
        all_stats.append(stats)
    return SpeedComparison(targets, speculatives, all_stats, k, sampling.temperature == 0, min_draft_prob)


def check_artefact_pair(target_path, draft_path, k: int, prompt: str, new_tokens: int) -> None:
    """Before any runtime loads: the target/draft artefact pair, ``k`` and both caches against the
    prompt (chat-wrapped where the tokenizer has a template) plus ``new_tokens``."""
    from tinyexport.artefact import load_artefact
    from tinyexport.tokenizer import Tokenizer

    target_art, draft_art = load_artefact(target_path), load_artefact(draft_path)
    target, draft = artefact_side(target_art, "target"), artefact_side(draft_art, "draft")
    tokenizer = Tokenizer(target_art.tokenizer_dir)
    check_sides(target, draft, k, int(tokenizer.encode(tokenizer.prompt_text(prompt)).size) + new_tokens)


def speed_row(
    target_path,
    draft_path,
    k: int,
    prompt: str,
    new_tokens: int,
    repeats: int,
    threads: int | None,
    min_draft_prob: float = 0.0,
) -> dict[str, object]:
    """Open both artefacts' runners, check the pair, time the target alone against speculative decoding
    interleaved (``compare_speed``); the row as JSON, with the load average before and after."""
    import os

    from tinyexport.artefact import load_artefact
    from tinyexport.resolve import Candidate
    from tinyexport.tokenizer import Tokenizer

    options = {"threads": threads} if threads else {}
    target_art, draft_art = load_artefact(target_path), load_artefact(draft_path)
    tokenizer = Tokenizer(target_art.tokenizer_dir)
    ids = tokenizer.encode(tokenizer.prompt_text(prompt))
    target = Candidate("artefact", artefact=target_art).open(shared_cpu=True, **options)
    draft = Candidate("artefact", artefact=draft_art).open(shared_cpu=True, **options)
    check_pair(target, draft, k, needed_tokens=ids.size + new_tokens)
    eos = target.config.eos_token_id
    load_before = os.getloadavg()[0]
    stops = [] if eos is None else [eos]
    result = compare_speed(
        target, draft, ids, new_tokens, k, stop_ids=stops, repeats=repeats, min_draft_prob=min_draft_prob
    )
    return {
        "target": target.name,
        "draft": draft.name,
        "prompt": prompt,
        "prompt_tokens": int(ids.size),
        "threads": threads,
        "repeats": repeats,
        "load_average": [load_before, os.getloadavg()[0]],
        **result.summary(),
    }
