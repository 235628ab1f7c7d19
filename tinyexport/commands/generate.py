"""``tinyexport generate``: stream text from any runner — an artefact dir or the checkpoint itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from tinyexport.models.config import ATTENTION_IMPLS
from tinyexport.resolve import DEFAULT_PROMPT

from .options import (
    checkpoint_options,
    draft_min_prob_option,
    json_option,
    parse_transform_options,
    transform_options,
)


@click.command()
@click.argument("artefact", required=False, type=click.Path(path_type=Path))
@checkpoint_options
@transform_options
@click.option(
    "--backend",
    type=click.Choice(["torch", "hf"]),
    default="torch",
    show_default=True,
    help="Without ARTEFACT: our re-implementation (torch) or transformers (hf).",
)
@click.option("--attention", type=click.Choice(ATTENTION_IMPLS), default="sdpa", show_default=True)
@click.option("--prompt", default=DEFAULT_PROMPT, show_default=True)
@click.option("--chat", is_flag=True, help="Wrap the prompt as a user message with the model's chat template.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True, help="0 = greedy.")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Runtime threads (artefacts).")
@click.option(
    "--engine",
    type=click.Choice(["tinyexport", "litertlm"]),
    default="tinyexport",
    show_default=True,
    help="With a TFLite ARTEFACT: our decode loop over LiteRT, or Google's LiteRT-LM engine on its "
    "model.litertlm (tinyexport bundle; greedy, text-level).",
)
@click.option(
    "--draft",
    type=click.Path(path_type=Path),
    default=None,
    help="Speculative decoding: a cheaper artefact of the same tokenizer drafts tokens the target verifies.",
)
@click.option("-k", "draft_tokens", type=int, default=4, show_default=True, help="Draft tokens per target call.")
@draft_min_prob_option
@click.option(
    "--bench",
    "bench_repeats",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="With --draft: then time the target alone and speculative decoding, interleaved N times.",
)
@json_option
def generate(
    artefact: Path | None,
    checkpoint: str,
    random_weights: bool,
    seed: int,
    transforms: tuple[str, ...],
    kv_cache: str | None,
    backend: str,
    attention: str,
    prompt: str,
    chat: bool,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    threads: int | None,
    engine: str,
    draft: Path | None,
    draft_tokens: int,
    draft_min_prob: float,
    bench_repeats: int | None,
    json_path: Path | None,
) -> None:
    """Generate text, streamed token by token, from ARTEFACT (TFLite/ONNX) or from --checkpoint.

    With an ARTEFACT only its runtime is needed (no torch). Speed goes to stderr. With --draft the
    target (ARTEFACT or --checkpoint) verifies -k drafted tokens per call; the output is the target's own
    (see docs/speculative.md).
    """
    import sys

    from tinyexport.errors import UserError
    from tinyexport.generate import GenerationStats, SamplingConfig, TextStream, stream_tokens
    from tinyexport.resolve import Candidate, resolve

    if engine == "litertlm":
        from tinyexport.commands.generate_litertlm import generate_with_litertlm

        if artefact is None:
            raise UserError("--engine litertlm needs an ARTEFACT directory with a model.litertlm (tinyexport bundle)")
        if temperature != 0:
            raise UserError(
                "--engine litertlm decodes with the bundle's sampler (greedy by default); drop "
                "--temperature, or rebuild the bundle with `tinyexport bundle --temperature`"
            )
        generate_with_litertlm(artefact, prompt, chat, max_new_tokens, threads)
        return
    planned = parse_transform_options(transforms, kv_cache)
    if planned and (artefact is not None or backend != "torch"):
        raise UserError(
            "--transform/--kv-cache apply to --backend torch only (an ARTEFACT carries the transforms it was "
            "converted with); drop them"
        )
    inputs = resolve(
        [artefact] if artefact is not None else [],
        checkpoint=checkpoint,
        random_weights=random_weights,
        seed=seed,
        need_checkpoint=artefact is None,
        need_tokenizer=True,
    )
    tokenizer, config = inputs.tokenizer, inputs.config
    ids = tokenizer.encode(tokenizer.prompt_text(prompt, chat))
    if ids.size == 0:
        raise UserError("the prompt encodes to no tokens; pass a non-empty --prompt")
    inputs.check_capacity(
        ids.size + max_new_tokens,
        f"prompt ({ids.size} tokens) + --max-new-tokens {max_new_tokens}",
        "shorten the prompt or lower --max-new-tokens",
    )
    if (bench_repeats is not None or json_path is not None) and draft is None:
        raise UserError("--bench and --json time speculative decoding; add --draft DRAFT_ARTEFACT")
    if json_path is not None:
        from tinyexport.paths import check_writable_file

        check_writable_file(json_path, "--json")
    options = {"threads": threads} if threads else {}
    draft_runner = None
    if draft is not None:
        from tinyexport.artefact import load_artefact
        from tinyexport.speculative import PairSide, artefact_side, check_pair, check_sides

        draft_art = load_artefact(draft)
        draft_side = artefact_side(draft_art, "draft")  # fail before loading anything heavy
        target_side = PairSide("target", config.vocab_size, vocab_fingerprint=tokenizer.vocab_fingerprint())
        check_sides(target_side, draft_side, draft_tokens)
        draft_runner = Candidate("artefact", artefact=draft_art).open(shared_cpu=True, **options)
    if inputs.artefacts:
        runner = inputs.candidates[0].open(**options, **({"shared_cpu": True} if draft is not None else {}))
    else:
        from tinyexport.resolve import transform

        ours = Candidate(backend, attention, transforms=transform(inputs.checkpoint, planned, seed).transforms)
        runner = ours.open(inputs.checkpoint, max_len=ids.size + max_new_tokens)
    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    stops = [config.eos_token_id] if config.eos_token_id is not None else []
    if draft_runner is not None:
        check_pair(runner, draft_runner, draft_tokens, needed_tokens=ids.size + max_new_tokens)
        spec = SpeculativeRun(draft_tokens, sampling, stops, draft_min_prob)
        run_speculative(runner, draft_runner, tokenizer, ids, max_new_tokens, spec)
        if bench_repeats is not None or json_path is not None:
            bench_speculative(runner, draft_runner, ids, max_new_tokens, spec, bench_repeats or 3, json_path)
        return
    stats = GenerationStats()
    stream = TextStream(tokenizer)
    for token in stream_tokens(runner, ids, max_new_tokens, sampling, stops, stats):
        if token not in stops:
            sys.stdout.write(stream.push(token))
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    click.echo(
        f"[{runner.name}] prompt {stats.prompt_tokens} tokens in {stats.prefill_seconds * 1000:.0f} ms, "
        f"{stats.new_tokens} new tokens, decode {stats.decode_ms_per_token:.1f} ms/token "
        f"(stop: {stats.stop_reason})",
        err=True,
    )


@dataclass(frozen=True)
class SpeculativeRun:
    """The speculative options of one `generate --draft`: up to ``k`` drafts per round (``min_prob``: see
    ``speculative.speculative_tokens``), how to choose tokens, which ids stop."""

    k: int
    sampling: Any
    stops: list[int]
    min_prob: float = 0.0


def run_speculative(target, draft, tokenizer, ids, max_new_tokens, spec: SpeculativeRun) -> None:
    """Stream a speculative generation; its speed and acceptance go to stderr."""
    import sys

    from tinyexport.generate import TextStream
    from tinyexport.speculative import SpeculativeStats, speculative_tokens

    stats = SpeculativeStats()
    stream = TextStream(tokenizer)
    k, stops = spec.k, spec.stops
    for token in speculative_tokens(target, draft, ids, max_new_tokens, k, spec.sampling, stops, stats, spec.min_prob):
        if token not in stops:
            sys.stdout.write(stream.push(token))
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    decode_ms = 1000 * stats.decode_seconds / max(stats.new_tokens - 1, 1)
    click.echo(
        f"[{target.name} + draft {draft.name}, k={k}{f' (stop below p={spec.min_prob:g})' if spec.min_prob else ''}] prompt {stats.prompt_tokens} tokens in "
        f"{stats.prefill_seconds * 1000:.0f} ms, {stats.new_tokens} new tokens, decode {decode_ms:.1f} ms/token; "
        f"acceptance {stats.acceptance_rate:.1%}, {stats.tokens_per_target_call:.2f} tokens per target call, "
        f"draft {stats.draft_ms_per_call:.1f} ms/call, verify {stats.verify_ms_per_call:.1f} ms/call "
        f"(stop: {stats.stop_reason})",
        err=True,
    )


def bench_speculative(target, draft, ids, max_new_tokens, spec, repeats, json_path) -> None:
    """Target alone vs speculative, interleaved; one summary line on stderr (and JSON)."""
    import os

    from tinyexport.speculative import compare_speed

    load = [os.getloadavg()[0]]
    result = compare_speed(
        target, draft, ids, max_new_tokens, spec.k, spec.sampling, spec.stops, repeats, spec.min_prob
    )
    load.append(os.getloadavg()[0])
    s = result.summary()
    same = {True: "identical", False: "DIFFERENT", None: "sampled"}[s["identical"]]
    click.echo(
        f"[bench x{repeats}] target alone {s['target_tok_s']:.1f} tok/s, speculative {s['speculative_tok_s']:.1f} "
        f"tok/s: {s['speedup']:.2f}x end to end (decode {s['measured_decode_speedup']:.2f}x, cost model "
        f"{s['predicted_decode_speedup']:.2f}x: target {s['target_decode_ms']:.1f} ms/token, draft "
        f"{s['draft_ms']:.1f} ms, verify {s['verify_ms']:.1f} ms, rollback {s['rollback_ms']:.1f} ms, "
        f"{s['tokens_per_target_call']:.2f} tokens/call, acceptance {s['acceptance_rate']:.1%}); output {same}; "
        f"load average {load[0]:.1f}-{load[1]:.1f}",
        err=True,
    )
    if json_path is not None:
        from tinyexport.atomic import write_json_atomic

        write_json_atomic(
            json_path,
            {"target": target.name, "draft": draft.name, "prompt_tokens": int(ids.size), "load_average": load, **s},
        )
