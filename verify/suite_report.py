"""The rich table of ``tinyexport eval suite``: one row per task, the three baseline tiers, then every
candidate with its difference to the trained reference."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tinyexport.console import make_console

from .suite import TRAINED, UNTRAINED, SuiteReport


def print_suite(report: SuiteReport, console: Console | None = None) -> None:
    console = console or make_console()
    table = Table(title=f"task suite: {report.checkpoint} (accuracy)")
    for col in ("task", "items", "random"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for name in report.models:
        label = {UNTRAINED: "untrained", TRAINED: "trained (hf)"}.get(name, name)
        table.add_column(label, justify="right")
    for t in report.tasks:
        cells = []
        for name in report.models:
            acc = t.accuracy(name)
            if name in (UNTRAINED, TRAINED):
                cells.append(f"{acc:.1%}")
            else:
                cells.append(f"{acc:.1%} ({100 * (acc - t.accuracy(TRAINED)):+.1f})")
        table.add_row(t.task, str(t.items), f"{t.random_baseline:.1%}", *cells)
    console.print(table)
    console.print(
        "random: theoretical (1/options; ~0 for last-word prediction); untrained: random weights of the same "
        "shape; candidates: (Δ points vs trained)",
        highlight=False,
    )
