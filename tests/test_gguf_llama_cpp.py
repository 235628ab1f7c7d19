"""llama.cpp's own conversion of the same weights beside ours (``converters/llama_cpp_reference.py``), and bare
``.gguf`` files as candidates: a tiny random Llama through llama.cpp's ``convert_hf_to_gguf.py`` +
``llama_model_quantize`` gives the same tensor types, the same Q8_0 bytes and the same fp32 logits (1e-4)
through our GGUF runner as our converter; bench takes a bare file and reports ratios to llama.cpp's rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tinyexport.converters.export_config import ExportConfig
from tinyexport.converters.pipeline import export_artefact
from tinyexport.errors import UserError
from tinyexport.models.config import TINY
from tinyexport.runners import open_artefact_runner

from .cli_helpers import assert_bad_input, run_cli
from .tiny_models import save_hf_checkpoint

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (extra runtime-gguf) is not installed")

CACHE = 64
PROMPT = np.random.default_rng(5).integers(0, TINY.vocab_size, 12)
BENCH = ("--prompt-len", "8", "--new-tokens", "4", "--warmup", "0", "--repeats", "1", "--threads", "1", "--no-log")


def _checkpoint(directory):
    from tinyexport.resolve import open_checkpoint

    return open_checkpoint(str(directory))


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory) -> Path:
    return save_hf_checkpoint(TINY, tmp_path_factory.mktemp("lcpp_hf"), seed=0)


@pytest.fixture(scope="module")
def ours(tmp_path_factory, hf_dir) -> dict[str, Path]:
    root, made = tmp_path_factory.mktemp("lcpp_ours"), {}
    for recipe in ("fp32", "q8_0"):
        export = ExportConfig(format="gguf", recipe=recipe, kv_cache_max_len=CACHE, prefill_seq_lens=(8,))
        made[recipe] = root / f"gguf_{recipe}"
        export_artefact(_checkpoint(hf_dir), export, made[recipe], source_ref={"spec": str(hf_dir)})
    return made


def test_bench_takes_a_bare_gguf_file(tmp_path, ours):
    """A .gguf named on the command line is benched like an artefact (wrapped once under the cache) and
    generates the same greedy tokens as the artefact directory holding the same file."""
    bare = tmp_path / "someone_elses.gguf"
    shutil.copy(ours["fp32"] / "model.gguf", bare)
    out = tmp_path / "bench.json"
    res = run_cli("bench", str(ours["fp32"]), str(bare), *BENCH, "--json", str(out))
    assert res.code == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["candidates"]
    assert [r["name"] for r in rows] == ["gguf_fp32", "someone_elses"]
    assert [(r["format"], r["recipe"], r["error"]) for r in rows] == [("gguf", "fp32", None)] * 2
    assert rows[0]["producer"] == "tinyexport convert" and rows[1]["producer"].startswith("unknown")
    assert rows[0]["generated"] == rows[1]["generated"]
    assert rows[0]["size_bytes"] == rows[1]["size_bytes"] == bare.stat().st_size

    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"GGUF" + b"\x00" * 12)
    assert_bad_input(run_cli("bench", str(garbage), *BENCH), "garbage.gguf")


def test_llama_cpp_conversion_equals_ours(tmp_path_factory, hf_dir, ours):
    from tinyexport.converters.gguf_import import read_gguf_summary
    from tinyexport.converters.llama_cpp_reference import converter_source, reference_artefacts
    from tinyexport.models.gguf_file import read_gguf_file

    try:
        converter_source()
    except UserError as err:
        pytest.skip(f"llama.cpp's converter source is not installed here: {err}")
    root = tmp_path_factory.mktemp("lcpp_theirs")
    made = dict(
        zip(("fp32", "q8_0"), reference_artefacts(_checkpoint(hf_dir), {"spec": str(hf_dir)}, root, ("fp32", "q8_0")))
    )
    for recipe, path in made.items():
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["producer"]["tool"] == "llama.cpp convert_hf_to_gguf"
        assert (manifest["format"], manifest["recipe"]) == ("gguf", recipe)
        theirs_types = read_gguf_summary(path / "model.gguf")[2]["tensor_type_by_name"]
        assert theirs_types == read_gguf_summary(ours[recipe] / "model.gguf")[2]["tensor_type_by_name"]

    # Q8_0: llama.cpp's C quantizer and gguf-py's reference quantizer store the same bytes
    a, b = read_gguf_file(ours["q8_0"] / "model.gguf"), read_gguf_file(made["q8_0"] / "model.gguf")
    for name, t in a.tensors.items():
        u = b.tensors[name]
        assert bytes(a.data[t.offset : t.offset + t.n_bytes]) == bytes(b.data[u.offset : u.offset + u.n_bytes]), name

    # fp32: the same logits through the GGUF runner, every prompt row and decode steps
    mine = open_artefact_runner(ours["fp32"], threads=1, logits="all")
    theirs = open_artefact_runner(made["fp32"], threads=1, logits="all")
    np.testing.assert_allclose(theirs.prefill(PROMPT), mine.prefill(PROMPT), atol=1e-4, rtol=0)
    for token in (3, 17, 200):
        np.testing.assert_allclose(theirs.decode(token), mine.decode(token), atol=1e-4, rtol=0)

    # one bench of both Q8_0 files, then the report's ratios to llama.cpp's row
    out = root / "bench.json"
    res = run_cli("bench", str(ours["q8_0"]), str(made["q8_0"]), *BENCH, "--json", str(out))
    assert res.code == 0, res.stderr[-2000:]
    assert "vs llama.cpp" in res.stdout
    res = run_cli("report", str(out), "-o", str(root / "report"))
    assert res.code == 0, res.stderr[-2000:]
    md = (root / "report" / "report.md").read_text()
    section = md[md.index("### vs llama.cpp") :]
    row = next(line for line in section.splitlines() if line.startswith("| llamacpp_q8_0 |"))
    assert row.count("1.00×") == 4  # the reference against itself
