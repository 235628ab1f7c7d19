"""Turning what the user named (a checkpoint spec, artefact directories, a prompt) into resolved
inputs: the one place that opens checkpoints and artefacts for every command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.errors import UserError

DEFAULT_PROMPT = "In a quiet village at the foot of the mountains, an old clockmaker discovered that"


def open_checkpoint(spec: str, random_weights: bool = False, seed: int = 0):
    """Resolve --checkpoint (materialising into the cache if needed)."""
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.paths import cache_dir

    return resolve_checkpoint(spec, cache=cache_dir(), random_weights=random_weights, seed=seed)


def prompt_ids(
    tokenizer_dir: Path | None, prompt: str | None, prompt_tokens: int | None, seed: int, vocab_size: int
) -> tuple[np.ndarray, Any]:
    """Prompt ids from text (needs a tokenizer) or ``prompt_tokens`` deterministic random ids.

    Returns (ids, tokenizer-or-None).
    """
    tokenizer = None
    if tokenizer_dir is not None:
        from tinyexport.tokenizer import Tokenizer

        tokenizer = Tokenizer(tokenizer_dir)
    if prompt_tokens is not None:
        if prompt_tokens <= 0:
            raise UserError(f"--prompt-tokens must be positive, got {prompt_tokens}")
        return np.random.default_rng(seed).integers(0, vocab_size, prompt_tokens, dtype=np.int64), tokenizer
    if tokenizer is None:
        raise UserError(
            "this checkpoint has no tokenizer (tokenizer.json); pass --prompt-tokens N for random prompt ids"
        )
    ids = tokenizer.encode(prompt if prompt is not None else DEFAULT_PROMPT)
    if ids.size == 0:
        raise UserError("the prompt encodes to no tokens; pass a non-empty --prompt")
    return ids, tokenizer
