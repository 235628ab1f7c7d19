"""``generate --engine litertlm``: stream text from Google's LiteRT-LM engine on an artefact's bundle."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tinyexport.errors import UserError


def generate_with_litertlm(artefact: Path, prompt: str, chat: bool, max_new_tokens: int, threads: int | None) -> None:
    """The prompt is rendered with our chat template (as the tinyexport engine does) and passed to
    LiteRT-LM as raw text, so both engines see the same token ids."""
    from tinyexport.artefact import load_artefact
    from tinyexport.runners.litertlm_runner import LiteRtLmEngine, bundle_of
    from tinyexport.tokenizer import Tokenizer

    art = load_artefact(artefact)
    bundle = bundle_of(art)  # refuses an artefact without one before anything loads
    text = Tokenizer(art.path).prompt_text(prompt, chat) if chat else prompt
    with LiteRtLmEngine(bundle, threads=threads) as engine:
        n_prompt = len(engine.tokenize(text))
        if n_prompt == 0:
            raise UserError("the prompt encodes to no tokens; pass a non-empty --prompt")
        if n_prompt + max_new_tokens > art.kv_cache_max_len:
            raise UserError(
                f"prompt ({n_prompt} tokens) + --max-new-tokens {max_new_tokens} exceeds the KV cache "
                f"({art.kv_cache_max_len}); shorten the prompt or lower --max-new-tokens"
            )
        import time

        chunks, start = 0, time.perf_counter()
        first = last = start
        for chunk in engine.stream(text, max_new_tokens):
            last = time.perf_counter()
            if chunks == 0:
                first = last
            chunks += 1
            sys.stdout.write(chunk)
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    per_chunk = (last - first) * 1000 / (chunks - 1) if chunks > 1 else 0.0
    click.echo(
        f"[litert-lm] prompt {n_prompt} tokens, first text after {(first - start) * 1000:.0f} ms, "
        f"{chunks} text chunks, decode {per_chunk:.1f} ms/chunk (a chunk is one token unless it ends "
        f"inside a UTF-8 character)",
        err=True,
    )
