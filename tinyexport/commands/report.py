"""``tinyexport report``: bench and eval JSON -> markdown report with PNG plots."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Directory for report.md and the PNG plots (created; files in it are replaced one by one).",
)
@click.option("--title", default="tinyexport report", show_default=True)
def report(inputs: tuple[Path, ...], output: Path, title: str) -> None:
    """Turn `tinyexport bench --json` and `tinyexport eval --json` files into OUTPUT/report.md + PNGs.

    Plots: decode tok/s (with its bandwidth bound), TTFT and size per candidate, decode tok/s vs cache
    fill, and quality (perplexity, KL) vs size, joining eval candidates with bench sizes by name.
    """
    from tinyexport.bench.markdown_report import write_report
    from tinyexport.errors import UserError

    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; pass a directory")
    target = write_report(list(inputs), output, title)
    click.echo(f"wrote {target} and {len(list(output.glob('*.png')))} plot(s) in {output}")
