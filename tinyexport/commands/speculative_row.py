"""``tinyexport bench ARTEFACT --draft DRAFT [-k N]``: one speculative-decoding row beside the candidates.

The first ARTEFACT is the target. On a real-text prompt (the chat template applied when the tokenizer
has one), the target alone and speculative decoding are timed interleaved in this process
(``speculative.compare_speed``: one warm-up of each, then ``--repeats`` pairs), so both see the same
machine load; the row reports acceptance, tokens per target call, ms/token of both, the end-to-end
speedup, the cost model's prediction and the load average while it ran. No torch import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

SPEC_PROMPT = "Write a short story about a robot who learns to paint."


def prompt_ids(tokenizer: Any, prompt: str) -> Any:
    """The prompt's ids, wrapped as a user message with the chat template when the tokenizer has one."""
    text = tokenizer.render_chat([{"role": "user", "content": prompt}]) if tokenizer.chat_template() else prompt
    return tokenizer.encode(text)


def check_draft(artefacts: tuple[Path, ...], draft: Path, k: int, prompt: str, new_tokens: int) -> None:
    """What needs no runner, before any work: a target exported with all-position logits, a loadable
    draft with a tokenizer, k >= 1, same vocabulary (size and fingerprint), both caches long enough."""
    from tinyexport.artefact import load_artefact
    from tinyexport.errors import UserError
    from tinyexport.speculative import SpeculativeError
    from tinyexport.tokenizer import Tokenizer

    if not artefacts:
        raise UserError("--draft needs a target: pass the fp32 ARTEFACT it drafts for first")
    if k < 1:
        raise SpeculativeError(f"-k must be at least 1 (draft tokens per target call), got {k}")
    target_art, draft_art = load_artefact(artefacts[0]), load_artefact(draft)
    for role, art in (("target", target_art), ("draft", draft_art)):
        if art.tokenizer_dir is None:
            raise UserError(f"{role} {art.path} has no tokenizer.json, so its vocabulary cannot be checked")
    if draft_art.config.vocab_size != target_art.config.vocab_size:
        raise SpeculativeError(
            f"--draft {draft}: vocabulary of {draft_art.config.vocab_size} tokens, the target has "
            f"{target_art.config.vocab_size}; use a draft made from the same tokenizer"
        )
    ours, theirs = Tokenizer(target_art.tokenizer_dir), Tokenizer(draft_art.tokenizer_dir)
    if ours.vocab_fingerprint() != theirs.vocab_fingerprint():
        raise SpeculativeError(
            f"draft {draft_art.name} and target {target_art.name} have different tokenizers; "
            "use a draft made from the same tokenizer"
        )
    if target_art.manifest.get("prefill_logits", "last") != "all":
        raise SpeculativeError(
            f"target {target_art.name} returns only the last position's logits from a prefill, so it cannot score "
            "draft tokens in one call; re-export it with `tinyexport convert ... --prefill-logits all`"
        )
    needed = int(prompt_ids(ours, prompt).size) + new_tokens
    for role, art in (("target", target_art), ("draft", draft_art)):
        if needed > art.kv_cache_max_len:
            raise SpeculativeError(
                f"{role} {art.name} has a KV cache of {art.kv_cache_max_len} tokens, shorter than the {needed} "
                "the speculative row needs (--draft-prompt + --new-tokens); lower --new-tokens or shorten the prompt"
            )


def measure_row(
    target_path: Path, draft_path: Path, k: int, prompt: str, new_tokens: int, repeats: int, threads: int | None
) -> dict[str, Any]:
    """Open both runners, check the pair, time target alone vs speculative interleaved; the JSON row."""
    from tinyexport.artefact import load_artefact
    from tinyexport.resolve import Candidate
    from tinyexport.speculative import check_pair, compare_speed
    from tinyexport.tokenizer import Tokenizer

    options = {"threads": threads} if threads else {}
    target_art, draft_art = load_artefact(target_path), load_artefact(draft_path)
    ids = prompt_ids(Tokenizer(target_art.tokenizer_dir), prompt)
    target = Candidate("artefact", artefact=target_art).open(**options)
    draft = Candidate("artefact", artefact=draft_art).open(**options)
    check_pair(target, draft, k, needed_tokens=ids.size + new_tokens)
    eos = target.config.eos_token_id
    load_before = os.getloadavg()[0]
    result = compare_speed(target, draft, ids, new_tokens, k, stop_ids=[] if eos is None else [eos], repeats=repeats)
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


def print_row(console: Any, row: dict[str, Any]) -> None:
    from rich.table import Table

    same = {True: "identical", False: "DIFFERENT", None: "sampled"}[row["identical"]]
    table = Table(
        title=f"speculative decoding: target {row['target']}, draft {row['draft']}, k={row['k']}, "
        f"{row['new_tokens']} new tokens, {row['repeats']} interleaved repeats (medians), "
        f"load average {row['load_average'][0]:.1f}-{row['load_average'][1]:.1f}"
    )
    columns = {
        "acceptance": f"{row['acceptance_rate']:.1%}",
        "tokens / target call": f"{row['tokens_per_target_call']:.2f}",
        "target alone ms/token": f"{row['target_decode_ms']:.2f}",
        "speculative ms/token": f"{row['speculative_decode_ms']:.2f}",
        "draft ms/call": f"{row['draft_ms']:.2f}",
        "verify ms/call": f"{row['verify_ms']:.2f}",
        "target tok/s": f"{row['target_tok_s']:.1f}",
        "speculative tok/s": f"{row['speculative_tok_s']:.1f}",
        "speedup": f"{row['speedup']:.2f}x",
        "cost model": f"{row['predicted_decode_speedup']:.2f}x",
        "output": same,
    }
    for name in columns:
        table.add_column(name, justify="right")
    table.add_row(*columns.values())
    console.print(table)
