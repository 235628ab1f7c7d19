"""``tinyexport convert``: checkpoint -> verified-ready artefact directory (TFLite or ONNX)."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from tinyexport.formats.recipes import BARE_QUANTIZE, RECIPES
from tinyexport.formats.registry import FORMATS
from tinyexport.models.config import ATTENTION_IMPLS
from tinyexport.records.sink import hand_result

from .options import checkpoint_options, parse_transform_options, transform_options


@click.command()
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), required=True, help="Export format.")
@click.option(
    "--quantize",
    "recipe",
    type=click.Choice(list(RECIPES)),
    is_flag=False,
    flag_value=BARE_QUANTIZE,
    default="fp32",
    show_default=True,
    help=f"Quantization recipe; a bare --quantize means {BARE_QUANTIZE}.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Artefact directory [default: out/<model>_<recipe>_... derived from the options].",
)
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@checkpoint_options
@transform_options
@click.option(
    "--prefill-seq-lens",
    default="8,64,128",
    show_default=True,
    help="Comma-separated prefill lengths (TFLite: one prefill_N signature each).",
)
@click.option(
    "--kv-cache-max-len",
    type=int,
    default=1024,
    show_default=True,
    help="KV-cache capacity in tokens (TFLite: fixed cache length).",
)
@click.option(
    "--decode-spans",
    default="auto",
    show_default=True,
    help="TFLite: extra decode signatures attending only to the first W cache slots, weights "
    "shared (e.g. 256,512; 'auto': 256, 512, ... below the cache length, none for fp16 and "
    "weight_only_int8; 'none': whole-cache signatures only). See docs/performance.md.",
)
@click.option(
    "--prefill-spans/--no-prefill-spans",
    default=False,
    show_default=True,
    help="TFLite: also a prefill signature per span and prefill length (faster short prompts in a long "
    "cache; each adds conversion time and ~2% of file size).",
)
@click.option("--attention", type=click.Choice(ATTENTION_IMPLS), default="standard", show_default=True)
@click.option("--flash-block-size", type=int, default=128, show_default=True)
@click.option(
    "--prefill-logits",
    type=click.Choice(["last", "all"]),
    default="last",
    show_default=True,
    help="Prefill returns the last position's logits (fast) or every position's (for verification).",
)
@click.option("--opset", type=int, default=None, help="ONNX opset of the graph [default: 21]; ONNX only.")
@click.option(
    "--max-memory",
    default=None,
    metavar="SIZE",
    envvar="TINYEXPORT_MAX_MEMORY",
    help="Memory the conversion may use, in MiB or with a unit (500M, 8G) [default: MemAvailable from "
    "/proc/meminfo; env TINYEXPORT_MAX_MEMORY].",
)
@click.option(
    "--force-memory",
    is_flag=True,
    help="Convert even when the predicted peak memory is above what is available.",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Show the converters' own progress and native logs (held back by default; shown on a crash).",
)
def convert(
    fmt: str,
    recipe: str,
    output: Path | None,
    force: bool,
    checkpoint: str,
    random_weights: bool,
    seed: int,
    transforms: tuple[str, ...],
    kv_cache: str | None,
    prefill_seq_lens: str,
    kv_cache_max_len: int,
    decode_spans: str,
    prefill_spans: bool,
    attention: str,
    flash_block_size: int,
    prefill_logits: str,
    opset: int | None,
    max_memory: str | None,
    force_memory: bool,
    verbose: bool,
) -> None:
    """Export a checkpoint to an artefact directory: model file(s), tokenizer files, manifest.json.

    The directory is built in a temporary sibling and renamed into place when complete, so an
    interrupted conversion never leaves a partial artefact behind.
    """
    from tinyexport.converters.export_config import ExportConfig, parse_seq_lens, parse_spans
    from tinyexport.errors import UserError

    try:
        export = ExportConfig(
            format=fmt,
            recipe=recipe,
            prefill_seq_lens=parse_seq_lens(prefill_seq_lens),
            kv_cache_max_len=kv_cache_max_len,
            attention=attention,
            flash_block_size=flash_block_size,
            prefill_logits=prefill_logits,
            opset=opset,
            decode_spans=parse_spans(decode_spans, kv_cache_max_len, fmt, recipe),
            prefill_spans=prefill_spans,
        )
    except ValueError as err:
        raise UserError(str(err)) from None
    planned = parse_transform_options(transforms, kv_cache)
    from tinyexport.models.transforms import check_carried

    check_carried(planned, fmt, FORMATS[fmt].transforms)  # before any weights load
    from tinyexport.resolve import config_before_loading, open_checkpoint

    early = config_before_loading(checkpoint, random_weights)  # a preset's or a directory's shape: no weights touched
    if early is not None:  # refuse before materialising gigabytes into the cache
        check_memory(checkpoint, early, export, max_memory, force_memory)
    ckpt = open_checkpoint(checkpoint, random_weights, seed, planned)
    if kv_cache_max_len > ckpt.config.max_position_embeddings:
        raise UserError(
            f"--kv-cache-max-len {kv_cache_max_len} exceeds the model's max_position_embeddings "
            f"({ckpt.config.max_position_embeddings}); lower it"
        )
    target = output or default_output(
        ckpt.directory.name if random_weights else checkpoint,
        export,
        random_weights=random_weights,
        seed=seed,
        transforms=planned,
    )
    if target.exists() and not force:
        raise UserError(f"output {target} already exists; pass --force to replace it or -o another directory")
    check_output_room(ckpt, export, target)
    predicted = check_memory(ckpt.name, ckpt.config, export, max_memory, force_memory)

    from tinyexport.console import make_console
    from tinyexport.converters.pipeline import export_artefact
    from tinyexport.stages import StageReporter

    console = make_console()
    console.print(f"converting [bold]{ckpt.name}[/] -> {fmt} / {recipe} ({target})")
    with converter_output(verbose), StageReporter(console) as stages:
        manifest = export_artefact(
            ckpt,
            export,
            target,
            replace=force,
            source_ref={"spec": checkpoint, "random_weights": random_weights, "seed": seed},
            predicted_peak_rss_mb=predicted,
            progress=stages.stage,
        )
    hand_result(manifest, checkpoint=ckpt, artefacts=[target])
    conv = manifest.get("conversion", {})
    size_mb = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
    console.print(
        f"wrote {target} ({size_mb:.1f} MB) in {conv.get('seconds', 0):.1f} s, "
        f"peak RSS {conv.get('peak_rss_mb', 0):,.0f} MiB"
        + (f" (predicted {predicted:,.0f})" if predicted is not None else "")
    )


def check_output_room(ckpt, export, target: Path) -> None:
    """Before loading anything: the output's directory must take new entries and hold the artefact."""
    from tinyexport.artefact import TOKENIZER_FILES
    from tinyexport.faults import check_file_size_limit, check_free_space, check_writable_dir
    from tinyexport.formats.budget import artefact_disk_bytes, largest_file_bytes

    check_writable_dir(target.parent, "the artefact", "-o")
    tokenizer = [ckpt.directory / name for name in TOKENIZER_FILES]
    extra = sum(p.stat().st_size for p in tokenizer if p.is_file())
    params = ckpt.config.num_parameters()
    what = f"the {export.format}/{export.recipe} artefact of {ckpt.name}"
    check_free_space(target.parent, artefact_disk_bytes(export.format, export.recipe, params) + extra, what, "-o")
    check_file_size_limit(largest_file_bytes(export.format, export.recipe, params), what)


def check_memory(name: str, config, export, max_memory: str | None, force: bool) -> float | None:
    """Refuse (one line, exit 1) a conversion predicted to peak above the memory available; return the
    prediction in MiB (None for a format/recipe never measured)."""
    from tinyexport.errors import OutOfMemoryError, UserError
    from tinyexport.formats.budget import predicted_peak_rss_mb
    from tinyexport.resources import available_memory_mb, parse_memory_mb

    predicted = predicted_peak_rss_mb(export.format, export.recipe, config.num_parameters())
    if max_memory is not None:
        try:
            available, source = parse_memory_mb(max_memory), "--max-memory / TINYEXPORT_MAX_MEMORY"
        except ValueError:
            raise UserError(
                f"--max-memory (or TINYEXPORT_MAX_MEMORY) must be a size such as 1500, 500M or 8G, got {max_memory!r}"
            ) from None
    else:
        available, source = available_memory_mb(), "MemAvailable"
    if predicted is not None and predicted > available and not force:
        raise OutOfMemoryError(
            f"converting {name} to {export.format}/{export.recipe} is predicted to peak at {predicted:,.0f} MiB "
            f"RSS but only {available:,.0f} MiB is available ({source}); free {predicted - available:,.0f} MiB, "
            "pick a smaller recipe, or pass --force-memory to try anyway"
        )
    return predicted


LITERT_PROGRESS_ENV = "LITERT_TORCH_SHOW_PROGRESS"  # litert-torch's documented switch for its progress lines


@contextlib.contextmanager
def converter_output(verbose: bool) -> Iterator[None]:
    """Hold back what the converters print while they run: litert-torch's step-by-step progress (it
    honours ``LITERT_TORCH_SHOW_PROGRESS``, which a user may set), torch's FutureWarnings, and the
    MLIR/absl lines native code writes to fd 2. Kept and printed if the conversion crashes."""
    if verbose:
        yield
        return
    from tinyexport.errors import CheckError, OperationError, UserError
    from tinyexport.native_logs import captured_native_stderr

    progress_was = os.environ.get(LITERT_PROGRESS_ENV)
    if progress_was is None:  # a user's own setting wins; ours is undone afterwards
        os.environ[LITERT_PROGRESS_ENV] = "n"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                with captured_native_stderr() as native:
                    yield
            except (UserError, CheckError, OperationError, MemoryError):
                raise
            except Exception:
                sys.stderr.write(native.text)
                raise
    finally:
        if progress_was is None:
            os.environ.pop(LITERT_PROGRESS_ENV, None)


def default_output(model_name: str, export, *, random_weights: bool, seed: int, transforms: tuple = ()) -> Path:
    """out/<model>_<short recipe>_ekv<N> for TFLite, out/<model>_onnx_<short recipe> for ONNX
    (+ _prune<R><criterion> / _kvint8 / _trunc<N> per transform)."""
    name = Path(model_name).name.removesuffix(".gguf")
    short = RECIPES[export.recipe].short or export.recipe
    if export.format == "tflite":
        stem = f"{name}_{short}_ekv{export.kv_cache_max_len}"
    else:
        stem = f"{name}_{export.format}_{short}"
    if export.prefill_logits == "all":
        stem += "_alllogits"
    for t in transforms:
        if t.name == "prune-heads":
            stem += f"_prune{t.param('ratio'):g}{t.param('criterion')[0]}"
        elif t.name == "kv-cache":
            stem += f"_kv{t.param('value')}"
        elif t.name == "truncate-layers":
            stem += f"_trunc{t.param('layers')}"
    return Path("out") / stem
