"""``logs/bench.csv``: one row per benchmarked candidate per run, appended, with a fixed header."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from tinyexport.errors import UserError

SPREADS = ("ttft_ms", "prefill_tok_s", "decode_tok_s", "decode_ms_per_token")
CSV_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "git_commit",
    "tinyexport_version",
    "host",
    "cpu_model",
    "cores",
    "ram_gb",
    "os",
    "python",
    "runtime_versions",
    "threads",
    "model",
    "candidate",
    "format",
    "recipe",
    "prompt_len",
    "new_tokens",
    "warmup",
    "repeats",
    "size_bytes",
    "kv_cache_slots",
    "import_s",
    "load_s",
    "peak_rss_mb",
    *(f"{metric}_{stat}" for metric in SPREADS for stat in ("median", "p10", "p90")),
    "decode_bound_tok_s",
    "decode_roofline_fraction",
    "prefill_bound_tok_s",
    "prefill_roofline_fraction",
    "bandwidth_gb_s",
    "matmul_gflops",
    "context_decode_tok_s",
)


class CsvSchemaError(UserError, ValueError):
    """An existing log has another header: appending would mix columns."""


def check_log(path: Path) -> None:
    """Refuse (before any benchmarking) a log file whose header is not ours."""
    path = Path(path)
    if path.is_dir():
        raise CsvSchemaError(f"--log-csv {path} is a directory; pass a file path")
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, newline="") as handle:
        header = next(csv.reader(handle), [])
    if tuple(header) != CSV_COLUMNS:
        raise CsvSchemaError(
            f"{path} has a different header (an older schema?); move it away or pass another --log-csv"
        )


def csv_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per successfully measured candidate of a bench document."""
    machine, settings, probes = document["machine"], document["settings"], document["probes"]
    versions = ";".join(f"{k}={v}" for k, v in sorted(machine["runtime_versions"].items()))
    rows = []
    for cand in document["candidates"]:
        if cand.get("error"):
            continue
        row: dict[str, Any] = {
            "timestamp": document["created"],
            "git_commit": machine["git_commit"],
            "tinyexport_version": machine["tinyexport_version"],
            "host": machine["host"],
            "cpu_model": machine["cpu_model"],
            "cores": machine["cores"],
            "ram_gb": machine["ram_gb"],
            "os": machine["os"],
            "python": machine["python"],
            "runtime_versions": versions,
            "threads": settings["threads"] or "",
            "model": document["model"]["name"],
            "candidate": cand["name"],
            "format": cand["format"],
            "recipe": cand["recipe"],
            "prompt_len": settings["prompt_len"],
            "new_tokens": settings["new_tokens"],
            "warmup": settings["warmup"],
            "repeats": settings["repeats"],
            "size_bytes": cand["size_bytes"],
            "kv_cache_slots": cand["kv_cache_slots"],
            "import_s": f"{cand['import_s']:.3f}",
            "load_s": f"{cand['load_s']:.3f}",
            "peak_rss_mb": f"{cand['peak_rss_mb']:.1f}",
            "decode_bound_tok_s": f"{cand['roofline']['decode']['bound_tok_s']:.2f}",
            "decode_roofline_fraction": f"{cand['roofline']['decode']['fraction']:.4f}",
            "prefill_bound_tok_s": f"{cand['roofline']['prefill']['bound_tok_s']:.2f}",
            "prefill_roofline_fraction": f"{cand['roofline']['prefill']['fraction']:.4f}",
            "bandwidth_gb_s": probes["bandwidth_gb_s"],
            "matmul_gflops": probes["matmul_gflops"],
            "context_decode_tok_s": ";".join(
                f"{p['context']}:{p['decode_tok_s']['median']:.2f}" for p in cand.get("contexts", [])
            ),
        }
        for metric in SPREADS:
            for stat in ("median", "p10", "p90"):
                row[f"{metric}_{stat}"] = f"{cand[metric][stat]:.4f}"
        rows.append(row)
    return rows


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` (header first if the file is new) in a single write."""
    path = Path(path)
    check_log(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS)
    if not path.is_file() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerows(rows)
    with open(path, "a", newline="") as handle:
        handle.write(buffer.getvalue())
