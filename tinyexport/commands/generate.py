"""``tinyexport generate``: stream text from any runner — an artefact dir or the checkpoint itself."""

from __future__ import annotations

from pathlib import Path

import click

from tinyexport.models.config import ATTENTION_IMPLS
from tinyexport.resolve import DEFAULT_PROMPT

from .options import checkpoint_options


@click.command()
@click.argument("artefact", required=False, type=click.Path(path_type=Path))
@checkpoint_options
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
def generate(
    artefact: Path | None,
    checkpoint: str,
    random_weights: bool,
    seed: int,
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
) -> None:
    """Generate text, streamed token by token, from ARTEFACT (TFLite/ONNX) or from --checkpoint.

    With an ARTEFACT only its runtime is needed (no torch). Speed goes to stderr.
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
    inputs = resolve(
        [artefact] if artefact is not None else [],
        checkpoint=checkpoint,
        random_weights=random_weights,
        seed=seed,
        need_checkpoint=artefact is None,
        need_tokenizer=True,
    )
    tokenizer, config = inputs.tokenizer, inputs.config
    text = prompt
    if chat:
        if tokenizer.chat_template() is None:
            raise UserError("--chat: this tokenizer has no chat template; drop --chat")
        text = tokenizer.render_chat([{"role": "user", "content": prompt}])
    ids = tokenizer.encode(text)
    if ids.size == 0:
        raise UserError("the prompt encodes to no tokens; pass a non-empty --prompt")
    inputs.check_capacity(
        ids.size + max_new_tokens,
        f"prompt ({ids.size} tokens) + --max-new-tokens {max_new_tokens}",
        "shorten the prompt or lower --max-new-tokens",
    )
    if inputs.artefacts:
        runner = inputs.candidates[0].open(**({"threads": threads} if threads else {}))
    else:
        runner = Candidate(backend, attention).open(inputs.checkpoint, max_len=ids.size + max_new_tokens)
    sampling = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    stops = [config.eos_token_id] if config.eos_token_id is not None else []
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
