"""``tinyexport bundle``: add a LiteRT-LM ``model.litertlm`` to a TFLite artefact directory."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("artefact", type=click.Path(path_type=Path))
@click.option(
    "--stop-token",
    "stop_tokens",
    type=click.IntRange(min=0),
    multiple=True,
    help="Extra stop token id (repeatable); the model config's eos_token_id is always one.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Default sampler of the bundle; 0 = greedy (stored as top-p with k=1).",
)
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed stored in the bundle.")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Load the bundle in LiteRT-LM (when litert-lm-api is installed) and check it tokenizes like tokenizer.json.",
)
@click.option("--force", is_flag=True, help="Rebuild an existing model.litertlm.")
def bundle(
    artefact: Path,
    stop_tokens: tuple[int, ...],
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
    check: bool,
    force: bool,
) -> None:
    """Write ARTEFACT/model.litertlm: the .tflite, tokenizer.json, chat template, stop tokens and sampler
    defaults in one LiteRT-LM bundle, and list it (with its sha256) in the manifest.

    The .tflite is bundled unchanged (LiteRT-LM reads our prefill_N/decode signatures as they are);
    see docs/litertlm.md for the contract.
    """
    import time

    from tinyexport.converters.litertlm import SamplerDefaults, bundle_artefact
    from tinyexport.formats.litertlm_io import bundle_path

    start = time.perf_counter()
    sampler = SamplerDefaults(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    art = bundle_artefact(
        artefact, sampler=sampler, extra_stop_tokens=stop_tokens, force=force, check=_check_in_engine if check else None
    )
    path = bundle_path(art.path, art.manifest)
    assert path is not None
    entry = art.manifest["litertlm"]
    click.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s: "
        f"stop tokens {entry['stop_tokens']}, start token {entry['start_token']}, "
        f"chat template {'yes' if entry['chat_template'] else 'no'}, context {entry['max_num_tokens']}"
    )


def _check_in_engine(directory: Path, path: Path) -> None:
    """Load the bundle in LiteRT-LM and compare its tokenizer with ours on a probe text (before the
    bundle replaces the artefact, so a refused bundle leaves nothing behind)."""
    import importlib.util

    if importlib.util.find_spec("litert_lm") is None:
        click.echo("litert-lm-api is not installed: bundle not loaded (pip install 'tinyexport[litertlm]')", err=True)
        return
    from tinyexport.errors import UserError
    from tinyexport.runners.litertlm_runner import LiteRtLmEngine
    from tinyexport.tokenizer import Tokenizer

    probe = "Hello, world! The capital of France is Paris. 12345"
    ours = Tokenizer(directory).encode(probe).tolist()
    with LiteRtLmEngine(path, threads=1) as engine:
        theirs = engine.tokenize(probe)
    if theirs != ours:
        raise UserError(
            f"LiteRT-LM tokenizes {probe!r} as {theirs[:12]} but tokenizer.json gives {ours[:12]}: "
            "its HF tokenizer does not support this tokenizer.json (check its normalizer/pre_tokenizer)"
        )
    click.echo(f"LiteRT-LM loaded {path.name}: tokenizer agrees with tokenizer.json")
