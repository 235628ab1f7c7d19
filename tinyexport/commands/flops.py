"""``tinyexport flops``: analytical FLOPs of one forward pass, from the config alone (no weights)."""

from __future__ import annotations

from pathlib import Path

import click

from tinyexport.atomic import write_json_atomic, write_text_atomic
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
    from tinyexport.errors import UserError
    from tinyexport.flops import estimate

    check_writable_file(csv_path, "--csv")
    check_writable_file(json_path, "--json")
    name, config = _resolve_config(preset, checkpoint)
    est = estimate(config, seq_len, batch_size, key_len=key_len, logits=logits, softmax=not no_softmax_flops)
    counted = None
    if validate:
        if batch_size != 1 or (key_len not in (None, seq_len)):
            raise UserError("--validate counts a batch-1 prefill from an empty cache; drop --batch-size/--key-len")
        from tinyexport.flops import counted_matmul_flops

        counted = counted_matmul_flops(config, seq_len, logits=logits)
    _print(name, est, counted)
    if json_path is not None:
        data = est.to_json(name)
        if counted is not None:
            data["flop_counter_mode"] = counted
        write_json_atomic(json_path, data)
    if csv_path is not None:
        _write_csv(csv_path, est)
    if counted is not None and counted["total"] != est.matmul_flops:
        from tinyexport.errors import ParityError

        raise ParityError(
            f"FlopCounterMode counted {counted['total']} matmul FLOPs, the model says {est.matmul_flops}", [counted]
        )


def _resolve_config(preset: str | None, checkpoint: str | None):
    from tinyexport.errors import UserError

    if (preset is None) == (checkpoint is None):
        raise UserError("pass exactly one of --config PRESET or --checkpoint PRESET|DIR")
    spec = preset if preset is not None else checkpoint
    if spec in PRESETS:
        return spec, PRESETS[spec].config
    if preset is not None:
        raise UserError(f"unknown preset {preset!r} for --config; choose one of {', '.join(PRESETS)}")
    path = Path(spec).expanduser()
    if (path / "manifest.json").is_file():
        from tinyexport.artefact import load_artefact

        return path.name, load_artefact(path, check_hashes=False).config
    if (path / "config.json").is_file():
        from tinyexport.models.config import read_hf_config

        return path.name, read_hf_config(path)
    raise UserError(
        f"--checkpoint {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a directory with "
        "config.json or manifest.json; for a .gguf file use the directory tinyexport materialised from it"
    )


def _print(name: str, est, counted: dict | None) -> None:
    from rich.table import Table

    from tinyexport.console import make_console
    from tinyexport.flops import GROUPS

    console = make_console()
    comps, shares = est.components, est.shares()
    table = Table(
        title=f"FLOPs: {name}, seq {est.seq_len} (keys {est.key_len}), batch {est.batch_size}, logits {est.logits}"
    )
    table.add_column("component")
    table.add_column("GFLOPs", justify="right")
    table.add_column("share", justify="right")
    for comp, value in comps.items():
        table.add_row(comp, f"{value / 1e9:.4f}", f"{100 * shares[comp]:.2f}%")
    table.add_section()
    for group, share in est.group_shares().items():
        table.add_row(group, f"{sum(comps[n] for n in GROUPS[group]) / 1e9:.4f}", f"{100 * share:.2f}%")
    table.add_section()
    table.add_row("total", f"{est.total_flops / 1e9:.4f}", "100%")
    table.add_row("matmul only", f"{est.matmul_flops / 1e9:.4f}", f"{100 * est.matmul_flops / est.total_flops:.2f}%")
    table.add_row("per token", f"{est.flops_per_token / 1e9:.4f}", "")
    console.print(table)
    if counted is not None:
        same = counted["total"] == est.matmul_flops
        console.print(
            f"FlopCounterMode (our model, shapes only): {counted['total']} matmul FLOPs; model: "
            f"{est.matmul_flops} -> {'exact match' if same else 'MISMATCH'}"
        )


def _write_csv(path: Path, est) -> None:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["component", "flops", "share"])
    shares = est.shares()
    for comp, value in est.components.items():
        writer.writerow([comp, value, f"{shares[comp]:.6f}"])
    writer.writerow(["total", est.total_flops, "1.000000"])
    writer.writerow(["per_token", f"{est.flops_per_token:.1f}", ""])
    write_text_atomic(Path(path), buffer.getvalue())
