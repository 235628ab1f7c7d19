"""Options and helpers shared by commands. Light imports only (click); heavy work is imported lazily."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import click
import numpy as np

from tinyexport.errors import UserError
from tinyexport.models.config import DEFAULT_CHECKPOINT, PRESETS

DEFAULT_PROMPT = "In a quiet village at the foot of the mountains, an old clockmaker discovered that"


def checkpoint_options(func: Callable) -> Callable:
    """--checkpoint / --random-weights / --seed, the way every command names a model."""
    func = click.option("--seed", type=int, default=0, show_default=True,
                        help="Seed for --random-weights (and for random prompt ids when there is no tokenizer).")(func)
    func = click.option("--random-weights", is_flag=True,
                        help=f"Deterministic random weights of a preset's shape ({', '.join(PRESETS)}).")(func)
    func = click.option("--checkpoint", default=DEFAULT_CHECKPOINT, show_default=True, metavar="PRESET|DIR|FILE.gguf",
                        help="Preset name, HF model directory (config.json + safetensors) or GGUF file.")(func)
    return func


def open_checkpoint(spec: str, random_weights: bool = False, seed: int = 0):
    """Resolve --checkpoint (materialising into the cache if needed)."""
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.paths import cache_dir

    return resolve_checkpoint(spec, cache=cache_dir(), random_weights=random_weights, seed=seed)


def prompt_ids(tokenizer_dir: Path | None, prompt: str | None, prompt_tokens: int | None, seed: int,
               vocab_size: int) -> tuple[np.ndarray, Any]:
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
        raise UserError("this checkpoint has no tokenizer (tokenizer.json); pass --prompt-tokens N for random prompt ids")
    ids = tokenizer.encode(prompt if prompt is not None else DEFAULT_PROMPT)
    if ids.size == 0:
        raise UserError("the prompt encodes to no tokens; pass a non-empty --prompt")
    return ids, tokenizer


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file and rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def check_writable_file(path: Path | None, option: str) -> None:
    """Fail early (before hours of work) if an output file cannot be written."""
    if path is None:
        return
    parent = Path(path).expanduser().resolve().parent
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory; pass a file path")
    if not parent.exists():
        raise UserError(f"{option} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{option} {path}: directory {parent} is not writable")
