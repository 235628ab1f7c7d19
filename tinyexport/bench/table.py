"""The rich tables ``tinyexport bench`` prints."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def context_fills(candidates: list[dict[str, Any]]) -> list[int]:
    """Every --context fill measured by any candidate, ascending."""
    return sorted({p["context"] for c in candidates for p in c.get("contexts", [])})


def context_cell(candidate: dict[str, Any], fill: int) -> str:
    """``tok/s ≤ bound (fraction)`` at ``fill``, or why it was not measured."""
    for p in candidate.get("contexts", []):
        if p["context"] == fill:
            return f"{p['decode_tok_s']['median']:.1f} ≤ {p['bound_tok_s']:.0f} ({100 * p['fraction']:.0f}%)"
    return f"– (cache {candidate['kv_cache_slots']})"


def print_bench(console: Console, document: dict[str, Any]) -> None:
    settings, probes = document["settings"], document["probes"]
    title = (
        f"{document['model']['name']}: prompt {settings['prompt_len']}, {settings['new_tokens']} new tokens, "
        f"{settings['repeats']} repeats, threads {settings['threads'] or 'default'} (medians)"
    )
    table = Table(title=title)
    for col in (
        "candidate",
        "format/recipe",
        "size MB",
        "load s",
        "peak RSS MiB",
        "TTFT ms",
        "prefill tok/s",
        "decode tok/s",
        "decode p10–p90",
        "ms/token",
        "decode bound",
        "of bound",
        "prefill bound",
        "of fp32 peak",
    ):
        table.add_column(col, justify="left" if col in ("candidate", "format/recipe") else "right")
    for c in document["candidates"]:
        head = [c["name"], f"{c['format']}/{c['recipe']}", f"{c['size_bytes'] / 1e6:.1f}"]
        if c.get("error"):
            table.add_row(*head, f"[red]failed: {c['error']}[/]", *[""] * 10)
            continue
        roof, decode = c["roofline"], c["decode_tok_s"]
        table.add_row(
            *head,
            f"{c['load_s']:.2f}",
            f"{c['peak_rss_mb']:.0f}",
            f"{c['ttft_ms']['median']:.1f}",
            f"{c['prefill_tok_s']['median']:.1f}",
            f"{decode['median']:.1f}",
            f"{decode['p10']:.1f}–{decode['p90']:.1f}",
            f"{c['decode_ms_per_token']['median']:.2f}",
            f"{roof['decode']['bound_tok_s']:.1f}",
            f"{100 * roof['decode']['fraction']:.0f}%",
            f"{roof['prefill']['bound_tok_s']:.0f}",
            f"{100 * roof['prefill']['fraction']:.0f}%",
        )
    console.print(table)
    console.print(
        "bounds: decode tok/s <= bandwidth / bytes read per token (weights + KV cache); "
        "prefill tok/s <= matmul peak / FLOPs per token"
    )
    console.print(
        f"roofline: memory read bandwidth {probes['bandwidth_gb_s']:.1f} GB/s, fp32 matmul peak "
        f"{probes['matmul_gflops']:.0f} GFLOP/s (numpy, {probes['threads']} threads, "
        f"{'cached' if probes.get('cached') else 'measured now'} {probes['measured_at']})"
    )
    print_llama_cpp_ratios(console, document)
    contexts = [c for c in document["candidates"] if not c.get("error") and c.get("contexts")]
    if contexts:
        ctx = Table(
            title=f"decode tok/s vs cache fill (median over {settings['context_steps']} steps; "
            "bound from bandwidth; fraction)"
        )
        ctx.add_column("candidate")
        fills = context_fills(contexts)
        for fill in fills:
            ctx.add_column(f"{fill}", justify="right")
        for c in contexts:
            ctx.add_row(c["name"], *(context_cell(c, fill) for fill in fills))
        console.print(ctx)


def print_llama_cpp_ratios(console: Console, document: dict[str, Any]) -> None:
    """Each candidate as ratios to llama.cpp's own Q8_0/Q4_0 rows of the same run (when there are any)."""
    from .llama_cpp_ratios import ratios, references

    refs = references(document)
    if not refs:
        return
    table = Table(title="vs llama.cpp's own conversion, same run (decode/RSS < 1 and prefill > 1: ours better)")
    table.add_column("candidate")
    for recipe in refs:
        for what in ("decode", "prefill", "peak RSS"):
            table.add_column(f"{what} × {recipe.upper()}", justify="right")
    for c in document["candidates"]:
        if c.get("error"):
            continue
        cells = []
        for ref in refs.values():
            q = ratios(c, ref)
            cells += [f"{q['decode']:.2f}", f"{q['prefill']:.2f}", f"{q['peak_rss']:.2f}"]
        table.add_row(c["name"], *cells)
    console.print(table)
