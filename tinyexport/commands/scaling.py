"""``tinyexport scaling``: power-law fits of cost vs parameters over bench results of several model sizes."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--run", "run_ids", multiple=True, metavar="ID", help="A recorded bench run (repeatable).")
@click.option("--runs-since", default=None, metavar="SPAN|DATE", help="Every recorded bench run since then.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the fits as JSON.")
def scaling(inputs: tuple[Path, ...], run_ids: tuple[str, ...], runs_since: str | None, json_path: Path | None) -> None:
    """Fit cost = a · params^b per (format, recipe) over `bench --json` files and/or recorded bench runs of
    different model sizes: decode ms/token, size, peak RSS and prefill s/token; exponent b and R²."""
    from rich.table import Table

    from tinyexport.atomic import write_json_atomic
    from tinyexport.bench.markdown_report import load_document
    from tinyexport.console import make_console
    from tinyexport.errors import UserError
    from tinyexport.paths import check_writable_file
    from tinyexport.sweep.scaling import METRICS, fit_series, points_from_bench

    from .report import _records

    check_writable_file(json_path, "--json")
    docs = [doc for kind, doc in (load_document(p) for p in inputs) if kind == "bench"]
    docs += [doc for _, doc in _records(run_ids, runs_since) if doc.get("kind") == "tinyexport-bench"]
    rows = fit_series(points_from_bench(docs))
    if not rows:
        raise UserError("no (format, recipe) was benched at two or more model sizes; bench more sizes first")
    table = Table(title=f"cost = a · params^b over {len(docs)} bench document(s)")
    for col in ("format/recipe", "metric", "b (exponent)", "a", "R²", "points"):
        table.add_column(col, justify="left" if col in ("format/recipe", "metric") else "right")
    for r in rows:
        table.add_row(
            f"{r['format']}/{r['recipe']}",
            METRICS[r["metric"]],
            f"{r['exponent']:.3f}",
            f"{r['coefficient']:.3g}",
            f"{r['r2']:.4f}",
            str(r["points"]),
        )
    make_console().print(table)
    if json_path is not None:
        write_json_atomic(json_path, {"fits": rows})
