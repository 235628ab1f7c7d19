"""Rich rendering of parity reports (stdout)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tinyexport.console import make_console

from .parity import ParityReport, ReferenceTrace


def tokens_text(tokenizer: Any, tokens: Sequence[int]) -> str:
    """Decoded text, or the ids themselves when there is no tokenizer."""
    if tokenizer is None:
        return " ".join(str(t) for t in tokens)
    return tokenizer.decode(list(tokens))


def print_parity(
    checkpoint_name: str,
    trace: ReferenceTrace,
    reports: Sequence[ParityReport],
    tokenizer: Any,
    console: Console | None = None,
    reference: str = "transformers",
) -> None:
    console = console or make_console()
    table = Table(
        title=f"parity vs {reference} ({checkpoint_name}, {trace.prompt.size} prompt tokens, "
        f"{len(trace.tokens)} greedy tokens)"
    )
    for col in (
        "candidate",
        "recipe",
        "max |Δ|",
        "mean |Δ|",
        "prefill max",
        "decode max",
        "top-1",
        "KL mean",
        "greedy",
        "result",
    ):
        table.add_column(col, justify="left" if col in ("candidate", "recipe", "result") else "right")
    for r in reports:
        result = "[green]pass[/]" if r.passed else "[red]FAIL[/] " + "; ".join(r.failures)
        table.add_row(
            r.name,
            f"{r.format}/{r.recipe}",
            f"{r.max_abs:.2e}",
            f"{r.mean_abs:.2e}",
            f"{r.prefill_max_abs:.2e}",
            f"{r.decode_max_abs:.2e}",
            f"{r.top1_agreement:.3f}",
            f"{r.kl:.2e}",
            f"{r.greedy_match}/{r.greedy_total}",
            result,
        )
    console.print(table)
    console.print(f"[bold]reference[/] ({trace.name}): {tokens_text(tokenizer, trace.tokens)!r}")
    for r in reports:
        if r.first_divergence is not None:
            console.print(
                f"[bold]{r.name}[/] diverges at generated token {r.first_divergence}: "
                f"{tokens_text(tokenizer, r.candidate_tokens)!r}"
            )
    same = [r.name for r in reports if r.first_divergence is None]
    if same:
        console.print(f"identical greedy text: {', '.join(same)}")


def parity_document(
    checkpoint_name: str,
    trace: ReferenceTrace,
    reports: Sequence[ParityReport],
    tokenizer: Any,
    reference: str | None = None,
) -> dict:
    """The ``verify --json`` document (``reference``: our transformed model's label, None for transformers)."""
    return {
        "reference": (
            f"{reference} (our model, transformed) of {checkpoint_name}"
            if reference
            else f"transformers LlamaForCausalLM (eager, fp32) of {checkpoint_name}"
        ),
        "prompt_tokens": int(trace.prompt.size),
        "reference_text": tokens_text(tokenizer, trace.tokens),
        "candidates": [dict(r.to_json(), text=tokens_text(tokenizer, r.candidate_tokens)) for r in reports],
    }
