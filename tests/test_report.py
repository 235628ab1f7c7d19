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
