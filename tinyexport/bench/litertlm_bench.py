"""LiteRT-LM's own benchmark (``litert_lm.Benchmark``) of an artefact's ``model.litertlm``, beside ours.

Each run is a fresh subprocess (``python -m tinyexport.bench.litertlm_bench``), as our candidates are,
so LiteRT-LM's engine never shares a process with the LiteRT runtime. The engine pads (or cuts) its
prompt to ``prefill_tokens`` and decodes ``decode_tokens``; it reports its own prefill tok/s, decode
tok/s, time to first token and init time: numbers measured by LiteRT-LM, labelled so in the table.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tinyexport.artefact import load_artefact
from tinyexport.formats.litertlm_io import bundle_path

FIELDS = ("prefill_tok_s", "decode_tok_s", "decode_ms_per_token", "ttft_s", "init_s")


def bench_bundles(
    paths: Sequence[Path], prompt_len: int, new_tokens: int, repeats: int, threads: int | None, timeout: float = 900
) -> list[dict[str, Any]]:
    """One row per bundled artefact: the median of ``repeats`` LiteRT-LM benchmark runs, or why it failed
    (one row per artefact saying so when none has a bundle). The caller has checked the hashes."""
    arts = [load_artefact(p, check_hashes=False) for p in paths]
    bundled = [(art, bundle_path(art.path, art.manifest)) for art in arts]
    if not any(bundle for _, bundle in bundled):
        return [{"name": art.name, "error": "no model.litertlm (make one with `tinyexport bundle`)"} for art in arts]
    rows = []
    for art, bundle in bundled:
        if bundle is None:  # only bundled artefacts get LiteRT-LM's numbers
            continue
        runs, error = [], None
        for _ in range(max(repeats, 1)):
            argv = [
                sys.executable,
                "-m",
                "tinyexport.bench.litertlm_bench",
                str(bundle),
                str(prompt_len),
                str(max(new_tokens - 1, 1)),
                str(threads or 0),
            ]
            try:
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                error = f"no result within {timeout:.0f} s"
                break
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                tail = [line for line in proc.stderr.splitlines() if line.strip()]
                error = tail[-1] if tail else f"exit {proc.returncode}"
                break
            runs.append(json.loads(lines[-1]))
        if error is not None:
            rows.append({"name": art.name, "error": error})
            continue
        row = {
            "name": art.name,
            "measured_by": "LiteRT-LM (litert_lm.Benchmark)",
            "runs": len(runs),
            "prefill_tokens": runs[0]["prefill_tokens"],
            "decode_tokens": runs[0]["decode_tokens"],
        }
        row.update({k: statistics.median(r[k] for r in runs) for k in FIELDS})
        rows.append(row)
    return rows


def print_litertlm(console: Console, rows: list[dict[str, Any]], ours: list[dict[str, Any]]) -> None:
    """LiteRT-LM's own numbers next to ours for the same artefact."""
    by_name = {c["name"]: c for c in ours if not c.get("error")}
    table = Table(title="LiteRT-LM's own measurement (litert_lm.Benchmark, median of runs) beside ours")
    for col in ("candidate", "measured by", "prefill tok/s", "decode ms/token", "TTFT ms", "init s"):
        table.add_column(col, justify="left" if col in ("candidate", "measured by") else "right")
    for row in rows:
        if row.get("error"):
            table.add_row(row["name"], f"[red]LiteRT-LM failed: {row['error']}[/]", "", "", "", "")
            continue
        table.add_row(
            row["name"],
            "LiteRT-LM",
            f"{row['prefill_tok_s']:.1f}",
            f"{row['decode_ms_per_token']:.2f}",
            f"{row['ttft_s'] * 1000:.1f}",
            f"{row['init_s']:.2f}",
        )
        c = by_name.get(row["name"])
        if c is not None:
            table.add_row(
                "",
                "tinyexport (LiteRT)",
                f"{c['prefill_tok_s']['median']:.1f}",
                f"{c['decode_ms_per_token']['median']:.2f}",
                f"{c['ttft_ms']['median']:.1f}",
                f"{c['load_s']:.2f}",
            )
    console.print(table)


def litertlm_markdown(doc: dict[str, Any]) -> list[str]:
    """The report's lines for LiteRT-LM's own numbers beside ours (none when the bench had no --litertlm)."""
    rows = doc.get("litertlm_benchmark") or []
    if not rows:
        return []
    ours = {c["name"]: c for c in doc["candidates"] if not c.get("error")}
    lines = [
        "LiteRT-LM's own measurement (`litert_lm.Benchmark` on model.litertlm, median of runs) beside ours:",
        "",
        "| candidate | measured by | prefill tok/s | decode ms/token | TTFT ms | init s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.get("error"):
            lines.append(f"| {row['name']} | LiteRT-LM failed: {row['error']} | | | | |")
            continue
        lines.append(
            f"| {row['name']} | LiteRT-LM | {row['prefill_tok_s']:.1f} | {row['decode_ms_per_token']:.2f} | "
            f"{row['ttft_s'] * 1000:.1f} | {row['init_s']:.2f} |"
        )
        c = ours.get(row["name"])
        if c is not None:
            lines.append(
                f"| | tinyexport (LiteRT) | {c['prefill_tok_s']['median']:.1f} | "
                f"{c['decode_ms_per_token']['median']:.2f} | {c['ttft_ms']['median']:.1f} | {c['load_s']:.2f} |"
            )
    return [*lines, ""]


def main(argv: list[str]) -> int:
    from tinyexport.runners.litertlm_runner import engine_benchmark

    bundle, prefill, decode, threads = argv
    result = engine_benchmark(Path(bundle), int(prefill), int(decode), threads=int(threads) or None)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
