"""``tinyexport report``: bench/eval/suite JSON files and recorded runs -> markdown (+ HTML) with plots."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Directory for report.md (and report.html) and the PNG plots (created; files are replaced one by one).",
)
@click.option("--title", default="tinyexport report", show_default=True)
@click.option("--html", is_flag=True, help="Also write report.html: one self-contained page, plots embedded.")
@click.option("--run", "run_ids", multiple=True, metavar="ID", help="A recorded bench/eval run (repeatable).")
@click.option(
    "--runs-since",
    default=None,
    metavar="SPAN|DATE",
    help="Every recorded bench/eval run since then (7d, 12h, 2026-12-01), from the run store.",
)
def report(
    inputs: tuple[Path, ...], output: Path, title: str, html: bool, run_ids: tuple[str, ...], runs_since: str | None
) -> None:
    """Turn `bench --json`, `eval --json` (perplexity, suite) files and recorded runs into OUTPUT/report.md
    + PNGs, and with --html OUTPUT/report.html.

    Plots: decode tok/s (with its bandwidth bound), TTFT, size and decode speed vs size per candidate,
    decode tok/s vs cache fill, and quality (perplexity, KL) vs size, joining eval candidates with
    bench sizes by name; tables for the task suite's baselines and the machines measured on.
    """
    from tinyexport.bench.markdown_report import write_report
    from tinyexport.errors import UserError

    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; pass a directory")
    if not inputs and not run_ids and not runs_since:
        raise UserError("nothing to report; pass JSON files, --run ID or --runs-since SPAN")
    records = _records(run_ids, runs_since)
    targets = write_report(list(inputs), output, title, records=records, html=html)
    click.echo(f"wrote {', '.join(map(str, targets))} and {len(list(output.glob('*.png')))} plot(s) in {output}")


def _records(run_ids: tuple[str, ...], since: str | None) -> list[tuple[str, dict]]:
    """(origin, result) of the chosen runs; an explicit id without a reportable result is refused."""
    if not run_ids and not since:
        return []
    from tinyexport.errors import UserError
    from tinyexport.records.query import since_to_iso
    from tinyexport.records.store import default_store

    store = default_store()
    out = []
    for run_id in run_ids:
        row = store.get(run_id)
        if not row.record.get("result"):
            raise UserError(f"run {row.id} ({row.command}) recorded no result to report")
        out.append((f"run {row.id} ({row.command})", row.record["result"]))
    if since:
        try:
            since_iso = since_to_iso(since)
        except ValueError as err:
            raise UserError(str(err)) from None
        for row in store.runs(since=since_iso):
            result = row.record.get("result")
            if row.command.split(" ")[0] in ("bench", "eval") and row.exit_status == 0 and _reportable(result):
                out.append((f"run {row.id} ({row.command})", result))
    return out


def _reportable(result) -> bool:
    from tinyexport.bench.markdown_report import ReportInputError, classify

    try:
        classify(result, "run")
    except ReportInputError:
        return False
    return True
