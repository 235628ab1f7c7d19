"""``tinyexport chat``: a multi-turn terminal chat over any runner (a thin loop over ``ChatSession``)."""

from __future__ import annotations

from pathlib import Path

import click

from tinyexport.models.config import ATTENTION_IMPLS

from .options import checkpoint_options

HELP_LINE = "/reset starts a new conversation, /exit (or Ctrl-D) leaves, Ctrl-C stops an answer"


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
@click.option("--system", default=None, help="A system message opening the conversation.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=256, show_default=True, help="Per answer.")
@click.option(
    "--max-len",
    type=click.IntRange(min=2),
    default=None,
    help="Without ARTEFACT: KV-cache capacity [default: 2048, or the model's positions if fewer] "
    "(an artefact's is fixed at export).",
)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True, help="0 = greedy.")
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=1.0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Runtime threads (artefacts).")
@click.option("--stats/--no-stats", default=True, show_default=True, help="A speed line on stderr after each answer.")
def chat(
    artefact: Path | None,
    checkpoint: str,
    random_weights: bool,
    seed: int,
    backend: str,
    attention: str,
    system: str | None,
    max_new_tokens: int,
    max_len: int | None,
    temperature: float,
    top_k: int,
    top_p: float,
    threads: int | None,
    stats: bool,
) -> None:
    """Chat with ARTEFACT (TFLite/ONNX) or --checkpoint, turn by turn, with the model's chat template.

    The KV cache is kept across turns: each turn prefills only its own new tokens. Reads lines from
    stdin (a terminal or a pipe); answers stream to stdout. With an ARTEFACT no torch is needed.
    """
    import sys

    from tinyexport.chat import ChatSession
    from tinyexport.errors import UserError
    from tinyexport.generate import SamplingConfig
    from tinyexport.resolve import Candidate, resolve

    inputs = resolve(
        [artefact] if artefact is not None else [],
        checkpoint=checkpoint,
        random_weights=random_weights,
        seed=seed,
        need_checkpoint=artefact is None,
        need_tokenizer=True,
    )
    tokenizer, config = inputs.tokenizer, inputs.config
    if tokenizer.chat_template() is None:
        raise UserError("this tokenizer has no chat template; use `tinyexport generate --prompt` instead")
    if inputs.artefacts:
        runner = inputs.candidates[0].open(**({"threads": threads} if threads else {}))
    else:
        max_len = max_len or min(2048, config.max_position_embeddings)
        inputs.check_capacity(max_len, f"--max-len {max_len}", "lower --max-len to {limit} or less")
        runner = Candidate(backend, attention).open(inputs.checkpoint, max_len=max_len)
    session = ChatSession(
        runner,
        tokenizer,
        sampling=SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed),
        max_new_tokens=max_new_tokens,
        stop_ids=[config.eos_token_id] if config.eos_token_id is not None else [],
        system=system,
    )
    interactive = sys.stdin.isatty()
    click.echo(f"chatting with {runner.name} (KV cache {runner.max_len} tokens); {HELP_LINE}", err=True)
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        except KeyboardInterrupt:
            click.echo(f"\n({HELP_LINE})", err=True)
            continue
        text = line.strip()
        if not interactive:
            click.echo(f"you> {text}")
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            session.reset()
            click.echo("(new conversation: cache emptied)", err=True)
            continue
        if text.startswith("/"):
            click.echo(f"(unknown command {text.split()[0]}; {HELP_LINE})", err=True)
            continue
        answer(session, text, stats)
    if interactive:
        click.echo("", err=True)


def answer(session, text: str, show_stats: bool) -> None:
    """Stream one answer; Ctrl-C (SIGINT) ends it after the current token and keeps the session."""
    import signal
    import sys

    from tinyexport.chat import CacheFullError

    stop = {"requested": False}

    def on_sigint(signum, frame) -> None:
        stop["requested"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    sys.stdout.write("assistant> ")
    try:
        for piece in session.turn(text, should_stop=lambda: stop["requested"]):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except CacheFullError as err:
        sys.stdout.write("\n")
        click.echo(f"({err})", err=True)
        return
    finally:
        signal.signal(signal.SIGINT, previous)
    sys.stdout.write("\n")
    sys.stdout.flush()
    last = session.last
    if last.stop_reason == "cache_full":
        click.echo("(the KV cache is full: type /reset to start a new conversation)", err=True)
    elif last.stop_reason == "interrupted":
        click.echo("(stopped)", err=True)
    if show_stats:
        steps = max(last.new_tokens - 1, 1)
        reuse = "" if last.prefix_kept else " (the cache differed from the re-encoded history: rolled back)"
        click.echo(
            f"[{session.runner.name}] prefilled {last.prefilled_tokens} new of {last.rendered_tokens} tokens "
            f"({last.reused_tokens} from the cache){reuse} in {last.prefill_seconds * 1000:.0f} ms, "
            f"{last.new_tokens} tokens at {1000 * last.decode_seconds / steps:.1f} ms/token "
            f"(stop: {last.stop_reason})",
            err=True,
        )
