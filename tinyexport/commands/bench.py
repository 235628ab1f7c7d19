"""``tinyexport bench``: TTFT, prefill/decode speed, peak RSS and size of every candidate, side by side,
each in its own subprocess, with roofline bounds; JSON on request, a CSV row per candidate always."""

from __future__ import annotations

from pathlib import Path

import click

from tinyexport.atomic import write_json_atomic
from tinyexport.models.config import ATTENTION_IMPLS
from tinyexport.paths import check_writable_file

from .options import checkpoint_options


@click.command()
@click.argument("artefacts", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--torch",
    "torch_attentions",
    multiple=True,
    is_flag=False,
    flag_value="standard",
    type=click.Choice(ATTENTION_IMPLS),
    help="Bench our PyTorch model (repeatable: --torch, --torch=sdpa) [default without ARTEFACTS: standard].",
)
@click.option("--hf", is_flag=True, help="Bench transformers' LlamaForCausalLM [default without ARTEFACTS].")
@checkpoint_options(from_artefacts=True)
@click.option("--prompt-len", type=int, default=128, show_default=True, help="Prompt tokens (random ids, fixed seed).")
@click.option(
    "--new-tokens",
    type=int,
    default=64,
    show_default=True,
    help="Greedy tokens per run: the first from prefill (TTFT), the rest decoded.",
)
@click.option("--warmup", type=int, default=1, show_default=True, help="Untimed runs first.")
@click.option("--repeats", type=int, default=5, show_default=True, help="Timed runs (median, p10, p90 over them).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Threads for every runtime and BLAS [default: each runtime's own default].",
)
@click.option(
    "--context",
    "contexts",
    default=None,
    metavar="N,N,...",
    help="Also time decode with the cache filled to these lengths, e.g. 128,512,1024.",
)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write all results as JSON.")
@click.option(
    "--log-csv",
    type=click.Path(path_type=Path),
    default=Path("logs/bench.csv"),
    show_default=True,
    help="CSV log every run appends to.",
)
@click.option("--no-log", is_flag=True, help="Do not append to the CSV log.")
@click.option("--reprobe", is_flag=True, help="Measure bandwidth and matmul peak again instead of using the cache.")
def bench(
    artefacts: tuple[Path, ...],
    torch_attentions: tuple[str, ...],
    hf: bool,
    checkpoint: str | None,
    random_weights: bool,
    seed: int,
    prompt_len: int,
    new_tokens: int,
    warmup: int,
    repeats: int,
    threads: int | None,
    contexts: str | None,
    json_path: Path | None,
    log_csv: Path,
    no_log: bool,
    reprobe: bool,
) -> None:
    """Benchmark ARTEFACTS (TFLite/ONNX dirs) and/or the checkpoint (--torch, --hf) on this machine.

    Per candidate: load time, TTFT, prefill tok/s, decode tok/s and ms/token (median, p10, p90 over
    --repeats), peak RSS of its own process, size on disk, and the fraction of the roofline it reaches
    (decode: memory bandwidth / bytes read per token; prefill: matmul peak / FLOPs per token).
    With only ARTEFACTS, nothing but numpy and the artefacts' runtime is imported.
    """
    from tinyexport.bench.csvlog import append_rows, check_log, csv_rows
    from tinyexport.bench.harness import bench_all, bench_document, run_probes_subprocess
    from tinyexport.bench.machine import machine_info, usable_cores
    from tinyexport.bench.measure import BenchSettings
    from tinyexport.bench.probes import cached_probes
    from tinyexport.bench.table import print_bench
    from tinyexport.console import make_console
    from tinyexport.errors import UserError
    from tinyexport.paths import cache_dir

    try:
        settings = BenchSettings(
            prompt_len=prompt_len,
            new_tokens=new_tokens,
            warmup=warmup,
            repeats=repeats,
            contexts=_parse_contexts(contexts),
            seed=seed,
        )
    except ValueError as err:
        raise UserError(_option_message(str(err))) from None
    check_writable_file(json_path, "--json")
    if not no_log:
        check_log(log_csv)
    if not artefacts and not torch_attentions and not hf:
        torch_attentions, hf = ("standard",), True
    candidates, model_name, checkpoint_dir = _plan(
        artefacts, torch_attentions, hf, checkpoint, random_weights, seed, settings
    )

    console, status = make_console(), make_console(stderr=True)
    probe_threads = threads or usable_cores()
    probes = cached_probes(cache_dir(), probe_threads, run_probes_subprocess, refresh=reprobe)
    rows = bench_all(
        candidates, settings, threads, checkpoint_dir, probes, progress=lambda line: status.print(line, highlight=False)
    )
    document = bench_document(model_name, candidates[0].config, settings, threads, machine_info(), probes, rows)
    print_bench(console, document)
    if json_path is not None:
        write_json_atomic(json_path, document)
    if not no_log:
        append_rows(log_csv, csv_rows(document))
    failed = [r["name"] for r in rows if r.get("error")]
    if failed:
        click.echo(f"error: {len(failed)} candidate(s) failed: {', '.join(failed)}", err=True)
        raise SystemExit(1)


def _option_message(message: str) -> str:
    """BenchSettings' field names -> the CLI's option names."""
    for field, option in (
        ("prompt_len", "--prompt-len"),
        ("new_tokens", "--new-tokens"),
        ("repeats", "--repeats"),
        ("warmup", "--warmup"),
        ("context fills", "--context values"),
    ):
        message = message.replace(field, option)
    return message


def _parse_contexts(text: str | None) -> tuple[int, ...]:
    from tinyexport.errors import UserError

    if text is None:
        return ()
    try:
        values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise UserError(
            f"--context {text!r} has a non-integer; pass comma-separated cache fills, e.g. 128,512,1024"
        ) from None
    if not values:
        raise UserError(f"--context {text!r} is empty; pass comma-separated cache fills, e.g. 128,512,1024")
    return values


def _plan(artefacts, torch_attentions, hf, checkpoint, random_weights, seed, settings):
    """Check every input (exit 2 before any work) and describe each candidate.

    Returns (candidates, model name, checkpoint dir or None). The checkpoint is resolved only when a
    --torch/--hf candidate needs it, so an artefacts-only bench never imports torch.
    """
    from tinyexport.bench.harness import BenchCandidate
    from tinyexport.errors import UserError
    from tinyexport.resolve import Candidate, resolve

    inputs = resolve(
        artefacts,
        checkpoint=checkpoint,
        random_weights=random_weights,
        seed=seed,
        need_checkpoint=bool(torch_attentions or hf),
    )
    candidates = [
        BenchCandidate(
            c,
            c.label,
            c.format,
            c.recipe,
            c.artefact.size_bytes(),
            c.artefact.kv_cache_max_len,
            c.artefact.config,
            int(c.artefact.manifest.get("weight_bytes", c.artefact.size_bytes())),
        )
        for c in inputs.candidates
    ]
    for cand in candidates:
        _check_capacity(cand.name, cand.capacity, settings)
    model_name, checkpoint_dir = inputs.name, None
    if torch_attentions or hf:
        from tinyexport.models.weights import weight_files

        ckpt = inputs.checkpoint
        checkpoint_dir = str(ckpt.directory)
        size = sum(f.stat().st_size for f in weight_files(ckpt.directory))
        capacity = settings.tokens_needed
        _check_capacity(ckpt.name, ckpt.config.max_position_embeddings, settings, what="max_position_embeddings")
        too_long = [c for c in settings.contexts if c > ckpt.config.max_position_embeddings]
        if too_long:
            raise UserError(
                f"--context {too_long} exceeds the max_position_embeddings of {ckpt.name} "
                f"({ckpt.config.max_position_embeddings}); use smaller fills"
            )
        ours = [Candidate("torch", a) for a in dict.fromkeys(torch_attentions)] + ([Candidate("hf")] if hf else [])
        candidates = [
            BenchCandidate(c, c.label, c.format, c.recipe, size, capacity, ckpt.config, size) for c in ours
        ] + candidates
    unheld = [c for c in settings.contexts if all(c > cand.capacity for cand in candidates)]
    if unheld:
        raise UserError(
            f"--context {unheld} exceeds the KV cache of every candidate (largest "
            f"{max(c.capacity for c in candidates)}); use smaller fills"
        )
    return candidates, model_name, checkpoint_dir


def _check_capacity(name: str, capacity: int, settings, what: str = "KV cache") -> None:
    """The prompt and new tokens must fit every candidate (--context fills that don't fit are skipped)."""
    from tinyexport.errors import UserError

    if settings.prompt_len + settings.new_tokens > capacity:
        raise UserError(
            f"--prompt-len {settings.prompt_len} + --new-tokens {settings.new_tokens} exceeds the "
            f"{what} of {name} ({capacity}); lower --new-tokens or --prompt-len"
        )
