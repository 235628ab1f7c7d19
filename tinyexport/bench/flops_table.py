"""The FLOPs table (``tinyexport flops``): rich on stdout, CSV atomically."""

from __future__ import annotations

from pathlib import Path

from tinyexport.atomic import write_text_atomic


def print_flops(name: str, est, counted: dict | None) -> None:
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


def write_flops_csv(path: Path, est) -> None:
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
