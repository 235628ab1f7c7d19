"""``tinyexport flops``: analytical FLOPs of one forward pass, from the config alone (no weights)."""

from __future__ import annotations

from pathlib import Path

import click

from tinyexport.atomic import write_json_atomic
from tinyexport.models.config import PRESETS
from tinyexport.paths import check_writable_file


@click.command()
@click.option(
    "--config", "preset", default=None, metavar="PRESET", help=f"Model shape by preset name ({', '.join(PRESETS)})."
)
@click.option(
    "--checkpoint",
    default=None,
    metavar="PRESET|DIR",
    help="Preset, HF model directory or artefact directory: only its config is read.",
)
@click.option("--seq-len", type=int, default=128, show_default=True, help="Tokens in the forward pass.")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option(
    "--key-len",
    type=int,
    default=None,
    help="Keys each query attends [default: --seq-len, a prefill from an empty cache].",
)
@click.option(
    "--logits",
    type=click.Choice(["all", "last"]),
    default="all",
    show_default=True,
    help="lm_head on every position (HF, training) or on the last one (an exported prefill).",
)
@click.option("--no-softmax-flops", is_flag=True, help="Leave softmax out of the count.")
@click.option(
    "--validate",
    is_flag=True,
    help="Also count our model's matmuls with torch's FlopCounterMode (shapes only) and compare.",
)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), default=None, help="Write components as CSV.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the estimate as JSON.")
def flops(
    preset: str | None,
    checkpoint: str | None,
    seq_len: int,
    batch_size: int,
    key_len: int | None,
    logits: str,
    no_softmax_flops: bool,
    validate: bool,
    csv_path: Path | None,
    json_path: Path | None,
) -> None:
    """FLOPs of a forward pass per layer and component (multiply-add = 2 FLOPs), GQA-aware.

    Counts q/k/v/o projections, attention scores and values, softmax, SwiGLU (gate, up, down,
    activation, product), RMSNorms, RoPE, residual adds and lm_head. Never loads weights.
    """
    from tinyexport.bench.flops_table import print_flops, write_flops_csv
    from tinyexport.errors import UserError
    from tinyexport.flops import estimate
    from tinyexport.resolve import resolve_config

    check_writable_file(csv_path, "--csv")
    check_writable_file(json_path, "--json")
    name, config = resolve_config(preset, checkpoint)
    est = estimate(config, seq_len, batch_size, key_len=key_len, logits=logits, softmax=not no_softmax_flops)
    counted = None
    if validate:
        if batch_size != 1 or (key_len not in (None, seq_len)):
            raise UserError("--validate counts a batch-1 prefill from an empty cache; drop --batch-size/--key-len")
        from tinyexport.flops import counted_matmul_flops

        counted = counted_matmul_flops(config, seq_len, logits=logits)
    print_flops(name, est, counted)
    if json_path is not None:
        data = est.to_json(name)
        if counted is not None:
            data["flop_counter_mode"] = counted
        write_json_atomic(json_path, data)
    if csv_path is not None:
        write_flops_csv(csv_path, est)
    if counted is not None and counted["total"] != est.matmul_flops:
        from tinyexport.errors import ParityError

        raise ParityError(
            f"FlopCounterMode counted {counted['total']} matmul FLOPs, the model says {est.matmul_flops}", [counted]
        )
