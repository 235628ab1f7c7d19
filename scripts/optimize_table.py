"""Markdown table of `make optimize`: one row per method from its eval-*.json and bench-*.json.

usage: python scripts/optimize_table.py bench/results/optimize > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _rows(directory: Path) -> list[str]:
    lines = [
        "| Method | decode tok/s | prefill tok/s | Memory MB (peak RSS) | Model size MB | Perplexity | Δppl | KL mean | top-1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    reference = None
    for eval_path in sorted(directory.glob("eval-*.json"), key=lambda p: (p.stem != "eval-baseline", p.stem)):
        slug = eval_path.stem.removeprefix("eval-")
        report = json.loads(eval_path.read_text())
        rows = report["candidates"]
        reference = reference or next((r for r in rows if r["name"] == "hf"), None)
        row = next(r for r in rows if r["name"] != "hf")
        bench_path = directory / f"bench-{slug}.json"
        speed = "| n/a | n/a | n/a | n/a "
        if bench_path.is_file():
            cand = json.loads(bench_path.read_text())["candidates"][0]
            speed = (
                f"| {cand['decode_tok_s']['median']:.1f} | {cand['prefill_tok_s']['median']:.0f} "
                f"| {cand['peak_rss_mb']:.0f} | {cand['size_bytes'] / 1e6:.1f} "
            )
        lines.append(
            f"| {slug} (`{row['name']}`) {speed}| {row['perplexity']:.3f} | {row['delta_ppl']:+.3f} "
            f"| {row['kl_mean']:.4f} | {row['top1_agreement']:.3f} |"
        )
    if reference is not None:
        lines.append(f"| reference (`hf`, transformers fp32) | | | | | {reference['perplexity']:.3f} | | | |")
    return lines


HEADER = """# `make optimize`: transforms on SmolLM2-135M (real weights)

Quality: `tinyexport eval perplexity [--transform ...] --max-tokens 512 --window 512 --stride 256` (first
512 tokens of *Macbeth*, 511 scored) against the untransformed transformers fp32 reference.
Speed/memory/size: `tinyexport bench --torch=standard [--transform ...] --prompt-len 64 --new-tokens 32
--warmup 1 --repeats 3 --threads 2` (medians; our PyTorch model, eager). Size = bytes of the weights the
model holds after the transform (the safetensors file for the baseline); memory = peak RSS of the bench
worker process. `n/a`: not benched (time).

**Caveat**: the 2-core machine was shared with ~6 other jobs (load average 12-18) while this ran, so
absolute speeds are several times below `make bench`'s and individual rows move by 2x between runs;
only large differences mean anything. Perplexity, KL and top-1 are deterministic.
"""


if __name__ == "__main__":
    print(HEADER)
    print("\n".join(_rows(Path(sys.argv[1]))))
