"""A multi-turn chat over any Runner, keeping the KV cache across turns. No torch import here.

Each turn renders the *whole* conversation with the checkpoint's chat template and encodes it. The
runner's cache holds the token ids of the previous turns (``cached``); when they are a prefix of the
new rendering, only the difference is prefilled — the new user turn plus the template's closing of
the previous answer. When they are not (re-encoding an answer's text need not give back the sampled
ids), the cache rolls back to the longest common prefix and the rest is prefilled: the cache always
holds exactly a prefix of the rendered conversation, so an answer is what a one-shot generation of
the same rendering would give. ``TurnStats`` says which happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from tinyexport.errors import UserError
from tinyexport.generate import GREEDY, SamplingConfig, TextStream, sample_next
from tinyexport.runners.base import Runner
from tinyexport.runners.decoding import decode_steps


class CacheFullError(UserError, ValueError):
    """The conversation no longer fits the runner's KV cache."""


@dataclass
class TurnStats:
    rendered_tokens: int = 0  # the whole conversation, as rendered for this turn
    reused_tokens: int = 0  # tokens already in the cache
    prefilled_tokens: int = 0  # tokens this turn prefilled (rendered - reused)
    prefix_kept: bool = True  # the cache was a prefix of the rendering (else rolled back to the common part)
    new_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    stop_reason: str = ""  # "eos", "max_new_tokens", "cache_full", "interrupted"


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    mismatch = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(mismatch[0]) if mismatch.size else n


class ChatSession:
    """One conversation on one runner. ``turn(text)`` streams the answer's text pieces."""

    def __init__(
        self,
        runner: Runner,
        tokenizer,
        *,
        sampling: SamplingConfig = GREEDY,
        max_new_tokens: int = 256,
        stop_ids: Iterable[int] = (),
        system: str | None = None,
    ) -> None:
        if tokenizer.chat_template() is None:
            raise UserError(f"{tokenizer.directory} has no chat template, so it cannot chat; use `tinyexport generate`")
        self.runner = runner
        self.tokenizer = tokenizer
        self.sampling = sampling
        self.max_new_tokens = max_new_tokens
        self.stop_ids = frozenset(stop_ids)
        self.system = system
        self.rng = np.random.default_rng(sampling.seed)
        self.reset()

    def reset(self) -> None:
        """Forget the conversation and empty the cache."""
        self.messages: list[dict[str, str]] = (
            [] if self.system is None else [{"role": "system", "content": self.system}]
        )
        self.cached: list[int] = []  # the ids in the runner's cache, in order
        self.runner.reset()
        self.last = TurnStats()

    def render(self, messages: list[dict[str, str]]) -> list[int]:
        return [int(i) for i in self.tokenizer.encode(self.tokenizer.render_chat(messages))]

    def turn(self, text: str, should_stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """Add a user message and stream the answer. ``should_stop()`` is polled between tokens (Ctrl-C):
        the answer ends there and the partial answer stays in the conversation. Raises
        ``CacheFullError`` before anything runs when the conversation no longer fits."""
        messages = [*self.messages, {"role": "user", "content": text}]
        ids = self.render(messages)
        room = self.runner.max_len - len(ids)
        if room < 1:
            raise CacheFullError(
                f"the conversation ({len(ids)} tokens with this message) fills the KV cache "
                f"({self.runner.max_len} tokens); type /reset to start a new conversation"
            )
        stats = self.last = TurnStats(rendered_tokens=len(ids))
        keep = common_prefix(self.cached, ids[:-1])  # at least one token to prefill, for the logits
        stats.prefix_kept = keep == len(self.cached)
        if keep < self.runner.position:
            self.runner.rollback(keep)
        stats.reused_tokens, stats.prefilled_tokens = keep, len(ids) - keep
        self.messages = messages
        fed = ids.copy()  # every id the runner will have read, in order; the cache holds fed[:position]
        answer: list[int] = []
        stream = TextStream(self.tokenizer)
        budget = min(self.max_new_tokens, room)
        stats.stop_reason = "max_new_tokens" if budget == self.max_new_tokens else "cache_full"

        def choose(logits: np.ndarray) -> int:
            return sample_next(logits, self.sampling, self.rng)

        try:
            for step in decode_steps(
                self.runner, np.asarray(ids[keep:]), budget, choose, stop_ids=self.stop_ids, reset=False
            ):
                if step.index == 0:
                    stats.prefill_seconds = step.seconds
                else:
                    stats.decode_seconds += step.seconds
                if step.token in self.stop_ids:
                    stats.stop_reason = "eos"
                    break
                answer.append(step.token)
                fed.append(step.token)
                stats.new_tokens += 1
                piece = stream.push(step.token)
                if piece:
                    yield piece
                if should_stop():
                    stats.stop_reason = "interrupted"
                    break
        finally:  # also when the caller stops iterating early
            self.cached = fed[: self.runner.position]
            self.messages = [*messages, {"role": "assistant", "content": self.tokenizer.decode(answer)}]
