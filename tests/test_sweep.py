"""`tinyexport sweep`: Pareto front and gate on hand-made cells, matrix refusals, and a real sweep of a
tiny checkpoint that resumes (recorded cells skipped) and ranks its cells."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from tinyexport.records.store import STORE_NAME, RunStore
from tinyexport.sweep.gate import Gate, pareto_front, rank
from tinyexport.sweep.matrix import SweepMatrix

from .cli_helpers import Result, assert_bad_input
from .eval_helpers import tiny_text_checkpoint


def cli(*args, cache, timeout=1200, env=None) -> Result:
    env = dict(os.environ, TINYEXPORT_CACHE=str(cache), TINYEXPORT_NO_RECORD="", **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-m", "tinyexport", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def point(size, speed, kl, dppl=0.0):
    return {"size_mb": size, "decode_tok_s": speed, "kl_mean": kl, "dppl_pct": dppl}


def test_pareto_front_on_hand_made_points():
    points = [
        point(100, 10, 0.0),  # 0: best quality
        point(50, 20, 0.01),  # 1: smaller and faster, a little worse
        point(60, 15, 0.02),  # 2: dominated by 1 on every axis
        point(25, 18, 0.30),  # 3: smallest
        point(50, 20, 0.01),  # 4: equal to 1: neither dominates the other
        point(120, 9, 0.0),  # 5: dominated by 0
    ]
    assert pareto_front(points) == [0, 1, 3, 4]
    assert pareto_front([point(1, 1, 1)]) == [0]


def test_gate_rejects_a_constructed_bad_cell_with_its_reason():
    gate = Gate(max_kl=0.05, max_dppl_pct=2.0)
    cells = [
        ("good", point(50, 20, 0.01, 0.5), ""),
        ("too_lossy", point(10, 30, 0.40, 12.5), ""),  # smaller and faster, but over both limits
        ("ref", point(100, 10, 0.0, 0.0), ""),
        ("broken", None, "failed at convert: boom"),
    ]
    ranked, best = rank(cells, gate)
    by = {r.name: r for r in ranked}
    assert by["too_lossy"].status == "rejected"
    assert by["too_lossy"].reason == "KL 0.4 > 0.05; Δppl +12.50% > 2%"
    assert by["broken"].status == "failed" and "boom" in by["broken"].reason
    assert [r.name for r in ranked] == ["good", "ref", "too_lossy", "broken"]
    assert best.name == "good"  # without the gate, too_lossy would dominate it
    _, ungated = rank(cells, Gate())
    assert ungated.name == "too_lossy"
    assert Gate(max_kl=0.05).reasons({"kl_mean": None}) == ["no KL measured"]


def test_matrix_cells_and_keys():
    m = SweepMatrix(checkpoints=("a", "b"), formats=("onnx", "tflite"), recipes=("fp32",), cache_lengths=(512, 1024))
    cells = m.cells()
    assert len(cells) == 8 and len({c.key for c in cells}) == 8
    assert {c.key for c in SweepMatrix(max_tokens=99).cells()}.isdisjoint({c.key for c in SweepMatrix().cells()})
    assert SweepMatrix(max_kl=0.1).cells()[0].key == SweepMatrix().cells()[0].key  # the gate is not a cell setting


def test_transform_axis_also_blocks_and_recipes_a_format_lacks():
    m = SweepMatrix(
        formats=("onnx", "tflite"),
        recipes=("fp32", "weight_only_int8"),
        transforms=("none", "prune-heads=0.25"),
        also=({"formats": ("onnx",), "recipes": ("dynamic_int8",), "transforms": ("prune-heads=0.25+kv-cache=int8",)},),
    ).check()
    assert m.skipped() == [("onnx", "weight_only_int8")]  # ONNX has no weight-only recipe: left out
    names = [c.name for c in m.cells()]
    assert len(names) == 6 + 1 and "smollm2-135m_onnx_weight_only_int8_kv1024" not in names
    assert "smollm2-135m_tflite_fp32_kv1024_prune-heads-0.25" in names
    combo = next(c for c in m.cells() if c.recipe == "dynamic_int8")
    assert combo.transforms == ("prune-heads=0.25", "kv-cache=int8")
    assert combo.name.endswith("_prune-heads-0.25_kv-cache-int8")
    # a cell without transforms keeps the key it had before the axis existed (resume across versions)
    plain = next(c for c in m.cells() if c.format == "onnx" and c.recipe == "fp32" and not c.transform)
    assert plain.key == SweepMatrix(recipes=("fp32",)).cells()[0].key
    assert len({c.key for c in m.cells()}) == 7


@pytest.mark.parametrize(
    "toml, fragments",
    [
        ('formats = ["onnx"]\nbogus = 1\nrecipes_typo = ["fp32"]\n', ("unknown key(s) bogus, recipes_typo",)),
        ("[gate]\nmax_perplexity = 3\n", ("unknown key(s) gate.max_perplexity", "gate.max_kl")),
        ('recipes = ["int3"]\n', ("unknown recipe(s) int3",)),
        ("formats = [\n", ("not valid TOML",)),
        ("cache_lengths = [16]\n", ("cache length(s) [16]", "window")),
        (
            'formats = ["gguf"]\ntransforms = ["kv-cache=int8"]\n',
            ("transform set 'kv-cache=int8'", "gguf cannot carry"),
        ),
        ('transforms = ["prune-heads=two"]\n', ("transform set 'prune-heads=two'",)),
        ('[[also]]\nrecipe = ["fp32"]\n', ("unknown key(s) also.recipe",)),
    ],
)
def test_bad_matrix_files_exit_2_naming_the_key(tmp_path, toml, fragments):
    path = tmp_path / "matrix.toml"
    path.write_text(toml)
    assert_bad_input(cli("sweep", "--matrix", str(path), "-o", str(tmp_path / "o"), cache=tmp_path), *fragments)
    assert not (tmp_path / STORE_NAME).exists()


def test_bad_gate_value(tmp_path):
    assert_bad_input(cli("sweep", "--max-dppl", "two", cache=tmp_path), "--max-dppl 'two'")


def sweep_text(path):
    """300 words of a 16-word vocabulary: an eval text the tiny tokenizer covers."""
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "while",
        "rain",
        "falls",
        "on",
        "old",
        "stone",
        "walls",
    ]
    rng = random.Random(0)
    path.write_text(" ".join(rng.choice(words) for _ in range(300)))
    return path


def test_sweep_runs_records_resumes_and_ranks(tmp_path):
    """The first ("interrupted") sweep runs its one cell as a task on a local Ray instance when Ray is
    installed (extra `ray`, in `all`); the second, on the local pool, finds that cell in the store and
    runs only the new one: Ray's results land in the same store, and resume works across executors."""
    import importlib.util

    executor = ("--executor", "ray", "--jobs", "1") if importlib.util.find_spec("ray") else ()
    ckpt = tiny_text_checkpoint(tmp_path / "tiny")
    text = sweep_text(tmp_path / "text.txt")
    (tmp_path / "matrix.toml").write_text(
        f'checkpoints = ["{ckpt}"]\nformats = ["onnx"]\ncache_lengths = [128]\ntext = "{text}"\n'
        "max_tokens = 256\nwindow = 64\nprompt_len = 8\nnew_tokens = 8\nrepeats = 2\nverify = false\n"
        "[gate]\nmax_kl = 0.05\nmax_dppl = '2%'\n"
    )
    base = ("sweep", "--matrix", str(tmp_path / "matrix.toml"), "-o", str(tmp_path / "out"))
    first = cli(*base, "--recipe", "fp32", *executor, cache=tmp_path / "cache", timeout=2400)  # "interrupted"
    assert first.code == 0, first.stderr
    assert "recommendation: tiny_onnx_fp32_kv128" in first.stdout
    second = cli(*base, "--recipe", "fp32", "--recipe", "dynamic_int8", cache=tmp_path / "cache", timeout=2400)
    assert second.code == 0, second.stderr
    assert "2 cell(s), 1 already recorded (skipped), 1 to run" in second.stderr
    assert "tiny_onnx_fp32_kv128" not in second.stderr.split("to run", 1)[1]  # not run again
    assert "recommendation: tiny_onnx_" in second.stdout
    report = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert sorted(c["name"] for c in report["cells"]) == ["tiny_onnx_dynamic_int8_kv128", "tiny_onnx_fp32_kv128"]
    for c in report["cells"]:
        m = c["metrics"]
        assert c["status"] in ("pareto", "dominated", "rejected")
        assert m["size_mb"] > 0 and m["decode_tok_s"] > 0 and m["kl_mean"] >= 0 and m["perplexity"] > 1
    fp32 = next(c for c in report["cells"] if "fp32" in c["name"])
    assert fp32["metrics"]["kl_mean"] < 1e-4 and fp32["status"] == "pareto"  # fp32 ONNX is the model itself
    store = RunStore(tmp_path / "cache" / STORE_NAME)
    cells = store.runs(command="sweep cell")
    assert len(cells) == 2 and all(r.record["artefacts"][0]["sha256"] for r in cells)
    assert [r.command for r in store.runs(command="convert")] == ["convert", "convert"]  # stages recorded too
