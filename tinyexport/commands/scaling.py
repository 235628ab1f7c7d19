"""``tinyexport scaling``: power-law fits of cost vs parameters over bench results of several model sizes,
or (``--preset seed``) the whole study: the seed's four architectures + SmolLM2, converted, benched, fitted."""

from __future__ import annotations

from pathlib import Path

import click

from tinyexport.formats.recipes import RECIPES
from tinyexport.formats.registry import FORMATS


@click.command()
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--run", "run_ids", multiple=True, metavar="ID", help="A recorded bench run (repeatable).")
@click.option("--runs-since", default=None, metavar="SPAN|DATE", help="Every recorded bench run since then.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the fits as JSON.")
@click.option(
    "--preset",
    type=click.Choice(["seed"]),
    default=None,
    help="Run the study: the seed's Small/Medium/Large/XLarge Llama shapes (random weights, SmolLM2's "
    "49152-token vocabulary) and SmolLM2-135M, each converted and benched; fits, roofline, report in -o.",
)
@click.option(
    "--format", "formats", multiple=True, type=click.Choice(sorted(FORMATS)), help="Preset: repeatable [onnx]."
)
@click.option(
    "--recipe",
    "recipes",
    multiple=True,
    type=click.Choice(list(RECIPES)),
    help="Preset: repeatable [fp32, dynamic_int8].",
)
@click.option("--with-1b", is_flag=True, help="Preset: add the TinyLlama-1.1B shape (random weights).")
@click.option("--no-smollm2", is_flag=True, help="Preset: leave SmolLM2-135M out.")
@click.option("--cache-length", type=click.IntRange(min=16), default=256, show_default=True, help="Preset: KV cache.")
@click.option("--prompt-len", type=click.IntRange(min=1), default=64, show_default=True, help="Preset: bench prompt.")
@click.option("--new-tokens", type=click.IntRange(min=2), default=32, show_default=True, help="Preset: bench tokens.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Preset: bench runs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Preset: random-weight seed.")
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("out/scaling"),
    show_default=True,
    help="Preset: scaling.json, report.md/.html and plots here.",
)
@click.option(
    "--artefacts",
    "artefact_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Preset: where the exports go (kept; complete ones are reused) [default: OUT/artefacts].",
)
def scaling(
    inputs: tuple[Path, ...],
    run_ids: tuple[str, ...],
    runs_since: str | None,
    json_path: Path | None,
    preset: str | None,
    out_dir: Path,
    artefact_dir: Path | None,
    **study,
) -> None:
    """Fit cost = a · params^b per (format, recipe) over `bench --json` files and/or recorded bench runs of
    different model sizes: decode ms/token, size, peak RSS and prefill s/token; exponent b and R².
    With --preset seed: build, convert and bench the model ladder first (docs/sweep.md)."""
    from tinyexport.errors import UserError
    from tinyexport.paths import check_writable_file

    check_writable_file(json_path, "--json")
    if preset is not None:
        if inputs or run_ids or runs_since:
            raise UserError("--preset runs its own benches; drop the bench files, --run and --runs-since")
        _study(out_dir, artefact_dir or out_dir / "artefacts", json_path, **study)
        return
    _fit_documents(inputs, run_ids, runs_since, json_path)


def _fit_documents(inputs, run_ids, runs_since, json_path) -> None:
    from rich.table import Table

    from tinyexport.atomic import write_json_atomic
    from tinyexport.bench.markdown_report import load_document
    from tinyexport.console import make_console
    from tinyexport.errors import UserError
    from tinyexport.sweep.scaling import METRICS, fit_series, points_from_bench

    from .report import _records

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


def _study(
    out_dir: Path, artefact_dir: Path, json_path: Path | None, formats, recipes, with_1b, no_smollm2, seed, **settings
) -> None:
    import dataclasses

    from tinyexport.atomic import write_json_atomic
    from tinyexport.bench.markdown_report import write_report
    from tinyexport.console import make_console
    from tinyexport.errors import UserError
    from tinyexport.models.checkpoint import resolve_checkpoint
    from tinyexport.models.config import DEFAULT_CHECKPOINT
    from tinyexport.paths import cache_dir
    from tinyexport.sweep.study import SEED_SHAPES, StudyModel, StudySettings, run_study, seed_config
    from tinyexport.verify.suite import untrained_checkpoint

    formats, recipes = formats or ("onnx",), recipes or ("fp32", "dynamic_int8")
    if not any(f in RECIPES[r].formats for f in formats for r in recipes):
        raise UserError(f"no recipe of {list(recipes)} exists for format(s) {list(formats)}")
    status = make_console(stderr=True)
    cache = cache_dir()
    base = resolve_checkpoint(DEFAULT_CHECKPOINT, cache=cache)  # vocabulary, tokenizer, RoPE of SmolLM2
    models = []
    for name, shape in SEED_SHAPES.items():
        config = seed_config(base.config, *shape)
        ckpt = untrained_checkpoint(dataclasses.replace(base, name=name, config=config), seed, cache)
        models.append(StudyModel(name, ("--checkpoint", str(ckpt.directory)), config, f"random, seed {seed}"))
    if not no_smollm2:
        models.append(StudyModel("smollm2-135m", ("--checkpoint", DEFAULT_CHECKPOINT), base.config, "trained"))
    if with_1b:
        big = resolve_checkpoint("tinyllama-1.1b", cache=cache, random_weights=True, seed=seed)
        args = ("--checkpoint", "tinyllama-1.1b", "--random-weights", "--seed", str(seed))
        models.append(StudyModel("tinyllama-1.1b", args, big.config, f"random, seed {seed}"))
    doc = run_study(
        models,
        StudySettings(tuple(formats), tuple(recipes), **settings),
        out_dir,
        artefact_dir,
        lambda s: status.print(s, highlight=False),
    )
    write_json_atomic(out_dir / "scaling.json", doc)
    if json_path is not None:
        write_json_atomic(json_path, doc)
    targets = write_report([out_dir / "scaling.json"], out_dir, "tinyexport scaling study", html=True)
    for r in doc["fits"]:
        status.print(
            f"  {r['format']}/{r['recipe']} {r['label']}: exponent {r['exponent']:.3f}, R² {r['r2']:.4f} ({r['points']} sizes)",
            highlight=False,
        )
    click.echo(f"wrote {out_dir / 'scaling.json'}, {', '.join(map(str, targets))}")
