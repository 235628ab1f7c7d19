"""Rich tables for ``tinyexport eval`` (stdout; progress bars go to stderr)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from tinyexport.console import make_console

from .choice import RANDOM_BASELINE

if TYPE_CHECKING:
    from tinyexport.verify.evaluation import ChoiceReport, PerplexityReport


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_perplexity(report: PerplexityReport, console: Console | None = None) -> None:
    console = console or make_console()
    rows = report.rows
    scored = rows[0].scored_tokens if rows else 0
    table = Table(
        title=f"perplexity on {report.text.path.name} ({report.tokens} tokens, window {report.protocol.window}, "
        f"stride {report.protocol.stride}, {scored} scored)"
    )
    for col in (
        "candidate",
        "recipe",
        "logits via",
        "perplexity",
        "Δppl",
        "Δppl %",
        "KL mean",
        "KL p99",
        "top-1",
        "seconds",
        "tok/s",
    ):
        table.add_column(col, justify="left" if col in ("candidate", "recipe", "logits via") else "right")
    reference_ppl = rows[0].perplexity if rows else float("nan")
    for r in rows:
        pct = None if r.delta_ppl is None else 100 * r.delta_ppl / reference_ppl
        seconds = (f"{r.seconds:.2f}" if r.seconds < 10 else f"{r.seconds:.0f}") + (" (cached)" if r.cached else "")
        table.add_row(
            r.name,
            f"{r.format}/{r.recipe}",
            r.logits_path,
            f"{r.perplexity:.4f}",
            _num(r.delta_ppl, "+.4f"),
            _num(pct, "+.3f"),
            _num(r.kl_mean, ".3e"),
            _num(r.kl_p99, ".3e"),
            _num(r.top1_agreement, ".4f"),
            seconds,
            f"{r.tokens_per_second:,.0f}",
        )
    console.print(table)
    console.print(
        f"KL(reference ‖ candidate) in nats per token over the whole vocabulary, against the reference's "
        f"stored log-probs ({report.reference.precision.description}); the hf row's KL is that storage's "
        f"resolution. text sha256 {report.text.sha256[:16]}…, source: {report.text_source}"
    )


def print_choice(report: ChoiceReport, console: Console | None = None) -> None:
    console = console or make_console()
    results = report.results
    table = Table(title=f"multiple choice: {report.questions} questions, {report.scoring} scoring")
    table.add_column("subject")
    table.add_column("questions", justify="right")
    for r in results:
        table.add_column(r.name, justify="right")
    table.add_column("random", justify="right")
    subjects = list(results[0].subjects) if results else []
    for subject in subjects:
        total = results[0].subjects[subject].total
        table.add_row(
            subject, str(total), *[f"{r.subjects[subject].accuracy:.1%}" for r in results], f"{RANDOM_BASELINE:.0%}"
        )
    table.add_section()
    table.add_row(
        "[bold]overall[/]",
        str(report.questions),
        *[f"[bold]{r.accuracy:.1%}[/]" for r in results],
        f"{RANDOM_BASELINE:.0%}",
    )
    table.add_row("seconds", "", *[f"{r.seconds:.1f}" for r in results], "")
    console.print(table)
