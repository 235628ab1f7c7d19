"""Power-law fits: a known exponent is recovered from synthetic data, noise lowers R² below 1, and
bench documents become one series per (format, recipe)."""

from __future__ import annotations

import numpy as np
import pytest

from tinyexport.models.config import TINY
from tinyexport.sweep.scaling import fit_power_law, fit_series, points_from_bench


def test_exact_power_law_is_recovered():
    xs = np.array([1e6, 3e6, 1e7, 3e7, 1e8])
    law = fit_power_law(xs, 2.5 * xs**0.73)
    assert law.exponent == pytest.approx(0.73, abs=1e-9)
    assert law.coefficient == pytest.approx(2.5, rel=1e-6)
    assert law.r2 == pytest.approx(1.0, abs=1e-12) and law.points == 5
    assert law(2e7) == pytest.approx(2.5 * 2e7**0.73)


def test_noisy_power_law():
    rng = np.random.default_rng(0)
    xs = np.geomspace(1e5, 1e9, 40)
    ys = 0.01 * xs**1.2 * np.exp(rng.normal(0, 0.1, xs.size))
    law = fit_power_law(xs, ys)
    assert law.exponent == pytest.approx(1.2, abs=0.03)
    ly, lx = np.log(ys), np.log(xs)
    # independent: R² of a straight-line fit is the squared correlation of the logs
    assert law.r2 == pytest.approx(np.corrcoef(lx, ly)[0, 1] ** 2, abs=1e-9)
    assert 0.9 < law.r2 < 1.0


def test_fit_needs_two_distinct_sizes():
    with pytest.raises(ValueError, match="two points"):
        fit_power_law([5, 5], [1, 2])


def test_series_from_bench_documents():
    import dataclasses

    def doc(config, ms):
        cand = {
            "format": "onnx",
            "recipe": "fp32",
            "decode_ms_per_token": {"median": ms},
            "prefill_tok_s": {"median": 1000.0 / ms},
            "size_bytes": 4 * config.num_parameters(),
            "peak_rss_mb": 100.0,
        }
        return {"model": {"config": config.to_dict()}, "candidates": [cand, {"error": "boom"}]}

    small, big = TINY, dataclasses.replace(TINY, num_layers=8, hidden_size=128, head_dim=32)
    series = points_from_bench([doc(small, 1.0), doc(big, 4.0)])
    assert list(series) == [("onnx", "fp32")] and len(series["onnx", "fp32"]) == 2
    rows = {r["metric"]: r for r in fit_series(series)}
    ratio = big.num_parameters() / small.num_parameters()
    assert rows["decode_ms_per_token"]["exponent"] == pytest.approx(np.log(4.0) / np.log(ratio))
    assert rows["size_mb"]["exponent"] == pytest.approx(1.0)
    assert "peak_rss_mb" in rows and rows["peak_rss_mb"]["exponent"] == pytest.approx(0.0, abs=1e-9)


def test_scaling_command_on_bench_files(tmp_path):
    import dataclasses
    import json

    from .cli_helpers import assert_bad_input, run_cli

    paths = []
    for i, layers in enumerate((2, 8)):
        config = dataclasses.replace(TINY, num_layers=layers)
        cand = {
            "name": "x",
            "format": "tflite",
            "recipe": "dynamic_int8",
            "decode_ms_per_token": {"median": 0.5 * layers},
            "prefill_tok_s": {"median": 100.0 / layers},
            "size_bytes": config.num_parameters(),
            "peak_rss_mb": 50.0,
        }
        paths.append(tmp_path / f"b{i}.json")
        paths[-1].write_text(
            json.dumps({"kind": "tinyexport-bench", "model": {"config": config.to_dict()}, "candidates": [cand]})
        )
    out = tmp_path / "fits.json"
    res = run_cli("scaling", *map(str, paths), "--json", str(out))
    assert res.code == 0, res.stderr
    assert "tflite/dynamic_int8" in res.stdout and "decode ms/token" in res.stdout
    fits = {f["metric"]: f for f in json.loads(out.read_text())["fits"]}
    ratio = dataclasses.replace(TINY, num_layers=8).num_parameters() / TINY.num_parameters()
    assert fits["decode_ms_per_token"]["exponent"] == pytest.approx(np.log(4) / np.log(ratio))
    assert_bad_input(run_cli("scaling", str(paths[0])), "two or more model sizes")


def test_seed_preset_shapes_and_study_fits():
    """The seed's four architectures on SmolLM2's vocabulary: parameters against the closed form
    (tied embedding + per layer 4d² attention (MHA) + 3·d·ff MLP + 2 norms, final norm), and the study's
    fits recover an exponent from rows."""
    import dataclasses

    from tinyexport.sweep.study import SEED_SHAPES, fit_rows, seed_config

    base = dataclasses.replace(TINY, vocab_size=49152, tie_embeddings=True)
    expected = {"seed-small": 16_779_520, "seed-medium": 33_035_136, "seed-large": 58_728_960}
    for name, (d, layers, heads, ff) in SEED_SHAPES.items():
        config = seed_config(base, d, layers, heads, ff)
        assert (config.num_heads, config.num_kv_heads, config.head_dim) == (heads, heads, d // heads)
        closed = 49152 * d + layers * (4 * d * d + 3 * d * ff + 2 * d) + d
        assert config.num_parameters() == closed == expected.get(name, closed)
    rows = [
        {"model": str(p), "format": "onnx", "recipe": "fp32", "params": p, "size_mb": 4e-6 * p, "error": None}
        for p in (1e7, 3e7, 9e7)
    ]
    rows.append({"model": "x", "format": "onnx", "recipe": "fp32", "params": 5e7, "error": "convert: boom"})
    (fit,) = fit_rows(rows)
    assert fit["metric"] == "size_mb" and fit["exponent"] == pytest.approx(1.0) and fit["points"] == 3


def test_preset_refuses_bench_inputs(tmp_path):
    from .cli_helpers import assert_bad_input, run_cli

    (tmp_path / "b.json").write_text("{}")
    assert_bad_input(run_cli("scaling", "--preset", "seed", str(tmp_path / "b.json")), "--preset runs its own")
