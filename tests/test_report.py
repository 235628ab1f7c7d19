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


@pytest.fixture(scope="module")
def html_report(tmp_path_factory, bench_json):
    """report --html from a bench file, an eval file, a suite file and a bench run from the store."""
    from tinyexport.records.store import STORE_NAME, RunStore

    tmp = tmp_path_factory.mktemp("html")
    (tmp / "eval.json").write_text(json.dumps(eval_doc(["torch:standard"])))
    (tmp / "suite.json").write_text(json.dumps(suite_doc()))
    bench = json.loads(bench_json.read_text())
    bench["model"]["name"] = "from the store"
    record = {"id": "abcdef123456", "command": "bench", "started": "2026-01-01T00:00:00+00:00"}
    RunStore(tmp / "cache" / STORE_NAME).append({**record, "ended": record["started"], "result": bench})
    out = tmp / "rep"
    args = ("report", str(bench_json), str(tmp / "eval.json"), str(tmp / "suite.json"), "--run", "abcdef")
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
