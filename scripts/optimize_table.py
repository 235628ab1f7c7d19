"""Markdown table of `make optimize`: one row per method from its eval-*.json and bench-*.json.

usage: python scripts/optimize_table.py bench/results/optimize > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _rows(directory: Path) -> list[str]:
    lines = [
        "| Method | decode tok/s | vs baseline | prefill tok/s | Memory MB (peak RSS) | Model size MB "
        "| Perplexity | Δppl | KL mean | top-1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    speed_path = directory / "speed.json"
    speed = {r["name"]: r for r in json.loads(speed_path.read_text())["rows"]} if speed_path.is_file() else {}
    reference = None
    torch_evals = [p for p in directory.glob("eval-*.json") if not p.stem.startswith("eval-exported-")]
    for eval_path in sorted(torch_evals, key=lambda p: (p.stem != "eval-baseline", p.stem)):
        slug = eval_path.stem.removeprefix("eval-")
        rows = json.loads(eval_path.read_text())["candidates"]
        reference = reference or next((r for r in rows if r["name"] == "hf"), None)
        row = next(r for r in rows if r["name"] != "hf")
        bench_path = directory / f"bench-{slug}.json"
        bench = json.loads(bench_path.read_text())["candidates"][0] if bench_path.is_file() else None
        fast = speed.get(slug)
        cells = [
            f"{fast['decode_tok_s']:.1f}" if fast else "n/a",
            f"{fast['decode_vs_baseline']:.2f}x" if fast else "n/a",
            f"{fast['prefill_tok_s']:.0f}" if fast else "n/a",
            f"{bench['peak_rss_mb']:.0f}" if bench else "n/a",
            f"{fast['weight_bytes'] / 1e6:.1f}" if fast else (f"{bench['size_bytes'] / 1e6:.1f}" if bench else "n/a"),
        ]
        lines.append(
            f"| {slug} (`{row['name']}`) | {' | '.join(cells)} | {row['perplexity']:.3f} | {row['delta_ppl']:+.3f} "
            f"| {row['kl_mean']:.4f} | {row['top1_agreement']:.3f} |"
        )
    if reference is not None:
        lines.append(f"| reference (`hf`, transformers fp32) | | | | | | {reference['perplexity']:.3f} | | | |")
    return lines


def exported_rows(directory: Path, fmt: str) -> list[dict]:
    """One dict per artefact of ``make optimize``'s exported section for ``fmt``: quality from
    eval-exported-FMT.json, peak RSS / size / wall tok/s from bench-exported-FMT.json, interleaved CPU
    ms/token from decode-exported-FMT.json (whichever exist)."""

    def load(kind: str) -> dict:
        """Every ``KIND-exported-*.json`` (one per format from the script; runs split by hand add more):
        their candidates / rows merged (same protocol; the eval reference is the stored one)."""
        merged: dict = {}
        for path in sorted(directory.glob(f"{kind}-exported-*.json")):
            doc = json.loads(path.read_text())
            key = "rows" if "rows" in doc else "candidates"
            previous = merged.get(key, [])
            merged = {**doc, key: previous + [r for r in doc[key] if r not in previous]}
        return merged

    evals, bench, decode = load("eval"), load("bench"), load("decode")
    quality = {r["name"]: r for r in evals.get("candidates", []) if r["name"] != "hf"}
    speed = {Path(r["path"]).name if r.get("path") else r["name"]: r for r in bench.get("candidates", [])}
    cpu = {r["label"]: r for r in decode.get("rows", [])}
    names = [n for n in dict.fromkeys([*quality, *speed, *cpu]) if f"_{fmt}_" in n]  # smollm2-135m_FMT_SLUG
    first = ("fp32", "fp16", "int8", "int4")
    slug = lambda n: n.split(f"_{fmt}_", 1)[-1]  # noqa: E731
    names.sort(key=lambda n: (first.index(slug(n)) if slug(n) in first else len(first), slug(n)))
    rows = []
    for name in names:
        q, b, c = quality.get(name), speed.get(name), cpu.get(name)
        rows.append(
            {
                "name": name,
                "slug": name.split(f"_{fmt}_", 1)[-1],
                "size_mb": b["size_bytes"] / 1e6 if b else None,
                "peak_rss_mb": b.get("peak_rss_mb") if b else None,
                "decode_tok_s": (b.get("decode_tok_s") or {}).get("median") if b else None,
                "cpu_ms": c["cpu_ms_per_token"] if c else None,
                "vs_first": c["vs_first"] if c else None,
                "perplexity": q["perplexity"] if q else None,
                "delta_ppl": q["delta_ppl"] if q else None,
                "kl_mean": q["kl_mean"] if q else None,
                "top1": q["top1_agreement"] if q else None,
                "reference_ppl": next(
                    (r["perplexity"] for r in evals.get("candidates", []) if r["name"] == "hf"), None
                ),
            }
        )
    return rows


def big_rows(directory: Path) -> list[str]:
    """The 1.1B shape (``BIG=1``): one ``bench-1.1b-SLUG.json`` per method; decode relative to the baseline."""
    docs = {p.stem.removeprefix("bench-1.1b-"): json.loads(p.read_text()) for p in directory.glob("bench-1.1b-*.json")}
    if not docs:
        return []
    base = docs.get("baseline", {}).get("candidates", [{}])[0]
    base_tok_s = (base.get("decode_tok_s") or {}).get("median")
    cpus = sorted({d.get("machine", {}).get("cpu_model", "?") for d in docs.values()})
    lines = [
        "## The 1.1B TinyLlama shape (`BIG=1 make optimize`, random weights: no perplexity)",
        "",
        "One `tinyexport bench --torch=standard --checkpoint tinyllama-1.1b --random-weights [--transform ...]`",
        "process per method, run one after another (prompt 64 + 32 tokens, 2 threads, medians of 3), on",
        f"{' and '.join(cpus)} (2 cores).",
        "",
        "| Method | decode tok/s | vs baseline | prefill tok/s | Memory MB (peak RSS) | Model size MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for slug in sorted(docs, key=lambda s: (s != "baseline", s)):
        c = docs[slug]["candidates"][0]
        tok_s = (c.get("decode_tok_s") or {}).get("median")
        ratio = tok_s / base_tok_s if tok_s and base_tok_s else None
        lines.append(
            f"| {slug} (`{c['name']}`) | {_fmt(tok_s, '.2f')} | {_fmt(ratio, '.2f')}{'x' if ratio else ''} "
            f"| {_fmt((c.get('prefill_tok_s') or {}).get('median'), '.0f')} | {_fmt(c.get('peak_rss_mb'), '.0f')} "
            f"| {_fmt(c.get('weight_bytes', c.get('size_bytes')) / 1e6, '.1f')} |"
        )
    return [*lines, ""]


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def exported_table(directory: Path, fmt: str) -> list[str]:
    rows = exported_rows(directory, fmt)
    if not rows:
        return []
    lines = [
        f"### {fmt}",
        "",
        "| Method | decode tok/s (bench, wall) | CPU ms/token (interleaved) | ms/token vs first | Memory MB (peak RSS) "
        "| Model size MB | Perplexity | Δppl | Δppl % | KL mean | top-1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        pct = None if r["delta_ppl"] is None else 100 * r["delta_ppl"] / r["reference_ppl"]
        lines.append(
            f"| {r['slug']} | {_fmt(r['decode_tok_s'], '.1f')} | {_fmt(r['cpu_ms'], '.2f')} "
            f"| {_fmt(r['vs_first'], '.2f')}{'x' if r['vs_first'] is not None else ''} | {_fmt(r['peak_rss_mb'], '.0f')} "
            f"| {_fmt(r['size_mb'], '.1f')} | {_fmt(r['perplexity'], '.3f')} | {_fmt(r['delta_ppl'], '+.3f')} "
            f"| {_fmt(pct, '+.2f')} | {_fmt(r['kl_mean'], '.4f')} | {_fmt(r['top1'], '.3f')} |"
        )
    return [*lines, ""]


HEADER = """# `make optimize`: transforms on SmolLM2-135M (real weights)

Quality: `tinyexport eval perplexity [--transform ...] --max-tokens 512 --window 512 --stride 256` (first
512 tokens of *Macbeth*, 511 scored) against the untransformed transformers fp32 reference.
Speed: `scripts/optimize_speed.py` (speed.json): our PyTorch model (sdpa), {threads} torch thread(s), prompt
{prompt} random ids then {new_tokens} greedy decode steps, every variant run in turn in each of {rounds}
rounds in one process; medians over rounds, and decode speed relative to the baseline *of the same round*.
Model size = bytes of the weights the model holds after the transform. Memory: peak RSS of a `tinyexport
bench --torch` worker (`bench-*.json`, 2 threads, prompt 64 + 32 tokens; the transform runs after the
checkpoint is loaded, so a pruned model's peak includes the unpruned weights it was cut from).

The committed torch rows (speed.json, bench-*.json) were measured on a quiet {cpu} VM (2 cores,
2026-12-02, load ~1.5); timings on these VMs still move 2-8x between runs, so compare within a table. Perplexity, KL and
top-1 are deterministic. `prune-heads-*` take query heads out of each layer (per-layer normalised
criterion; `:global` compares raw scores across layers); `prune-groups-*` remove whole KV groups
(`prune-heads=0.25[:activation]:groups`): the same 69 query heads as `prune-heads-0.25` plus 23 of the
90 KV heads.
"""


EXPORTED_HEADER = """
## Exported artefacts (`EXPORTED=1 make optimize`)

Every artefact converted with a 1024-slot cache. Quality: ONE `tinyexport eval perplexity ART...` run
(same protocol and reference as above). Memory, size and wall-clock decode tok/s: ONE `tinyexport bench
ART...` run (each artefact in its own process, prompt 64 + 32 tokens, 2 threads; wall time on a shared
machine). CPU ms/token: `scripts/optimize_decode.py`, all artefacts in one process, one runtime thread,
prompt 64 then 16 decode steps, interleaved over 5 rounds, this process's CPU time (robust to the other
jobs' load); "ms/token vs first" is the median per-round ratio of that time to the first row's (fp32):
below 1 is faster. Plots: `size_vs_ppl.png`,
`size_vs_speed.png`.
"""


if __name__ == "__main__":
    speed_path = Path(sys.argv[1]) / "speed.json"
    meta = json.loads(speed_path.read_text()) if speed_path.is_file() else {}
    base_bench = Path(sys.argv[1]) / "bench-baseline.json"
    cpu = json.loads(base_bench.read_text())["machine"]["cpu_model"] if base_bench.is_file() else "2-core"
    fields = {k: meta.get(k, "?") for k in ("threads", "prompt", "new_tokens", "rounds")}
    print(HEADER.format(cpu=cpu, **fields))
    print("\n".join(_rows(Path(sys.argv[1]))))
    exported = [line for fmt in ("onnx", "tflite") for line in exported_table(Path(sys.argv[1]), fmt)]
    if exported:
        print(EXPORTED_HEADER)
        print("\n".join(exported))
    big = big_rows(Path(sys.argv[1]))
    if big:
        print("\n".join(["", *big]))
    notes = Path(sys.argv[1]) / "seed_comparison.md"  # hand-written: the seed's claims beside ours
    if notes.is_file():
        print(notes.read_text())
