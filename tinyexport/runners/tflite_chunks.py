"""How a TFLite runner splits a prompt over fixed-length signatures. Pure arithmetic, no runtime.

A signature of length ``L`` writes ``L`` cache slots starting at the chunk's first position, so a
chunk must satisfy ``start + L <= cache_len`` (LiteRT clamps a ``dynamic_update_slice`` that would run
past the end, which would shift the write onto earlier slots). A chunk of ``count < L`` real tokens is
padded by repeating its last token *at its last position*: every padding row is an exact copy of the
last real row, so with last-position logits the row the signature returns is the real last token's,
padding never adds values outside the real rows' range (dynamic-range quantization sees the same
activations), and the slots the padding writes (``start + count ... start + L - 1``) lie beyond the
current position, invisible to every query until a later token overwrites them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    length: int  # signature length (1 = the decode signature)
    start: int  # position of the chunk's first token
    count: int  # real tokens in the chunk (<= length); the rest is padding


def plan_chunks(position: int, n_tokens: int, lengths: tuple[int, ...], cache_len: int) -> list[Chunk]:
    """Chunks for ``n_tokens`` starting at ``position``, with signatures of ``lengths`` (1 must be one).

    Each chunk uses the smallest signature that holds all remaining tokens and fits in the cache, else
    the largest that fits; near the end of the cache that may be the one-token decode signature.
    """
    if 1 not in lengths:
        raise ValueError(f"signature lengths {lengths} lack 1 (decode)")
    if position + n_tokens > cache_len:
        raise ValueError(f"{position} + {n_tokens} tokens exceed the cache of {cache_len}")
    chunks = []
    start, remaining = position, n_tokens
    while remaining > 0:
        fitting = sorted(n for n in lengths if start + n <= cache_len)  # never empty: 1 fits while start < cache_len
        holding = [n for n in fitting if n >= remaining]
        length = holding[0] if holding else fitting[-1]
        count = min(length, remaining)
        chunks.append(Chunk(length, start, count))
        start, remaining = start + count, remaining - count
    return chunks


def padded_inputs(tokens: np.ndarray, chunk: Chunk) -> tuple[np.ndarray, np.ndarray]:
    """(tokens [1, L] int32, input_pos [L] int32) for ``chunk``; ``tokens`` are its ``count`` real ids."""
    if tokens.size != chunk.count:
        raise ValueError(f"chunk holds {chunk.count} tokens, got {tokens.size}")
    pad = chunk.length - chunk.count
    ids = np.concatenate([tokens, np.full(pad, tokens[-1])]).astype(np.int32)
    last = chunk.start + chunk.count - 1
    pos = np.concatenate([np.arange(chunk.start, last + 1), np.full(pad, last)]).astype(np.int32)
    return ids[None, :], pos
