"""The Runner protocol every backend implements, and the few helpers written once against it.

Runners are batch-1 and stateful: ``prefill`` appends tokens at the current position (after
``reset`` that is position 0) and returns their logits; ``decode`` appends one token; ``rollback(p)``
forgets every token from position ``p`` on (speculative decoding drops rejected draft tokens; chat
keeps a conversation's cache). Logits are
float32 numpy arrays: ``prefill`` returns (T, V) when ``logits_positions == "all"`` and (1, V) for
the last position otherwise; ``decode`` returns (V,).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from tinyexport.errors import UserError
from tinyexport.models.config import ModelConfig


class CacheOverflowError(UserError, ValueError):
    """A prefill/decode would run past the runner's KV-cache capacity."""


@runtime_checkable
class Runner(Protocol):
    name: str
    config: ModelConfig
    max_len: int  # KV-cache capacity in tokens
    logits_positions: str  # "all" or "last"
    position: int  # tokens already in the cache

    def prefill(self, tokens: np.ndarray) -> np.ndarray: ...

    def decode(self, token: int) -> np.ndarray: ...

    def reset(self) -> None: ...

    def rollback(self, position: int) -> None: ...


def check_capacity(runner_name: str, position: int, adding: int, max_len: int) -> None:
    if position + adding > max_len:
        raise CacheOverflowError(
            f"{runner_name}: {position} cached + {adding} new tokens exceeds its KV cache of {max_len}; "
            "use a shorter prompt or fewer new tokens (or export with a larger --kv-cache-max-len)"
        )


def check_rollback(runner_name: str, position: int, target: int) -> None:
    if not 0 <= target <= position:
        raise ValueError(f"{runner_name}: cannot roll back to position {target}; it holds {position} tokens")


def as_tokens(tokens: np.ndarray | list[int]) -> np.ndarray:
    arr = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if arr.size == 0:
        raise ValueError("prefill needs at least one token")
    return arr
