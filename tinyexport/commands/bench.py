"""``tinyexport bench``: TTFT, prefill/decode speed, peak RSS and size of every candidate, side by side,
each in its own subprocess, with roofline bounds; JSON on request, a CSV row per candidate always."""

from __future__ import annotations

from pathlib import Path

import click

from tinyexport.atomic import write_json_atomic
from tinyexport.models.config import ATTENTION_IMPLS
from tinyexport.paths import check_writable_file
from tinyexport.records.sink import hand_result

from .options import checkpoint_options, draft_min_prob_option, parse_transform_options, transform_options


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
@transform_options
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
@click.option(
    "--litertlm",
    "litertlm",
    is_flag=True,
    help="Also run LiteRT-LM's own benchmark on each artefact's model.litertlm (tinyexport bundle).",
)
@click.option(
    "--draft",
    type=click.Path(path_type=Path),
    default=None,
    help="Also time speculative decoding: the first ARTEFACT (all-position logits) verifies what this "
    "cheaper artefact drafts, interleaved with the target alone (docs/speculative.md).",
)
@click.option("-k", "draft_tokens", type=int, default=4, show_default=True, help="With --draft: tokens per round.")
@draft_min_prob_option
@click.option(
    "--draft-prompt",
    default=None,
    help="With --draft: the text prompt (chat template applied when the tokenizer has one) "
    "[default: 'Write a short story about a robot who learns to paint.'].",
)
@click.option(
    "--on",
    "on",
    default=None,
    metavar="ssh://USER@HOST[:PORT]|adb://[SERIAL]",
    help="Run the bench on another machine: copy the artefacts there, bench, pull the JSON (docs/remote-bench.md).",
)
@click.option(
    "--remote-python",
    default=None,
    metavar="PATH",
    help="With --on: a Python 3.10+ on the target with tinyexport[runtime] [default: a venv bench makes].",
)
@click.option(
    "--remote-dir",
    default=None,
    metavar="DIR",
    help="With --on: where artefacts, the venv and caches live there [default: ~/.cache/tinyexport-remote].",
)
@click.option("--identity", type=click.Path(path_type=Path), default=None, help="With --on ssh://: private key file.")
@click.option(
    "--ssh-option",
    "ssh_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="With --on ssh://: extra ssh -o option (repeatable), e.g. UserKnownHostsFile=FILE.",
)
@click.option(
    "--connect-timeout",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="With --on: seconds to wait for the connection.",
)
def bench(
    artefacts: tuple[Path, ...],
    torch_attentions: tuple[str, ...],
    hf: bool,
    checkpoint: str | None,
    random_weights: bool,
    seed: int,
    transforms: tuple[str, ...],
    kv_cache: str | None,
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
    litertlm: bool,
    draft: Path | None,
    draft_tokens: int,
    draft_min_prob: float,
    draft_prompt: str | None,
    on: str | None,
    remote_python: str | None,
    remote_dir: str | None,
    identity: Path | None,
    ssh_options: tuple[str, ...],
    connect_timeout: int,
) -> None:
    """Benchmark ARTEFACTS (TFLite/ONNX/GGUF dirs, or bare .gguf files) and/or the checkpoint (--torch, --hf).

    Per candidate: load time, TTFT, prefill tok/s, decode tok/s and ms/token (median, p10, p90 over
    --repeats), peak RSS of its own process, size on disk, and the fraction of the roofline it reaches
    (decode: memory bandwidth / bytes read per token; prefill: matmul peak / FLOPs per token).
    With only ARTEFACTS, nothing but numpy and the artefacts' runtime is imported.
    --transform/--kv-cache apply to the --torch candidates (artefacts carry their own; --hf never).
    """
    from tinyexport.bench.csvlog import append_rows, check_log, csv_rows
    from tinyexport.bench.harness import bench_all, bench_document, run_probes_subprocess
    from tinyexport.bench.machine import machine_info, usable_cores
    from tinyexport.bench.measure import BenchSettings
    from tinyexport.bench.plan import option_message, parse_contexts, plan
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
            contexts=parse_contexts(contexts),
            seed=seed,
        )
    except ValueError as err:
        raise UserError(option_message(str(err))) from None
    check_writable_file(json_path, "--json")
    if not no_log:
        check_log(log_csv)
    if draft is not None:
        from tinyexport.commands.speculative_row import SPEC_PROMPT
        from tinyexport.speculative import check_artefact_pair

        if on is not None:
            raise UserError("--draft runs on this machine only; drop --on or --draft")
        if not artefacts:
            raise UserError("--draft needs a target: pass the fp32 ARTEFACT it drafts for first")
        check_artefact_pair(artefacts[0], draft, draft_tokens, draft_prompt or SPEC_PROMPT, new_tokens)
    if on is not None:
        from tinyexport.bench.remote_command import bench_on, forwarded_args

        if torch_attentions or hf or not artefacts:
            raise UserError(
                "--on benches artefact directories only (runtime-only there); pass ARTEFACTS, drop --torch/--hf"
            )
        forwarded = forwarded_args(prompt_len, new_tokens, warmup, repeats, threads, contexts, seed, reprobe, litertlm)
        document = bench_on(
            on,
            artefacts,
            forwarded,
            remote_python=remote_python,
            remote_dir=remote_dir,
            identity=identity,
            ssh_options=ssh_options,
            connect_timeout=connect_timeout,
            json_path=json_path,
            log_csv=None if no_log else log_csv,
        )
        hand_result(document, artefacts=artefacts)  # recorded here, measured on the remote machine
        return
    planned = parse_transform_options(transforms, kv_cache)
    if not artefacts and not torch_attentions and not hf:
        torch_attentions, hf = ("standard",), not planned
    candidates, model_name, checkpoint_dir = plan(
        artefacts, torch_attentions, hf, checkpoint, random_weights, seed, settings, planned
    )

    console, status = make_console(), make_console(stderr=True)
    probe_threads = threads or usable_cores()
    probes = cached_probes(cache_dir(), probe_threads, run_probes_subprocess, refresh=reprobe)
    rows = bench_all(
        candidates, settings, threads, checkpoint_dir, probes, progress=lambda line: status.print(line, highlight=False)
    )
    document = bench_document(model_name, candidates[0].config, settings, threads, machine_info(), probes, rows)
    if litertlm:
        from tinyexport.bench.litertlm_bench import bench_bundles

        status.print("LiteRT-LM's own benchmark ...", highlight=False)
        document["litertlm_benchmark"] = bench_bundles(artefacts, prompt_len, new_tokens, min(repeats, 3), threads)
    if draft is not None:
        from tinyexport.commands.speculative_row import SPEC_PROMPT
        from tinyexport.speculative import speed_row

        status.print(
            f"speculative decoding: {artefacts[0].name} + draft {draft.name}, k={draft_tokens} ...", highlight=False
        )
        document["speculative"] = speed_row(
            artefacts[0], draft, draft_tokens, draft_prompt or SPEC_PROMPT, new_tokens, repeats, threads, draft_min_prob
        )
    print_bench(console, document)
    if draft is not None:
        from tinyexport.commands.speculative_row import print_row

        print_row(console, document["speculative"])
    if document.get("litertlm_benchmark"):
        from tinyexport.bench.litertlm_bench import print_litertlm

        print_litertlm(console, document["litertlm_benchmark"], document["candidates"])
    opened = [c.spec.artefact.path for c in candidates if c.spec.artefact is not None]  # a bare .gguf: its wrapper
    hand_result(document, checkpoint=checkpoint_dir, artefacts=opened)
    if json_path is not None:
        write_json_atomic(json_path, document)
    if not no_log:
        append_rows(log_csv, csv_rows(document))
    failed = [r["name"] for r in rows if r.get("error")]
    if failed:
        click.echo(f"error: {len(failed)} candidate(s) failed: {', '.join(failed)}", err=True)
        raise SystemExit(1)
