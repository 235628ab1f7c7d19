"""``tinyexport sweep``: a matrix of exports, each converted, verified, evaluated and benchmarked,
recorded, gated on quality and ranked (Pareto front of size / decode speed / KL, one recommendation)."""

from __future__ import annotations

from pathlib import Path

import click

from tinyexport.formats.recipes import RECIPES
from tinyexport.formats.registry import FORMATS

FLAG_TO_FIELD = {
    "checkpoints": "checkpoints",
    "formats": "formats",
    "recipes": "recipes",
    "cache_lengths": "cache_lengths",
    "transforms": "transforms",
    "random_weights": "random_weights",
    "seed": "seed",
    "text": "text",
    "max_tokens": "max_tokens",
    "window": "window",
    "prompt_len": "prompt_len",
    "new_tokens": "new_tokens",
    "repeats": "repeats",
    "verify": "verify",
    "max_kl": "max_kl",
}


@click.command()
@click.option(
    "--matrix", "matrix_file", type=click.Path(path_type=Path), default=None, help="TOML matrix file (docs/sweep.md)."
)
@click.option(
    "--checkpoint",
    "checkpoints",
    multiple=True,
    metavar="PRESET|DIR|FILE.gguf",
    help="Repeatable [default: smollm2-135m].",
)
@click.option("--random-weights", is_flag=True, help="Random weights of the preset shapes (--seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--format", "formats", multiple=True, type=click.Choice(sorted(FORMATS)), help="Repeatable [default: onnx]."
)
@click.option(
    "--recipe",
    "recipes",
    multiple=True,
    type=click.Choice(list(RECIPES)),
    help="Repeatable [default: fp32, dynamic_int8].",
)
@click.option(
    "--cache-length",
    "cache_lengths",
    multiple=True,
    type=click.IntRange(min=1),
    help="KV-cache lengths, repeatable [default: 1024].",
)
@click.option(
    "--transform",
    "transforms",
    multiple=True,
    metavar="SET",
    help="A transform axis value, repeatable: prune-heads=0.25, kv-cache=int8, several joined by '+', "
    "'none' for none [default: none].",
)
@click.option("--text", type=click.Path(path_type=Path), default=None, help="Eval text [default: the eval corpus].")
@click.option("--max-tokens", type=click.IntRange(min=2), default=2048, show_default=True, help="Eval tokens per cell.")
@click.option(
    "--window", type=click.IntRange(min=2), default=512, show_default=True, help="Eval window (stride: half)."
)
@click.option("--prompt-len", type=click.IntRange(min=1), default=64, show_default=True, help="Bench prompt tokens.")
@click.option("--new-tokens", type=click.IntRange(min=2), default=32, show_default=True, help="Bench new tokens.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Bench timed runs.")
@click.option(
    "--verify/--no-verify", default=True, show_default=True, help="Run `verify` on each cell (informational)."
)
@click.option("--max-kl", type=float, default=None, help="Gate: reject cells whose mean KL(ref‖cell) exceeds this.")
@click.option(
    "--max-dppl",
    default=None,
    metavar="PCT",
    help="Gate: reject cells whose perplexity exceeds the reference's by more than PCT, e.g. 2%.",
)
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=Path("out/sweep"), show_default=True)
@click.option(
    "--jobs", type=click.IntRange(min=1), default=None, help="Cells at once [default: half the cores, at least 1]."
)
@click.option(
    "--no-run",
    is_flag=True,
    help="Run nothing: rank the cells already recorded (e.g. under another gate); the rest are listed pending.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: a process pool here; ray: each cell a Ray task (extra `ray`).",
)
@click.option(
    "--address",
    default=None,
    metavar="HOST:PORT|ray://HOST:PORT|auto",
    help="Ray: an existing cluster [default: start a local Ray instance with --jobs CPUs].",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Ray: seconds to wait for --address to answer.",
)
@click.pass_context
def sweep(
    ctx: click.Context,
    matrix_file: Path | None,
    out_dir: Path,
    jobs: int | None,
    max_dppl: str | None,
    executor: str,
    address: str | None,
    connect_timeout: float,
    no_run: bool,
    **flags,
) -> None:
    """Convert, verify, evaluate (perplexity, KL) and bench every cell of checkpoints × formats × recipes ×
    cache lengths × transforms; record each cell in the run store; skip cells already recorded (resume);
    reject cells over the gate with the reason; rank the rest (Pareto front) and recommend one."""
    import os

    from click.core import ParameterSource

    from tinyexport.console import make_console
    from tinyexport.sweep.gate import Gate
    from tinyexport.sweep.matrix import build_matrix, load_matrix, parse_percent

    given = {
        FLAG_TO_FIELD[name]: (tuple(value) if isinstance(value, tuple) else value)
        for name, value in flags.items()
        if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
    }
    if "text" in given:
        given["text"] = str(given["text"])
    if max_dppl is not None:
        given["max_dppl"] = parse_percent(max_dppl)
    matrix = build_matrix(load_matrix(matrix_file) if matrix_file else {}, given)
    if matrix.text is not None and not Path(matrix.text).is_file():
        from tinyexport.errors import UserError

        raise UserError(f"--text {matrix.text} does not exist; pass a UTF-8 text file")
    from tinyexport.errors import UserError

    if address is not None and executor != "ray":
        raise UserError("--address is for --executor ray; add --executor ray or drop --address")
    if executor == "ray":
        from tinyexport.sweep.ray_executor import check_address, import_ray

        import_ray()  # refuse before any work when the extra is missing or the cluster cannot be reached
        if address is not None:
            check_address(address, connect_timeout)
    gate = Gate(matrix.max_kl, matrix.max_dppl)
    cells = matrix.cells()
    workers = jobs or max(1, (os.cpu_count() or 2) // 2)
    for fmt, recipe in matrix.skipped():
        make_console(stderr=True).print(
            f"sweep: {fmt} has no recipe {recipe}; those cells are left out", highlight=False
        )
    _run_and_rank(cells, out_dir, workers, gate, executor, address, connect_timeout, no_run)


def _run_and_rank(
    cells,
    out_dir: Path,
    jobs: int,
    gate,
    executor: str = "local",
    address=None,
    connect_timeout: float = 60.0,
    no_run: bool = False,
) -> None:
    import sys
    import threading

    from tinyexport.atomic import write_json_atomic
    from tinyexport.console import make_console
    from tinyexport.records.capture import build_record, utc_now
    from tinyexport.records.sink import RunSink
    from tinyexport.records.store import StoreError, default_store
    from tinyexport.sweep.executor import run_cells
    from tinyexport.sweep.gate import rank

    store = default_store()
    try:
        rows = store.runs(command="sweep cell")
    except StoreError as err:
        if "no run store" not in str(err):
            raise
        rows = []
    done = {
        r.record["result"]["key"]: r.record["result"]
        for r in rows
        if (r.record.get("result") or {}).get("status") == "done"
    }
    todo = [] if no_run else [c for c in cells if c.key not in done]
    status = make_console(stderr=True)
    left = len(cells) - len(done.keys() & {c.key for c in cells})
    status.print(
        f"sweep: {len(cells)} cell(s), {len(cells) - left} already recorded (skipped), "
        + (f"{left} not run (--no-run)" if no_run else f"{len(todo)} to run"),
        highlight=False,
    )

    results = dict(done)
    lock = threading.Lock()

    def write_ranking():
        """OUT/sweep.json from every cell finished so far (the rest ``pending``): rewritten as each cell
        finishes, so an interrupted sweep leaves the ranking of what it did."""
        outcomes = [results[c.key] for c in cells if c.key in results]
        ranked, best = rank(
            [(o["cell"], o.get("metrics") if o["status"] == "done" else None, o.get("error", "")) for o in outcomes],
            gate,
        )
        pending = [c.name for c in cells if c.key not in results]
        write_json_atomic(
            out_dir / "sweep.json",
            {
                "kind": "tinyexport-sweep",
                "gate": {"max_kl": gate.max_kl, "max_dppl_pct": gate.max_dppl_pct},
                "cells": [
                    {"name": r.name, "status": r.status, "reason": r.reason, "metrics": dict(r.metrics)} for r in ranked
                ]
                + [{"name": n, "status": "pending", "reason": "not run yet", "metrics": {}} for n in pending],
                "recommendation": best.name if best else None,
            },
        )
        return ranked, best

    def record(cell, result) -> None:
        started = utc_now()
        sink = RunSink(command="sweep cell", result=result)
        if Path(result["artefact"]).is_dir():
            sink.artefacts.append(Path(result["artefact"]))
        store.append(
            build_record(sink, ["sweep", *sys.argv[2:]], started, 0 if result["status"] == "done" else 1, store)
        )
        outcome = (
            "done" if result["status"] == "done" else f"failed at {result.get('failed_stage')}: {result.get('error')}"
        )
        status.print(f"  {cell.name}: {outcome}", highlight=False)
        with lock:
            results[cell.key] = result
            write_ranking()

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_ranking()  # the recorded cells ranked before any work (a re-run shows where a sweep stands)
    estimate = lambda cell: _convert_estimate_mb(store, cell, rows)  # noqa: E731
    if executor == "ray" and todo:
        from tinyexport.sweep.ray_executor import run_cells_ray

        run_cells_ray(todo, out_dir, jobs, estimate, record, address, connect_timeout, checked=True)
    else:
        run_cells(todo, out_dir, jobs, estimate, record)
    with lock:
        ranked, best = write_ranking()
    _print_ranked(make_console(), ranked, best, gate)


def _convert_estimate_mb(store, cell, rows) -> float:
    """Peak RSS of the largest recorded conversion of the same checkpoint and format (sweep cells and
    plain `convert` runs), else 2 GiB."""
    from tinyexport.records.store import StoreError

    peaks = [
        r.record["result"].get("metrics", {}).get("convert_peak_rss_mb")
        for r in rows
        if (r.record.get("result") or {}).get("spec", {}).get("checkpoint") == cell.checkpoint
        and r.record["result"]["spec"].get("format") == cell.format
    ]
    try:
        converts = store.runs(command="convert")
    except StoreError:
        converts = []
    for r in converts:
        manifest = r.record.get("result") or {}
        if manifest.get("format") == cell.format and (manifest.get("source") or {}).get("spec") == cell.checkpoint:
            peaks.append((manifest.get("conversion") or {}).get("peak_rss_mb"))
    peaks = [p for p in peaks if p]
    return max(peaks) if peaks else 2048.0


def _print_ranked(console, ranked, best, gate) -> None:
    from rich.table import Table

    def num(value, spec):
        return "–" if value is None else format(value, spec)

    title = f"sweep: gate KL ≤ {gate.max_kl if gate.max_kl is not None else '∞'}, Δppl ≤ " + (
        f"{gate.max_dppl_pct:g}%" if gate.max_dppl_pct is not None else "∞"
    )
    table = Table(title=title)
    for col in (
        "#",
        "cell",
        "status",
        "size MB",
        "decode tok/s",
        "prefill tok/s",
        "ppl",
        "Δppl %",
        "KL",
        "verify",
        "reason",
    ):
        table.add_column(col, justify="right" if col not in ("cell", "status", "reason") else "left")
    for i, r in enumerate(ranked, 1):
        m = r.metrics
        verify = {True: "pass", False: "fail", None: "–"}[m.get("verify_passed")]
        table.add_row(
            str(i),
            r.name,
            r.status,
            num(m.get("size_mb"), ".2f"),
            num(m.get("decode_tok_s"), ".1f"),
            num(m.get("prefill_tok_s"), ".0f"),
            num(m.get("perplexity"), ".3f"),
            num(m.get("dppl_pct"), "+.2f"),
            num(m.get("kl_mean"), ".3g"),
            verify,
            r.reason,
        )
    console.print(table)
    if best is None:
        console.print("recommendation: none — no cell passes the gate", highlight=False)
    else:
        m = best.metrics
        console.print(
            f"recommendation: {best.name} — {m['size_mb']:.2f} MB, {m['decode_tok_s']:.1f} decode tok/s, "
            f"KL {m['kl_mean']:.3g}, Δppl {m['dppl_pct']:+.2f}% (the smallest passing cell on the Pareto front "
            "of size / decode speed / KL)",
            highlight=False,
        )
