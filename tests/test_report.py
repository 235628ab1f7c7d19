"""`tinyexport report`: bench + eval JSON -> markdown with PNG plots, quality joined with size by name."""

from __future__ import annotations

import json

import pytest

from .cli_helpers import assert_bad_input, run_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report_bench")
    out = tmp / "bench.json"
    res = run_cli(
        "bench",
        "--checkpoint",
        "tiny",
        "--random-weights",
        "--torch",
        "--prompt-len",
        "8",
        "--new-tokens",
        "4",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--context",
        "24,40",
        "--json",
        str(out),
        "--no-log",
        cache=tmp / "cache",
    )
    assert res.code == 0, res.stderr
    return out


def eval_doc(names):
    """An eval document in the quality helper's fixed schema."""
    return {
        "text": {"path": "corpus/sample.txt", "sha256": "0" * 64, "tokens": 2048},
        "protocol": {"window": 256, "stride": 128},
        "candidates": [
            {
                "name": n,
                "perplexity": 12.5 + i,
                "delta_ppl": float(i),
                "kl_mean": 0.01 * i,
                "kl_p99": 0.05 * i,
                "top1_agreement": 1.0 - 0.01 * i,
                "seconds": 3.0,
            }
            for i, n in enumerate(names)
        ],
    }


def test_markdown_and_plots(tmp_path, bench_json):
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps(eval_doc(["torch:standard", "not_benchmarked"])))
    out = tmp_path / "rep"
    res = run_cli("report", str(bench_json), str(ev), "-o", str(out))
    assert res.code == 0, res.stderr
    md = (out / "report.md").read_text()
    bench = json.loads(bench_json.read_text())
    size_mb = bench["candidates"][0]["size_bytes"] / 1e6
    assert "## Benchmark: tiny (random seed 0)" in md and "## Quality: sample.txt" in md
    assert f"| torch:standard | {size_mb:.1f} | 12.500 |" in md  # eval joined with the bench size by name
    assert "No size for not_benchmarked" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(
        [
            "bench-tiny-random-seed-0-decode.png",
            "bench-tiny-random-seed-0-ttft.png",
            "bench-tiny-random-seed-0-size.png",
            "bench-tiny-random-seed-0-speed-vs-size.png",
            "bench-tiny-random-seed-0-context.png",
            "eval-eval-ppl-vs-size.png",
            "eval-eval-kl-vs-size.png",
        ]
    )
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
        assert f"]({name})" in md
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("not json", "not valid JSON"),
        ('{"candidates": []}', "neither a bench document"),
        ('{"text": {}, "protocol": {}, "candidates": [{"name": "x"}]}', "eval candidates lack"),
    ],
)
def test_bad_input(tmp_path, content, fragment):
    f = tmp_path / "in.json"
    f.write_text(content)
    assert_bad_input(run_cli("report", str(f), "-o", str(tmp_path / "out")), fragment)
    assert not (tmp_path / "out" / "report.md").exists()


def test_missing_input(tmp_path):
    assert_bad_input(run_cli("report", str(tmp_path / "nope.json"), "-o", str(tmp_path / "out")), "does not exist")


def suite_doc():
    """A task-suite document in `eval suite --json`'s schema."""
    return {
        "checkpoint": "tiny",
        "untrained": "tiny untrained (seed 0)",
        "models": ["untrained", "trained", "torch:standard"],
        "tasks": [
            {
                "task": "piqa",
                "kind": "choice",
                "source": "piqa.jsonl",
                "items": 4,
                "random_baseline": 0.5,
                "accuracy": {"untrained": 0.5, "trained": 0.75, "torch:standard": 0.75},
                "correct": {"untrained": 2, "trained": 3, "torch:standard": 3},
            }
        ],
    }


def sweep_doc():
    """A sweep.json in `tinyexport sweep`'s schema: a Pareto cell, a dominated one, a rejected one, a failure."""

    def cell(name, status, size, speed, kl, reason=""):
        metrics = {"size_mb": size, "decode_tok_s": speed, "prefill_tok_s": 10 * speed, "kl_mean": kl}
        metrics |= {"perplexity": 20 + 100 * kl, "dppl_pct": 500 * kl, "top1_agreement": 1 - kl}
        return {"name": name, "status": status, "reason": reason, "metrics": metrics}

    return {
        "kind": "tinyexport-sweep",
        "gate": {"max_kl": 0.05, "max_dppl_pct": 2.0},
        "cells": [
            cell("m_onnx_dynamic_int8_kv512", "pareto", 180.0, 120.0, 0.002),
            cell("m_onnx_fp32_kv512", "dominated", 540.0, 60.0, 0.002, "dominated"),
            cell("m_onnx_int4_block32_kv512", "rejected", 100.0, 140.0, 0.4, "KL 0.4 > 0.05"),
            {"name": "m_tflite_fp16_kv512", "status": "failed", "reason": "failed at convert: boom", "metrics": {}},
        ],
        "recommendation": "m_onnx_dynamic_int8_kv512",
    }


def scaling_doc():
    """A scaling study document: three sizes, decode cost exactly ∝ params^0.8."""
    settings = {"formats": ["onnx"], "recipes": ["fp32"], "cache_length": 256, "prompt_len": 64}
    models, rows = [], []
    for i, params in enumerate((1e7, 4e7, 1.6e8)):
        name = f"size{i}"
        models.append(
            {"name": name, "weights": "random", "params": params, "hidden": 256 * (i + 1), "layers": 4, "heads": 4}
            | {"kv_heads": 4, "ffn": 1024, "vocab": 49152}
        )
        rows.append(
            {"model": name, "format": "onnx", "recipe": "fp32", "params": params, "decode_flops_per_token": 2 * params}
            | {"size_mb": 4 * params / 1e6, "convert_s": 10.0 + i, "convert_peak_rss_mb": 900.0, "error": None}
            | {"decode_ms_per_token": 1e-5 * params**0.8, "roofline_decode_ms_per_token": 1e-5 * params**0.8 / 3}
            | {"roofline_decode_fraction": 1 / 3, "prefill_tok_s": 500.0, "roofline_prefill_tok_s": 900.0}
            | {"bench_peak_rss_mb": 700.0}
        )
    fit = {"format": "onnx", "recipe": "fp32", "metric": "decode_ms_per_token", "label": "decode ms/token"}
    fit |= {"exponent": 0.8, "coefficient": 1e-5, "r2": 1.0, "points": 3}
    return {"kind": "tinyexport-scaling", "settings": settings | {"new_tokens": 32, "repeats": 3}}, models, rows, fit


@pytest.fixture(scope="module")
def html_report(tmp_path_factory, bench_json):
    """report --html from a bench file, an eval file, a suite file, a sweep, a scaling study and a bench
    run from the store."""
    from tinyexport.records.store import STORE_NAME, RunStore

    tmp = tmp_path_factory.mktemp("html")
    (tmp / "eval.json").write_text(json.dumps(eval_doc(["torch:standard"])))
    (tmp / "suite.json").write_text(json.dumps(suite_doc()))
    (tmp / "sweep.json").write_text(json.dumps(sweep_doc()))
    head, models, rows, fit = scaling_doc()
    (tmp / "scaling.json").write_text(json.dumps({**head, "models": models, "rows": rows, "fits": [fit]}))
    bench = json.loads(bench_json.read_text())
    bench["model"]["name"] = "from the store"
    record = {"id": "abcdef123456", "command": "bench", "started": "2026-01-01T00:00:00+00:00"}
    RunStore(tmp / "cache" / STORE_NAME).append({**record, "ended": record["started"], "result": bench})
    out = tmp / "rep"
    args = ("report", str(bench_json), str(tmp / "eval.json"), str(tmp / "suite.json"), "--run", "abcdef")
    args += (str(tmp / "sweep.json"), str(tmp / "scaling.json"))
    res = run_cli(*args, "--html", "-o", str(out), cache=tmp / "cache")
    assert res.code == 0, res.stderr
    return out


def test_html_is_self_contained_with_every_plot_and_table(html_report):
    import base64
    import re

    page = (html_report / "report.html").read_text()
    md = (html_report / "report.md").read_text()
    assert "## Benchmark: from the store" in md and "## Task suite: tiny" in md and "## Machines" in md
    sources = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)
    assert len(sources) == len(list(html_report.glob("*.png"))) == md.count("](")
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert page.count("<table>") == sum(ln.startswith("|---") for ln in md.splitlines()) and "<script" not in page
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)  # nothing fetched
    assert "<td>piqa</td>" in page and ">75.0%<" in page
    assert "Recommendation: `m_onnx_dynamic_int8_kv512`." in md and "<code>m_onnx_dynamic_int8_kv512</code>" in page
    assert "| 3 | m_onnx_int4_block32_kv512 | rejected |" in md and "failed at convert: boom" in md
    assert "| onnx/fp32 | decode ms/token | 0.800 | 1e-05 | 1.0000 | 3 |" in md
    assert {"sweep-speed-vs-size.png", "scaling-decode_ms_per_token.png"} <= {p.name for p in html_report.glob("*.png")}


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(html_report, tmp_path):
    """The page in a real browser: the DOM keeps every table and image, the console stays clean, and
    the screenshot shows the plots' bars (matplotlib's #4878a8) and the tables' header shade."""
    import re
    import subprocess

    import numpy as np
    from matplotlib import image

    page = (html_report / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    flags += ["--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<img") == len(list(html_report.glob("*.png")))
    assert dom.stdout.count("<table>") >= 4 and "Task suite: tiny" in dom.stdout
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1300,6000", "--hide-scrollbars", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    pixels = (image.imread(shot)[..., :3] * 255).round().astype(int)
    bars = np.all(np.abs(pixels - [0x48, 0x78, 0xA8]) <= 3, axis=-1).sum()
    header = np.all(np.abs(pixels - [0xEE, 0xF3, 0xF8]) <= 2, axis=-1).sum()
    assert bars > 2000 and header > 2000, (bars, header)
    assert not [line for line in res.stderr.splitlines() if re.search(r"CONSOLE|Uncaught", line)]
