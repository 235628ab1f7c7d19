"""Memory prediction before a conversion: the fitted table against its source measurements, refusal with
an artificially low limit (one line, exit 1, nothing converted or materialised), and the prediction
recorded next to the measured peak in the manifest."""

from __future__ import annotations

import json

import pytest

from tinyexport.formats.budget import MEMORY_MODEL, predicted_peak_rss_mb
from tinyexport.formats.recipes import RECIPES
from tinyexport.models.config import PRESETS
from tinyexport.resources import available_memory_mb, parse_memory_mb

from .cli_helpers import TINY_ONNX, assert_bad_input, assert_fault, run_cli

# The measured conversion peaks (docs/tflite.md, docs/onnx.md) (GB = 1e9 B) the table was fitted to: (format, recipe) ->
# (SmolLM2-135M, TinyLlama-1.1B shape).
MEASURED_GB = {
    ("tflite", "fp32"): (2.3, 5.2),
    ("tflite", "fp16"): (2.456, 8.006),  # cast once: 2,342 / 7,635 MiB (2026-12-02)
    ("tflite", "dynamic_int8"): (2.3, 6.4),
    ("tflite", "weight_only_int8"): (2.3, 6.5),
    ("tflite", "int4_block32"): (2.3, 6.9),
    ("onnx", "fp32"): (2.7, 5.1),
    ("onnx", "fp16"): (2.7, 7.2),
    ("onnx", "dynamic_int8"): (1.879, 6.293),
    ("onnx", "int4_block32"): (1.431, 5.621),
}


@pytest.mark.parametrize("key", sorted(MEASURED_GB))
def test_table_reproduces_the_measured_peaks(key):
    for preset, measured in zip(("smollm2-135m", "tinyllama-1.1b"), MEASURED_GB[key]):
        predicted = predicted_peak_rss_mb(*key, PRESETS[preset].config.num_parameters())
        assert predicted == pytest.approx(measured * 1e9 / 2**20, rel=0.01), (key, preset)


def test_every_buildable_recipe_has_a_prediction():
    buildable = {(fmt, name) for name, r in RECIPES.items() for fmt in r.formats if fmt != "torch"}
    assert buildable == set(MEMORY_MODEL)


def test_sizes_and_meminfo(tmp_path):
    assert parse_memory_mb("1500") == 1500 and parse_memory_mb("2G") == 2048 and parse_memory_mb("512MiB") == 512
    for bad in ("", "-1", "lots", "nanG", "0"):
        with pytest.raises(ValueError):
            parse_memory_mb(bad)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2097152 kB\n")
    assert available_memory_mb(str(meminfo)) == 2048
    assert available_memory_mb() > 0  # this machine's /proc/meminfo


def test_conversion_that_cannot_fit_is_refused_before_anything_loads(tmp_path):
    res = run_cli(*TINY_ONNX, "-o", str(tmp_path / "art"), "--max-memory", "100M", cache=tmp_path / "cache")
    assert_fault(res, "predicted to peak at 2,256 MiB", "only 100 MiB is available", "--force-memory")
    assert not (tmp_path / "art").exists() and not (tmp_path / "cache").exists()
    res = run_cli(
        *TINY_ONNX, "-o", str(tmp_path / "art"), cache=tmp_path / "cache", env={"TINYEXPORT_MAX_MEMORY": "1G"}
    )
    assert_fault(res, "only 1,024 MiB is available (--max-memory / TINYEXPORT_MAX_MEMORY)")
    assert_bad_input(
        run_cli(*TINY_ONNX, "-o", str(tmp_path / "art"), "--max-memory", "lots", cache=tmp_path / "cache"),
        "--max-memory",
        "500M",
    )


def test_forced_conversion_records_prediction_and_peak(tmp_path):
    out = tmp_path / "art"
    res = run_cli(*TINY_ONNX, "-o", str(out), "--max-memory", "100M", "--force-memory", cache=tmp_path / "cache")
    assert res.code == 0, res.stderr
    conversion = json.loads((out / "manifest.json").read_text())["conversion"]
    assert conversion["predicted_peak_rss_mb"] == pytest.approx(
        predicted_peak_rss_mb("onnx", "fp32", PRESETS["tiny"].config.num_parameters()), abs=0.1
    )
    assert conversion["peak_rss_mb"] > 0
    assert "(predicted 2,256)" in res.stdout
