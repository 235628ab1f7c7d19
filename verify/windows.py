"""The sliding-window perplexity protocol (the one transformers documents), as plain data.

Windows of ``window`` tokens start every ``stride`` tokens; each window scores only the tokens no
earlier window scored, so every scored token is predicted once, with at least ``window - stride``
tokens of context (except in the first window). The first window scores tokens 1..window-1 (token 0
has no context); the last window ends at the text's end and may be shorter than ``window``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlidingWindow:
    window: int = 1024
    stride: int = 512

    def __post_init__(self) -> None:
        if not isinstance(self.window, int) or self.window < 2:
            raise ValueError(f"window must be an integer >= 2, got {self.window}")
        if not isinstance(self.stride, int) or not 1 <= self.stride <= self.window:
            raise ValueError(f"stride must be between 1 and the window ({self.window}), got {self.stride}")

    def spans(self, n_tokens: int) -> list[Span]:
        """The windows over a text of ``n_tokens`` tokens (needs at least one full window)."""
        if n_tokens < self.window:
            raise ValueError(f"{n_tokens} tokens is fewer than one window of {self.window}")
        spans, begin, prev_end = [], 0, 0
        while True:
            end = min(begin + self.window, n_tokens)
            spans.append(Span(begin, end, max(prev_end, begin + 1)))
            prev_end = end
            if end == n_tokens:
                return spans
            begin += self.stride

    def scored_tokens(self, n_tokens: int) -> int:
        return sum(s.n_targets for s in self.spans(n_tokens))


@dataclass(frozen=True)
class Span:
    begin: int  # first input token of the window
    end: int  # one past its last token
    first_target: int  # first token this window scores (begin < first_target <= end)

    @property
    def n_targets(self) -> int:
        return self.end - self.first_target
