"""``tinyexport runs``: read the run store (every recorded convert, verify, eval and bench)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group("runs")
def runs() -> None:
    """The run store: one immutable record per convert/verify/eval/bench run (<cache>/runs.sqlite).

    \b
      tinyexport runs list --command bench --since 7d
      tinyexport runs show 3f2a9c
      tinyexport runs compare 3f2a9c 81be07
      tinyexport runs export --csv --command bench -o bench.csv   # logs/bench.csv's columns
    """


def _filters(func):
    func = click.option("--since", default=None, help="ISO date/time (UTC) or a span back from now: 30m, 12h, 7d.")(
        func
    )
    func = click.option("--model", default=None, help="Only runs whose checkpoint name contains this.")(func)
    func = click.option("--command", "command", default=None, help="Only this command (convert, verify, eval, bench).")(
        func
    )
    return func


def _select(command: str | None, model: str | None, since: str | None):
    from tinyexport.errors import UserError
    from tinyexport.records.query import since_to_iso
    from tinyexport.records.store import default_store

    try:
        since_iso = since_to_iso(since) if since else None
    except ValueError as err:
        raise UserError(str(err)) from None
    return default_store().runs(command=command, model=model, since=since_iso)


@runs.command("list")
@_filters
def list_runs(command: str | None, model: str | None, since: str | None) -> None:
    """One line per recorded run, oldest first."""
    from rich.table import Table

    from tinyexport.console import make_console
    from tinyexport.records.query import headline, seconds

    rows = _select(command, model, since)
    table = Table(title=f"{len(rows)} run(s)")
    for col in ("id", "started (UTC)", "command", "model", "exit", "s", "result"):
        table.add_column(col, overflow="fold")
    for r in rows:
        secs = seconds(r)
        table.add_row(
            r.id,
            r.started[:19].replace("T", " "),
            r.command,
            r.model or "–",
            "–" if r.exit_status is None else str(r.exit_status),
            f"{secs:.1f}" if secs is not None else "–",
            headline(r),
        )
    make_console().print(table)


@runs.command("show")
@click.argument("run_id")
def show(run_id: str) -> None:
    """The full record of RUN_ID (an id or a unique prefix of at least 4 characters), as JSON."""
    import json

    from tinyexport.records.store import default_store

    click.echo(json.dumps(default_store().get(run_id).record, indent=2, sort_keys=True))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--all", "all_keys", is_flag=True, help="Also show the metrics that are equal in every run.")
def compare_runs(run_ids: tuple[str, ...], all_keys: bool) -> None:
    """RUN_IDS side by side: identity, then every result metric that differs, with deltas to the first."""
    from rich.table import Table

    from tinyexport.console import make_console
    from tinyexport.errors import UserError
    from tinyexport.records.query import compare
    from tinyexport.records.store import default_store

    if len(run_ids) < 2:
        raise UserError("runs compare needs at least two run ids")
    store = default_store()
    result = compare([store.get(i) for i in run_ids], all_keys=all_keys)
    table = Table(title=f"runs compare (deltas vs {result.ids[0]})")
    table.add_column("field", overflow="fold")
    for run_id in result.ids:
        table.add_column(run_id, overflow="fold")
    for key, cells in result.rows:
        table.add_row(key, *cells)
    make_console().print(table)


@runs.command("export")
@_filters
@click.option("--csv", "as_csv", is_flag=True, help="CSV (with --command bench: logs/bench.csv's columns).")
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of full records.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, help="File [default: stdout].")
def export(
    command: str | None, model: str | None, since: str | None, as_csv: bool, as_json: bool, output: Path | None
) -> None:
    """The selected records as CSV or JSON. ``--csv --command bench`` writes one row per benchmarked
    candidate with exactly the columns of ``logs/bench.csv``."""
    import csv
    import io
    import json

    from tinyexport.atomic import write_text_atomic
    from tinyexport.errors import UserError
    from tinyexport.paths import check_writable_file

    if as_csv == as_json:
        raise UserError("runs export needs exactly one of --csv or --json")
    check_writable_file(output, "--output")
    rows = _select(command, model, since)
    if as_json:
        text = json.dumps([r.record for r in rows], indent=2, sort_keys=True) + "\n"
    else:
        if command == "bench":
            from tinyexport.bench.csvlog import CSV_COLUMNS, csv_rows

            columns, records = (
                CSV_COLUMNS,
                [row for r in rows if r.record.get("result") for row in csv_rows(r.record["result"])],
            )
        else:
            from tinyexport.records.query import EXPORT_COLUMNS, export_rows

            columns, records = EXPORT_COLUMNS, export_rows(rows)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
        text = buffer.getvalue()
    if output is None:
        click.echo(text, nl=False)
    else:
        write_text_atomic(output, text)
        click.echo(f"wrote {len(rows)} run(s) to {output}", err=True)
