"""Plots of `make optimize`'s exported rows: perplexity vs size and decode speed vs size.

usage: python scripts/optimize_plots.py bench/results/optimize   (writes size_vs_ppl.png, size_vs_speed.png)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from optimize_table import exported_rows


def main(directory: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {fmt: exported_rows(directory, fmt) for fmt in ("onnx", "tflite")}
    plots = (
        ("size_vs_ppl.png", "perplexity", "perplexity (first 512 tokens of Macbeth, log scale)", True),
        ("size_vs_speed.png", "cpu_ms", "decode tok/s per CPU-second (1 thread, interleaved)", False),
    )
    for filename, key, ylabel, log in plots:
        fig, ax = plt.subplots(figsize=(8, 5))
        for (fmt, rows), marker in zip(series.items(), ("o", "s")):
            points = [(r["size_mb"], r[key], r["slug"]) for r in rows if r["size_mb"] and r[key]]
            if key == "cpu_ms":
                points = [(x, 1000 / y, s) for x, y, s in points]
            if not points:
                continue
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=fmt)
            for x, y, slug in points:
                ax.annotate(slug, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("model file size (MB)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"SmolLM2-135M exported: {ylabel.split(' (')[0]} vs size")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(directory / filename, dpi=110)
        plt.close(fig)
        print(f"wrote {directory / filename}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
