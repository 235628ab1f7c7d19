"""Click options shared by commands: the one way every command names a model. Light imports only."""

from __future__ import annotations

from collections.abc import Callable

import click

from tinyexport.models.config import DEFAULT_CHECKPOINT, PRESETS


def checkpoint_options(func: Callable | None = None, *, from_artefacts: bool = False) -> Callable:
    """``--checkpoint / --random-weights / --seed``.

    ``from_artefacts``: commands that also take ARTEFACTS default to the checkpoint their manifests name
    (``--checkpoint`` then defaults to None and the resolver picks).
    """

    def decorate(f: Callable) -> Callable:
        f = click.option(
            "--seed",
            type=int,
            default=0,
            show_default=True,
            help="Seed for --random-weights (and for random prompt ids when there is no tokenizer).",
        )(f)
        f = click.option(
            "--random-weights",
            is_flag=True,
            help=f"Deterministic random weights of a preset's shape ({', '.join(PRESETS)}).",
        )(f)
        if from_artefacts:
            return click.option(
                "--checkpoint",
                default=None,
                metavar="PRESET|DIR|FILE.gguf",
                help="Reference checkpoint [default: the one in the artefacts' manifests, else "
                f"{DEFAULT_CHECKPOINT}]: preset name, HF model directory or GGUF file.",
            )(f)
        return click.option(
            "--checkpoint",
            default=DEFAULT_CHECKPOINT,
            show_default=True,
            metavar="PRESET|DIR|FILE.gguf",
            help="Preset name, HF model directory (config.json + safetensors) or GGUF file.",
        )(f)

    return decorate(func) if func is not None else decorate


def json_option(func: Callable) -> Callable:
    from pathlib import Path

    return click.option(
        "--json",
        "json_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Also write the report as JSON (atomically).",
    )(func)


def transform_options(func: Callable) -> Callable:
    """``--transform NAME=VALUE`` (repeatable, applied in order) and ``--kv-cache``: optimisation
    transforms of the checkpoint (``tinyexport.models.transforms``)."""
    from tinyexport.models.config import KV_CACHE_DTYPES

    func = click.option(
        "--kv-cache",
        type=click.Choice(KV_CACHE_DTYPES),
        default=None,
        help="KV-cache storage: int8 = int8 values with a per-token, per-head scale (same as --transform kv-cache=int8).",
    )(func)
    return click.option(
        "--transform",
        "transforms",
        multiple=True,
        metavar="NAME=VALUE",
        help="Optimisation transform of the checkpoint, repeatable, applied in order: "
        "prune-heads=R[:activation|o_proj][:global][:groups] (remove a fraction R of the query heads ranked by their "
        "output on calibration text, default, or by their o_proj weight norm: within "
        "their KV groups, or :groups whole KV groups with their K/V heads; :global ranks raw scores across "
        "layers), kv-cache=int8, mixed-precision=bf16 (torch only), truncate-layers=N (keep the first N "
        "layers: an early-exit self-draft).",
    )(func)


def parse_transform_options(transforms: tuple[str, ...], kv_cache: str | None) -> tuple:
    """The options' values as ``Transform``s; a malformed one is a UserError (one line, exit 2)."""
    from tinyexport.models.transforms import parse_transforms

    return parse_transforms(transforms, kv_cache)


def draft_min_prob_option(func):
    """``--draft-min-prob P`` of speculative decoding (generate, bench)."""
    return click.option(
        "--draft-min-prob",
        "draft_min_prob",
        type=click.FloatRange(0, 1, max_open=True),
        default=0.0,
        show_default=True,
        metavar="P",
        help="With --draft: a round stops after a draft token the draft gave less than probability P, so -k "
        "is the most per round (0: always k). Changes speed only, never the output (docs/speculative.md).",
    )(func)
