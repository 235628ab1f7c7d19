"""Streaming text generation over any Runner (torch, HF, TFLite, ONNX). No torch import here.

``stream_tokens`` yields token ids as they are decoded; ``TextStream`` turns ids into text
incrementally (holding back an incomplete UTF-8 sequence); ``sample_next`` is greedy at temperature
0, else temperature / top-k / top-p sampling from a seeded generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from tinyexport.runners.base import Runner
from tinyexport.runners.decoding import decode_steps


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = no top-k cut
    top_p: float = 1.0  # 1 = no nucleus cut
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


GREEDY = SamplingConfig()


def sample_next(logits: np.ndarray, sampling: SamplingConfig, rng: np.random.Generator) -> int:
    if sampling.temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / sampling.temperature
    order = np.argsort(-scaled)
    if sampling.top_k:
        order = order[: sampling.top_k]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if sampling.top_p < 1:
        keep = int(np.searchsorted(np.cumsum(probs), sampling.top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(rng.choice(order, p=probs))


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    stop_reason: str = ""

    @property
    def decode_ms_per_token(self) -> float:
        steps = max(self.new_tokens - 1, 0)  # the first new token comes from the prefill logits
        return 1000 * self.decode_seconds / steps if steps else float("nan")


def stream_tokens(
    runner: Runner,
    prompt: np.ndarray,
    max_new_tokens: int,
    sampling: SamplingConfig,
    stop_ids: Iterable[int] = (),
    stats: GenerationStats | None = None,
) -> Iterator[int]:
    """Reset ``runner``, prefill ``prompt``, then yield up to ``max_new_tokens`` new ids (stop id included)."""
    stats = stats if stats is not None else GenerationStats()
    stops = set(stop_ids)
    rng = np.random.default_rng(sampling.seed)
    stats.prompt_tokens, stats.stop_reason = int(np.asarray(prompt).size), "max_new_tokens"
    for step in decode_steps(
        runner, prompt, max_new_tokens, lambda logits: sample_next(logits, sampling, rng), stop_ids=stops
    ):
        if step.index == 0:
            stats.prefill_seconds = step.seconds
        else:
            stats.decode_seconds += step.seconds
        stats.new_tokens += 1
        yield step.token
        if step.token in stops:
            stats.stop_reason = "eos"


class TextStream:
    """Incremental detokenisation: ``push(id)`` returns the text that id completes (maybe '')."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        text = self.tokenizer.decode(self.ids)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for its next bytes
            return ""
        new, self.emitted = text[self.emitted :], len(text)
        return new
