"""Timing over the Runner protocol: TTFT, prefill and decode speed, decode speed at several cache fills.

Greedy decoding of a fixed prompt; the first new token comes from the prefill's logits (that is the
time to first token), the other ``new_tokens - 1`` from decode steps. Nothing here imports torch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tinyexport.runners.base import Runner
from tinyexport.runners.decoding import decode_steps

from .stats import Spread

CONTEXT_STEPS = 16  # decode steps timed at each --context fill


@dataclass(frozen=True)
class BenchSettings:
    prompt_len: int = 128
    new_tokens: int = 64
    warmup: int = 1
    repeats: int = 5
    contexts: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt_len", "repeats"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.new_tokens < 2:
            raise ValueError(
                f"new_tokens must be at least 2 (one from prefill, the rest decoded), got {self.new_tokens}"
            )
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        small = [c for c in self.contexts if c <= CONTEXT_STEPS]
        if small:
            raise ValueError(f"context fills {small} must exceed the {CONTEXT_STEPS} decode steps timed at each")

    @property
    def tokens_needed(self) -> int:
        """Cache slots a candidate needs for this run."""
        return max([self.prompt_len + self.new_tokens, *self.contexts])

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["contexts"] = list(self.contexts)
        data["context_steps"] = CONTEXT_STEPS
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchSettings:
        fields = {k: v for k, v in data.items() if k != "context_steps"}
        return cls(**{**fields, "contexts": tuple(fields.get("contexts", ()))})


def bench_tokens(vocab_size: int, count: int, seed: int) -> np.ndarray:
    """The deterministic token ids every candidate is fed (prompt first, then context filler)."""
    return np.random.default_rng(seed).integers(0, vocab_size, count, dtype=np.int64)


@dataclass(frozen=True)
class RunTiming:
    ttft_s: float
    prefill_s: float
    decode_s: list[float]  # one per decode step
    tokens: list[int]


def run_once(runner: Runner, prompt: np.ndarray, new_tokens: int) -> RunTiming:
    """Greedy: the first token from the prefill (TTFT includes choosing it), the rest decoded."""
    runner.reset()  # outside the timed region: clearing a fixed cache is not part of the request
    start = time.perf_counter()
    steps = decode_steps(runner, prompt, new_tokens, reset=False)
    first = next(steps)
    ttft = time.perf_counter() - start
    rest = list(steps)
    return RunTiming(ttft, first.seconds, [s.seconds for s in rest], [first.token] + [s.token for s in rest])


def decode_at_fill(runner: Runner, filler: np.ndarray, fill: int, chunk: int) -> list[float]:
    """Per-step decode times for ``CONTEXT_STEPS`` steps ending with ``fill`` tokens in the cache."""
    runner.reset()
    start_fill = fill - CONTEXT_STEPS
    starts = list(range(0, start_fill, chunk))
    for lo in starts[:-1]:
        runner.prefill(filler[lo : lo + chunk])
    last = filler[starts[-1] : start_fill]
    steps = decode_steps(runner, last, CONTEXT_STEPS + 1, reset=False)
    return [s.seconds for s in steps if s.index > 0]


def measure(runner: Runner, settings: BenchSettings) -> dict[str, Any]:
    """Warm-up runs, then ``repeats`` timed runs; per-repeat values summarised as median/p10/p90."""
    tokens = bench_tokens(runner.config.vocab_size, max(settings.prompt_len, *settings.contexts, 0), settings.seed)
    prompt = tokens[: settings.prompt_len]
    for _ in range(settings.warmup):
        run_once(runner, prompt, settings.new_tokens)
    runs = [run_once(runner, prompt, settings.new_tokens) for _ in range(settings.repeats)]
    result: dict[str, Any] = {
        "ttft_ms": Spread.of([r.ttft_s * 1e3 for r in runs]).to_json(),
        "prefill_ms": Spread.of([r.prefill_s * 1e3 for r in runs]).to_json(),
        "prefill_tok_s": Spread.of([settings.prompt_len / r.prefill_s for r in runs]).to_json(),
        "generated": runs[0].tokens,
        "deterministic": all(r.tokens == runs[0].tokens for r in runs),
    }
    per_token_ms = [1e3 * sum(r.decode_s) / len(r.decode_s) for r in runs]
    result["decode_ms_per_token"] = Spread.of(per_token_ms).to_json()
    result["decode_tok_s"] = Spread.of([1e3 / ms for ms in per_token_ms]).to_json()
    contexts = []
    for fill in settings.contexts:
        steps_ms = [1e3 * s for s in decode_at_fill(runner, tokens, fill, settings.prompt_len)]
        contexts.append(
            {
                "context": fill,
                "decode_ms_per_token": Spread.of(steps_ms).to_json(),
                "decode_tok_s": Spread.of([1e3 / ms for ms in steps_ms]).to_json(),
            }
        )
    result["contexts"] = contexts
    return result
