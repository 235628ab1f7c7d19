"""``tinyexport report``: bench, eval and suite JSON documents (files or run records) -> one markdown
report with PNG plots, and on request the same as one self-contained HTML page.

Bench documents come from ``tinyexport bench --json`` (``"kind": "tinyexport-bench"``); eval documents
from ``tinyexport eval --json`` (``{"text", "protocol", "candidates": [{"name", "perplexity",
"delta_ppl", "kl_mean", "kl_p99", "top1_agreement", "seconds"}]}``). Quality is joined with size by
candidate name across the bench documents given.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tinyexport.atomic import write_text_atomic
from tinyexport.errors import UserError

from . import plots
from .litertlm_bench import litertlm_markdown
from .llama_cpp_ratios import llama_cpp_markdown
from .table import context_cell, context_fills

EVAL_FIELDS = ("name", "perplexity", "delta_ppl", "kl_mean", "kl_p99", "top1_agreement", "seconds")


class ReportInputError(UserError, ValueError):
    """A report input is missing, not JSON, or neither a bench nor an eval document."""


def load_document(path: Path) -> tuple[str, dict[str, Any]]:
    """(kind, document) with kind ``"bench"``, ``"eval"``, ``"suite"``, ``"sweep"`` or ``"scaling"``."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(
            f"report input {path} does not exist; pass JSON files from `tinyexport bench --json` "
            "or `tinyexport eval --json`"
        )
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportInputError(f"{path} is not valid JSON ({err}); pass a --json output of bench or eval") from None
    return classify(doc, str(path)), doc


def classify(doc: Any, where: str) -> str:
    """The kind of a report document (a file's content or a run record's result); refuses anything else."""
    if isinstance(doc, dict) and doc.get("kind") == "tinyexport-bench" and isinstance(doc.get("candidates"), list):
        return "bench"
    if isinstance(doc, dict) and {"text", "protocol", "candidates"} <= set(doc) and isinstance(doc["candidates"], list):
        missing = {f for c in doc["candidates"] for f in EVAL_FIELDS if f not in c}
        if missing:
            raise ReportInputError(
                f"{where}: eval candidates lack {sorted(missing)}; regenerate it with `tinyexport eval --json`"
            )
        return "eval"
    if isinstance(doc, dict) and {"checkpoint", "models", "tasks"} <= set(doc) and isinstance(doc["tasks"], list):
        return "suite"
    if isinstance(doc, dict) and doc.get("kind") == "tinyexport-sweep" and isinstance(doc.get("cells"), list):
        return "sweep"
    if isinstance(doc, dict) and doc.get("kind") == "tinyexport-scaling" and isinstance(doc.get("rows"), list):
        return "scaling"
    raise ReportInputError(
        f"{where} is neither a bench document (`tinyexport bench --json`) nor an eval document "
        "(`tinyexport eval --json`) nor a sweep's sweep.json"
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "model"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def bench_section(doc: dict[str, Any], out: Path, prefix: str) -> list[str]:
    """Markdown (and PNGs in ``out``) for one bench document."""
    m, s, p = doc["machine"], doc["settings"], doc["probes"]
    ok = [c for c in doc["candidates"] if not c.get("error")]
    lines = [
        f"## Benchmark: {doc['model']['name']}",
        "",
        (f"Remote run via {m['via']} on {m['host']}: " if m.get("via") else "")
        + f"{m['cpu_model']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['os']}; tinyexport "
        f"{m['tinyexport_version']} ({m['git_commit']}); {doc['created']}.",
        f"Prompt {s['prompt_len']} random token ids (seed {s['seed']}), {s['new_tokens']} greedy new tokens, "
        f"{s['warmup']} warm-up + {s['repeats']} timed runs, threads {s['threads'] or 'runtime default'}. "
        f"Roofline: read bandwidth {p['bandwidth_gb_s']:.1f} GB/s, fp32 matmul peak {p['matmul_gflops']:.0f} "
        f"GFLOP/s (numpy, {p['threads']} threads).",
        "",
        "| candidate | format/recipe | size MB | load s | peak RSS MiB | TTFT ms | prefill tok/s | "
        "decode tok/s (p10–p90) | ms/token | decode bound tok/s | of bound | prefill bound tok/s (fp32 peak) | of bound |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in doc["candidates"]:
        if c.get("error"):
            lines.append(
                f"| {c['name']} | {c['format']}/{c['recipe']} | {c['size_bytes'] / 1e6:.1f} | failed: "
                f"{c['error']} |" + " |" * 9
            )
            continue
        r, d = c["roofline"], c["decode_tok_s"]
        lines.append(
            f"| {c['name']} | {c['format']}/{c['recipe']} | {c['size_bytes'] / 1e6:.1f} | {c['load_s']:.2f} | "
            f"{c['peak_rss_mb']:.0f} | {c['ttft_ms']['median']:.1f} | {c['prefill_tok_s']['median']:.1f} | "
            f"{d['median']:.1f} ({d['p10']:.1f}–{d['p90']:.1f}) | {c['decode_ms_per_token']['median']:.2f} | "
            f"{r['decode']['bound_tok_s']:.1f} | {100 * r['decode']['fraction']:.0f}% | "
            f"{r['prefill']['bound_tok_s']:.0f} | {100 * r['prefill']['fraction']:.0f}% |"
        )
    lines.append("")
    lines += llama_cpp_markdown(doc)
    lines += litertlm_markdown(doc)
    if not ok:
        return lines
    names = [c["name"] for c in ok]
    figures = [
        plots.bar_chart(
            out / f"{prefix}-decode.png",
            f"decode tok/s — {doc['model']['name']}",
            "tokens / s",
            names,
            [c["decode_tok_s"]["median"] for c in ok],
            [c["decode_tok_s"]["p10"] for c in ok],
            [c["decode_tok_s"]["p90"] for c in ok],
            bounds=[c["roofline"]["decode"]["bound_tok_s"] for c in ok],
            bound_label="bandwidth bound",
        ),
        plots.bar_chart(
            out / f"{prefix}-ttft.png",
            f"time to first token (prompt {s['prompt_len']})",
            "ms",
            names,
            [c["ttft_ms"]["median"] for c in ok],
            [c["ttft_ms"]["p10"] for c in ok],
            [c["ttft_ms"]["p90"] for c in ok],
        ),
        plots.bar_chart(
            out / f"{prefix}-size.png", "model size on disk", "MB", names, [c["size_bytes"] / 1e6 for c in ok]
        ),
        plots.scatter_chart(
            out / f"{prefix}-speed-vs-size.png",
            "decode speed vs size",
            "size on disk (MB)",
            "decode tok/s (median)",
            [{"name": c["name"], "x": c["size_bytes"] / 1e6, "y": c["decode_tok_s"]["median"]} for c in ok],
        ),
    ]
    with_context = [c for c in ok if c.get("contexts")]
    if with_context:
        series = {
            c["name"]: ([q["context"] for q in c["contexts"]], [q["decode_tok_s"]["median"] for q in c["contexts"]])
            for c in with_context
        }
        bounds = {
            c["name"]: ([q["context"] for q in c["contexts"]], [q["bound_tok_s"] for q in c["contexts"]])
            for c in with_context
        }
        figures.append(
            plots.line_chart(
                out / f"{prefix}-context.png",
                "decode tok/s vs cache fill (dashed: bound)",
                "tokens in the KV cache",
                "tokens / s",
                series,
                dashed=bounds,
            )
        )
        fills = context_fills(with_context)
        lines += [
            "Decode tok/s at each cache fill (median over the steps ending there; bound; fraction):",
            "",
            "| candidate | " + " | ".join(map(str, fills)) + " |",
            "|---|" + "---:|" * len(fills),
        ]
        for c in with_context:
            lines.append(f"| {c['name']} | " + " | ".join(context_cell(c, fill) for fill in fills) + " |")
        lines.append("")
    lines += [f"![{f.stem}]({f.name})" for f in figures] + [""]
    return lines


def eval_section(doc: dict[str, Any], sizes: dict[str, float], out: Path, prefix: str) -> list[str]:
    text, proto = doc["text"], doc["protocol"]
    lines = [
        f"## Quality: {Path(str(text.get('path', 'text'))).name}",
        "",
        f"{text.get('tokens')} tokens (sha256 {str(text.get('sha256', ''))[:12]}), window {proto.get('window')}, "
        f"stride {proto.get('stride')}.",
        "",
        "| candidate | size MB | perplexity | Δppl | KL mean | KL p99 | top-1 | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in doc["candidates"]:
        size = sizes.get(c["name"])
        lines.append(
            f"| {c['name']} | {_fmt(size)} | {_fmt(c['perplexity'], 3)} | {_fmt(c['delta_ppl'], 3)} | "
            f"{_fmt(c['kl_mean'], 4)} | {_fmt(c['kl_p99'], 4)} | {_fmt(c['top1_agreement'], 3)} | "
            f"{_fmt(c['seconds'], 1)} |"
        )
    lines.append("")
    joined = [c for c in doc["candidates"] if c["name"] in sizes and c.get("perplexity") is not None]
    unjoined = [c["name"] for c in doc["candidates"] if c["name"] not in sizes]
    if unjoined:
        lines += [f"No size for {', '.join(unjoined)} (not in any bench document given), so not plotted.", ""]
    if joined:
        figures = [
            plots.scatter_chart(
                out / f"{prefix}-ppl-vs-size.png",
                "perplexity vs size",
                "size on disk (MB)",
                "perplexity",
                [{"name": c["name"], "x": sizes[c["name"]], "y": c["perplexity"]} for c in joined],
            ),
            plots.scatter_chart(
                out / f"{prefix}-kl-vs-size.png",
                "KL(reference ‖ candidate) vs size",
                "size on disk (MB)",
                "mean KL (nats/token)",
                [
                    {"name": c["name"], "x": sizes[c["name"]], "y": c["kl_mean"]}
                    for c in joined
                    if c.get("kl_mean") is not None
                ],
            ),
        ]
        lines += [f"![{f.stem}]({f.name})" for f in figures] + [""]
    return lines


def candidate_sizes(bench_docs: list[dict[str, Any]]) -> dict[str, float]:
    """Candidate name -> size in MB over all bench documents; a name with two different sizes is dropped."""
    seen: dict[str, set[float]] = {}
    for doc in bench_docs:
        for c in doc["candidates"]:
            seen.setdefault(c["name"], set()).add(c["size_bytes"] / 1e6)
    return {name: next(iter(v)) for name, v in seen.items() if len(v) == 1}


def sweep_section(doc: dict[str, Any], out: Path, prefix: str) -> list[str]:
    """The sweep's ranked cells (gate, Pareto front, recommendation) and size / speed / KL plots."""
    gate = doc.get("gate") or {}
    kl, dppl = gate.get("max_kl"), gate.get("max_dppl_pct")
    lines = [
        "## Sweep: ranked cells",
        "",
        f"Gate: KL ≤ {'∞' if kl is None else f'{kl:g}'}, Δppl ≤ {'∞' if dppl is None else f'{dppl:g}%'}. "
        "`pareto`: on the front of size (min) / decode tok/s (max) / KL (min) among the cells that pass.",
        "",
        "| # | cell | status | size MB | decode tok/s | prefill tok/s | perplexity | Δppl % | KL mean | top-1 | "
        "convert s | convert peak RSS MiB | reason |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for i, c in enumerate(doc["cells"], 1):
        m = c.get("metrics") or {}
        kl_text = "–" if m.get("kl_mean") is None else f"{m['kl_mean']:.3g}"
        dppl_text = "–" if m.get("dppl_pct") is None else f"{m['dppl_pct']:+.2f}"
        lines.append(
            f"| {i} | {c['name']} | {c['status']} | {_fmt(m.get('size_mb'))} | {_fmt(m.get('decode_tok_s'))} | "
            f"{_fmt(m.get('prefill_tok_s'), 0)} | {_fmt(m.get('perplexity'), 3)} | {dppl_text} | {kl_text} | "
            f"{_fmt(m.get('top1_agreement'), 3)} | {_fmt(m.get('convert_s'), 0)} | "
            f"{_fmt(m.get('convert_peak_rss_mb'), 0)} | {c.get('reason', '')} |"
        )
    best = doc.get("recommendation")
    lines += [
        "",
        f"Recommendation: `{best}`." if best else "Recommendation: none (no cell passes the gate).",
        "",
    ]
    measured = [c for c in doc["cells"] if (c.get("metrics") or {}).get("size_mb") is not None]
    if measured:

        def pts(metric: str) -> list[dict[str, Any]]:
            return [
                {"name": c["name"], "x": c["metrics"]["size_mb"], "y": c["metrics"][metric], "group": c["status"]}
                for c in measured
                if c["metrics"].get(metric) is not None
            ]

        figures = [
            plots.scatter_chart(
                out / f"{prefix}-speed-vs-size.png",
                "decode speed vs size",
                "size (MB)",
                "decode tok/s",
                pts("decode_tok_s"),
            ),
            plots.scatter_chart(
                out / f"{prefix}-kl-vs-size.png", "KL(reference ‖ cell) vs size", "size (MB)", "mean KL", pts("kl_mean")
            ),
        ]
        lines += [f"![{f.stem}]({f.name})" for f in figures] + [""]
    return lines


def scaling_section(doc: dict[str, Any], out: Path, prefix: str) -> list[str]:
    """The scaling study: the model ladder, every export's costs beside its roofline bound, the power-law
    fits (exponent, R²) and log-log plots of cost vs parameters with the fitted lines."""
    s = doc["settings"]
    lines = [
        "## Scaling: cost vs model size",
        "",
        f"KV cache {s['cache_length']}, bench prompt {s['prompt_len']} tokens, {s['new_tokens']} new tokens, "
        f"median of {s['repeats']}. FLOPs per decoded token at context {s['prompt_len'] + s['new_tokens'] // 2} "
        "(`tinyexport flops`); roofline decode bound = bytes read per token / measured read bandwidth.",
        "",
        "| model | weights | parameters (M) | hidden | layers | heads (KV) | MLP | vocab |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in doc["models"]:
        lines.append(
            f"| {m['name']} | {m['weights']} | {m['params'] / 1e6:.1f} | {m['hidden']} | {m['layers']} | "
            f"{m['heads']} ({m['kv_heads']}) | {m['ffn']} | {m['vocab']} |"
        )
    lines += [
        "",
        "| model | format/recipe | decode MFLOP/token | file MB | convert s | convert peak RSS MiB | decode ms/token | "
        "roofline ms/token | fraction | prefill tok/s | prefill bound tok/s | bench peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        series = f"{r['format']}/{r['recipe']}"
        if r.get("error"):
            lines.append(
                f"| {r['model']} | {series} | {r['decode_flops_per_token'] / 1e6:.1f} | {r['error']} |||||||||"
            )
            continue
        lines.append(
            f"| {r['model']} | {series} | {r['decode_flops_per_token'] / 1e6:.1f} | {_fmt(r.get('size_mb'))} | "
            f"{_fmt(r.get('convert_s'))} | {_fmt(r.get('convert_peak_rss_mb'), 0)} | "
            f"{_fmt(r.get('decode_ms_per_token'), 2)} | {_fmt(r.get('roofline_decode_ms_per_token'), 2)} | "
            f"{_fmt(r.get('roofline_decode_fraction'), 2)} | {_fmt(r.get('prefill_tok_s'), 0)} | "
            f"{_fmt(r.get('roofline_prefill_tok_s'), 0)} | {_fmt(r.get('bench_peak_rss_mb'), 0)} |"
        )
    lines += [
        "",
        "Power laws `cost = a · params^b` (least squares on log-log; R² of log cost):",
        "",
        "| format/recipe | cost | exponent b | a | R² | sizes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for f in doc["fits"]:
        lines.append(
            f"| {f['format']}/{f['recipe']} | {f['label']} | {f['exponent']:.3f} | {f['coefficient']:.3g} | "
            f"{f['r2']:.4f} | {f['points']} |"
        )
    lines.append("")
    ok = [r for r in doc["rows"] if not r.get("error") and r.get("decode_ms_per_token")]
    figures = []
    for metric, label in (
        ("decode_ms_per_token", "decode ms/token"),
        ("size_mb", "file MB"),
        ("convert_s", "conversion s"),
    ):
        points, fitted = [], {}
        for f in (f for f in doc["fits"] if f["metric"] == metric):
            xs = sorted(r["params"] for r in ok if (r["format"], r["recipe"]) == (f["format"], f["recipe"]))
            if xs:
                fitted[f"{f['format']}/{f['recipe']} fit b={f['exponent']:.2f}"] = (
                    xs,
                    [f["coefficient"] * x ** f["exponent"] for x in xs],
                )
        for r in ok:
            if r.get(metric):
                points.append({"name": "", "x": r["params"], "y": r[metric], "group": f"{r['format']}/{r['recipe']}"})
            if metric == "decode_ms_per_token" and r.get("roofline_decode_ms_per_token"):
                points.append(
                    {"name": "", "x": r["params"], "y": r["roofline_decode_ms_per_token"], "group": "roofline bound"}
                )
        if points:
            figures.append(
                plots.scatter_chart(
                    out / f"{prefix}-{metric}.png", f"{label} vs parameters", "parameters", label, points, True, fitted
                )
            )
    return lines + [f"![{f.stem}]({f.name})" for f in figures] + [""]


def suite_section(doc: dict[str, Any]) -> list[str]:
    """The task suite's table: random, untrained and trained baselines, then the candidates."""
    models = list(doc["models"])
    label = {"untrained": "untrained", "trained": "trained (hf)"}
    lines = [
        f"## Task suite: {doc['checkpoint']}",
        "",
        "| task | items | random | " + " | ".join(label.get(m, m) for m in models) + " |",
        "|---|---:|---:|" + "---:|" * len(models),
    ]
    for t in doc["tasks"]:
        accs = t["accuracy"]
        lines.append(
            f"| {t['task']} | {t['items']} | {100 * t['random_baseline']:.1f}% | "
            + " | ".join(f"{100 * accs[m]:.1f}%" if m in accs else "–" for m in models)
            + " |"
        )
    return lines + [""]


def machine_section(bench_docs: list[dict[str, Any]]) -> list[str]:
    """One row per distinct machine the bench documents were measured on."""
    seen: dict[tuple, dict[str, Any]] = {}
    for doc in bench_docs:
        m = doc["machine"]
        seen.setdefault((m.get("host"), m.get("cpu_model"), m.get("os")), m)
    if not seen:
        return []
    lines = [
        "## Machines",
        "",
        "| host | CPU | cores | RAM GB | OS | Python | tinyexport | runtimes |",
        "|---|---|---:|---:|---|---|---|---|",
    ]
    for m in seen.values():
        versions = ", ".join(
            f"{k} {v}"
            for k, v in sorted((m.get("runtime_versions") or {}).items())
            if k not in ("python", "tinyexport")
        )
        lines.append(
            f"| {m.get('host')} | {m.get('cpu_model')} | {m.get('cores')} | {m.get('ram_gb')} | {m.get('os')} | "
            f"{m.get('python')} | {m.get('tinyexport_version')} ({m.get('git_commit')}) | {versions} |"
        )
    return lines + [""]


def build_report(docs: list[tuple[str, str, dict[str, Any]]], out: Path, title: str = "tinyexport report") -> list[str]:
    """Markdown lines for ``docs`` ((origin, kind, document) each), PNG plots drawn into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    bench_docs = [d for _, kind, d in docs if kind == "bench"]
    sizes = candidate_sizes(bench_docs)
    lines = [f"# {title}", "", "Inputs: " + ", ".join(f"`{origin}`" for origin, _, _ in docs), ""]
    used: set[str] = set()
    for i, (origin, kind, doc) in enumerate(docs):
        if kind == "suite":
            lines += suite_section(doc)
            continue
        if kind in ("sweep", "scaling"):
            prefix = kind if kind not in used else f"{kind}-{i}"
            used.add(prefix)
            lines += (sweep_section if kind == "sweep" else scaling_section)(doc, out, prefix)
            continue
        base = _slug(doc["model"]["name"] if kind == "bench" else Path(origin).stem)
        prefix = f"{kind}-{base}" if f"{kind}-{base}" not in used else f"{kind}-{base}-{i}"
        used.add(prefix)
        lines += bench_section(doc, out, prefix) if kind == "bench" else eval_section(doc, sizes, out, prefix)
    return lines + machine_section(bench_docs)


def write_report(
    inputs: list[Path],
    out: Path,
    title: str = "tinyexport report",
    records: list[tuple[str, dict[str, Any]]] = (),
    html: bool = False,
) -> list[Path]:
    """Read every input file and record result (all checked first), draw the plots into ``out``, write
    ``out/report.md`` and with ``html`` a self-contained ``out/report.html``; return what was written."""
    docs = [(str(path), *load_document(path)) for path in inputs]
    docs += [(origin, classify(doc, origin), doc) for origin, doc in records]
    lines = build_report(docs, out, title)
    targets = [out / "report.md"]
    write_text_atomic(targets[0], "\n".join(lines))
    if html:
        from .html_report import render_html

        targets.append(out / "report.html")
        write_text_atomic(targets[1], render_html(lines, out, title))
    return targets
