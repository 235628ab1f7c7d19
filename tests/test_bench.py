"""`tinyexport bench` on a tiny checkpoint through the real CLI: every field, sane relations, the CSV log,
the roofline arithmetic, and bad input. No timing thresholds: only relations that hold on any machine."""

from __future__ import annotations

import csv
import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from tinyexport.bench.csvlog import CSV_COLUMNS, append_rows, csv_rows
from tinyexport.bench.measure import bench_tokens
from tinyexport.bench.roofline import MemoryModel, decode_bound
from tinyexport.bench.stats import Spread
from tinyexport.models.config import SMOLLM2_135M, TINY, TINYLLAMA_1_1B

from .cli_helpers import assert_bad_input, run_cli

SPREADS = ("ttft_ms", "prefill_ms", "prefill_tok_s", "decode_tok_s", "decode_ms_per_token")
PROMPT, NEW, REPEATS, CONTEXTS = 16, 6, 3, (32, 48)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out, log = tmp / "bench.json", tmp / "logs" / "bench.csv"
    res = run_cli(
        "bench",
        "--checkpoint",
        "tiny",
        "--random-weights",
        "--torch",
        "--hf",
        "--prompt-len",
        str(PROMPT),
        "--new-tokens",
        str(NEW),
        "--repeats",
        str(REPEATS),
        "--context",
        ",".join(map(str, CONTEXTS)),
        "--threads",
        "1",
        "--json",
        str(out),
        "--log-csv",
        str(log),
        cache=tmp / "cache",
    )
    assert res.code == 0, res.stderr
    return {"doc": json.loads(out.read_text()), "log": log, "cache": tmp / "cache", "stdout": res.stdout}


def test_every_field_with_sane_relations(bench_run):
    doc = bench_run["doc"]
    assert doc["kind"] == "tinyexport-bench"
    assert [c["name"] for c in doc["candidates"]] == ["torch:standard", "hf"]
    ckpt_dir = bench_run["cache"] / "checkpoints" / "tiny-random-seed0"
    weights_bytes = sum(f.stat().st_size for f in ckpt_dir.glob("*.safetensors"))
    for cand in doc["candidates"]:
        assert cand["error"] is None
        assert all(cand[key]["p10"] > 0 for key in SPREADS), cand["name"]
        assert cand["ttft_ms"]["median"] >= cand["prefill_ms"]["median"] > 0  # TTFT = prefill + picking the token
        assert cand["load_s"] > 0 and cand["import_s"] >= 0
        assert cand["peak_rss_mb"] >= cand["peak_rss_after_load_mb"] > 0
        assert cand["size_bytes"] == weights_bytes
        assert cand["deterministic"] and len(cand["generated"]) == NEW
        assert [p["context"] for p in cand["contexts"]] == list(CONTEXTS)
        for point in cand["contexts"]:
            assert point["decode_tok_s"]["p10"] > 0 and point["fraction"] > 0
        # A growing cache reads more at a fuller cache: the bound falls with the fill.
        assert cand["contexts"][0]["bound_tok_s"] > cand["contexts"][1]["bound_tok_s"]
        roof = cand["roofline"]
        assert roof["cache_kind"] == "growing"
        # The decode bound by hand: fp32 tiny model, every weight but the untied embedding's unused rows,
        # plus K and V of the filled slots (prompt .. prompt + NEW - 2 at the start of each step).
        c = TINY
        per_slot = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4
        weights = weights_bytes * (c.num_parameters() - (c.vocab_size - 1) * c.hidden_size) / c.num_parameters()
        mean_slots = sum(f + 1 for f in range(PROMPT, PROMPT + NEW - 1)) / (NEW - 1)
        by_hand = doc["probes"]["bandwidth_gb_s"] * 1e9 / (weights + mean_slots * per_slot)
        assert roof["decode"]["bound_tok_s"] == pytest.approx(by_hand, rel=1e-9)
    torch_c, hf_c = doc["candidates"]
    assert torch_c["generated"] == hf_c["generated"]  # same prompt ids, same greedy continuation (fp32 parity)
    assert doc["settings"]["threads"] == 1 and doc["probes"]["threads"] == 1
    assert doc["probes"]["bandwidth_gb_s"] > 0 and doc["probes"]["matmul_gflops"] > 0
    machine = doc["machine"]
    assert machine["cores"] == len(os.sched_getaffinity(0)) and machine["ram_gb"] > 1
    assert machine["runtime_versions"]["torch"] == torch.__version__ and machine["tinyexport_version"]
    assert "torch:standard" in bench_run["stdout"] and "decode tok/s vs cache fill" in bench_run["stdout"]


def test_csv_log_rows_and_schema(bench_run, tmp_path):
    with bench_run["log"].open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    assert [r["candidate"] for r in rows] == ["torch:standard", "hf"]
    doc = bench_run["doc"]
    for row, cand in zip(rows, doc["candidates"]):
        assert row["git_commit"] == doc["machine"]["git_commit"] and row["cpu_model"] == doc["machine"]["cpu_model"]
        assert int(row["size_bytes"]) == cand["size_bytes"] and row["recipe"] == "fp32"
        assert float(row["decode_tok_s_median"]) == pytest.approx(cand["decode_tok_s"]["median"], rel=1e-6)
        assert row["context_decode_tok_s"].startswith(f"{CONTEXTS[0]}:")
        assert "torch=" in row["runtime_versions"]
        assert all(row[c] != "" for c in CSV_COLUMNS)
    # Appending again adds rows under the same single header.
    log = tmp_path / "again.csv"
    append_rows(log, csv_rows(doc))
    append_rows(log, csv_rows(doc))
    lines = log.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 1 + 4
    assert sum(line.startswith("timestamp,") for line in lines) == 1


def test_same_tokens_for_every_candidate():
    a, b = bench_tokens(49152, 128, seed=0), bench_tokens(49152, 128, seed=0)
    assert np.array_equal(a, b) and a.dtype == np.int64 and a.min() >= 0 and a.max() < 49152
    assert not np.array_equal(a, bench_tokens(49152, 128, seed=1))


def test_fixed_cache_reads_every_slot_growing_reads_the_filled_ones():
    size = 4 * SMOLLM2_135M.num_parameters()
    fixed = MemoryModel(SMOLLM2_135M, size, "fixed", capacity=1024)
    growing = MemoryModel(SMOLLM2_135M, size, "growing", capacity=1024)
    per_slot = 2 * 30 * 3 * 64 * 4  # K and V, 30 layers, 3 KV heads, head_dim 64, fp32
    assert fixed.kv_bytes_per_slot == growing.kv_bytes_per_slot == per_slot
    assert fixed.bytes_per_token(10) == fixed.bytes_per_token(900) == size + 1024 * per_slot  # tied: all weights read
    assert growing.bytes_per_token(10) == size + 11 * per_slot
    assert growing.bytes_per_token(1023) == fixed.bytes_per_token(1023)
    # int8 cache: 1 byte per element + one fp32 scale per head and slot; whole-group pruning: KV heads per layer
    int8 = dataclasses.replace(SMOLLM2_135M, kv_cache_dtype="int8")
    assert MemoryModel(int8, size, "fixed", capacity=1024).kv_bytes_per_slot == 2 * 30 * 3 * (64 + 4)
    kv = (1,) * 10 + (3,) * 20
    grouped = SMOLLM2_135M.with_layer_heads(tuple(3 * k for k in kv), kv)
    assert MemoryModel(grouped, size, "fixed", capacity=1024).kv_bytes_per_slot == 2 * (10 + 60) * 64 * 4
    # Untied embedding table: only one row is gathered per token.
    untied = MemoryModel(TINYLLAMA_1_1B, 4 * TINYLLAMA_1_1B.num_parameters(), "growing", capacity=2048)
    assert untied.weight_bytes_per_token == pytest.approx(4 * (TINYLLAMA_1_1B.num_parameters() - 32000 * 2048 + 2048))
    bound = decode_bound(growing, range(128, 192), 10.0)  # steps start at fills 128..191: 129..192 slots read
    assert bound["bound_tok_s"] == pytest.approx(10e9 / (size + 160.5 * per_slot))
    # A fixed cache with attention spans 256 and 512 reads the smallest span holding fill + 1 slots.
    spans = MemoryModel(SMOLLM2_135M, size, "fixed", capacity=1024, spans=(256, 512))
    assert [spans.kv_slots_read(f) for f in (0, 255, 256, 511, 512, 1023)] == [256, 256, 512, 512, 1024, 1024]


def test_spread_percentiles_by_hand():
    s = Spread.of([5.0, 1.0, 3.0, 2.0, 4.0])  # sorted 1..5: linear interpolation at ranks 0.4, 2, 3.6
    assert (s.p10, s.median, s.p90) == pytest.approx((1.4, 3.0, 4.6))
    inv = s.map(lambda ms: 1e3 / ms)  # ms/token -> tok/s: a decreasing map swaps the tails
    assert (inv.p10, inv.median, inv.p90) == pytest.approx((1e3 / 4.6, 1e3 / 3.0, 1e3 / 1.4))
    with pytest.raises(ValueError):
        Spread.of([])


def test_foreign_csv_header_is_refused_before_work(tmp_path):
    log = tmp_path / "bench.csv"
    log.write_text("a,b,c\n1,2,3\n")
    res = run_cli("bench", "--checkpoint", "tiny", "--random-weights", "--log-csv", str(log), cache=tmp_path)
    assert_bad_input(res, "different header")
    assert log.read_text() == "a,b,c\n1,2,3\n"


def _fake_artefact(tmp_path):
    """A well-formed artefact directory (manifest with hashes) whose model file we can then tamper with."""
    from tinyexport.artefact import write_manifest

    d = tmp_path / "fake_art"
    d.mkdir()
    (d / "model.onnx").write_bytes(b"\x00" * 64)
    write_manifest(
        d,
        {
            "format": "onnx",
            "recipe": "fp32",
            "model_config": TINY.to_dict(),
            "model_file": "model.onnx",
            "kv_cache_max_len": 64,
        },
    )
    return d


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--repeats", "0"], ["--repeats", "positive"]),
        (["--new-tokens", "600"], ["--new-tokens 600", "exceeds", "(512)"]),
        (["--new-tokens", "1"], ["--new-tokens", "at least 2"]),
        (["--prompt-len", "0"], ["--prompt-len"]),
        (["--context", "8"], ["--context values", "16"]),
        (["--context", "600"], ["--context [600]", "exceeds"]),
        (["--context", "12x"], ["--context", "non-integer"]),
        (["/no/such/artefact"], ["does not exist"]),
    ],
)
def test_bad_input(tmp_path, args, fragments):
    res = run_cli("bench", "--checkpoint", "tiny", "--random-weights", "--no-log", *args, cache=tmp_path)
    assert_bad_input(res, *fragments)


def test_tampered_artefact_and_cache_too_small(tmp_path):
    art = _fake_artefact(tmp_path)
    assert_bad_input(
        run_cli("bench", str(art), "--prompt-len", "60", "--new-tokens", "8", "--no-log", cache=tmp_path),
        "exceeds the KV cache of fake_art (64)",
    )
    (art / "model.onnx").write_bytes(b"\x01" * 64)
    assert_bad_input(run_cli("bench", str(art), "--no-log", cache=tmp_path), "model.onnx", "sha256")
    (art / "model.onnx").unlink()
    assert_bad_input(run_cli("bench", str(art), "--no-log", cache=tmp_path), "missing model.onnx")
