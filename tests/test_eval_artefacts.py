"""`tinyexport eval` on real exported files (tiny model, both formats): the decode path of a
last-position-only artefact reproduces the reference, and artefact-specific bad input exits 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .cli_helpers import assert_bad_input, run_cli
from .eval_helpers import STRIDE, TEXT, WINDOW, tiny_text_checkpoint

FIXTURE = Path(__file__).parent / "fixtures" / "mmlu"
CACHE_LEN = 256


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tiny_text_checkpoint(tmp_path_factory.mktemp("tiny_text_art"), seed=5)


@pytest.fixture(scope="module", params=["onnx", "tflite"])
def artefact(request, tiny_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"art_{request.param}") / f"tiny_{request.param}"
    res = run_cli(
        "convert",
        "--format",
        request.param,
        "--checkpoint",
        str(tiny_ckpt),
        "-o",
        str(out),
        "--kv-cache-max-len",
        str(CACHE_LEN),
        "--prefill-seq-lens",
        "8,32",
        cache=out.parent / "cache",
    )
    assert res.code == 0, res.stderr
    assert json.loads((out / "manifest.json").read_text())["prefill_logits"] == "last"
    return out


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("art_text") / "text.txt"
    path.write_text(TEXT)
    return path


def test_artefact_matches_the_reference_through_token_by_token_decode(tmp_path, tiny_ckpt, artefact, text_file):
    out = tmp_path / "ppl.json"
    res = run_cli(
        "eval",
        "perplexity",
        str(artefact),
        "--checkpoint",
        str(tiny_ckpt),
        "--text",
        str(text_file),
        "--window",
        str(WINDOW),
        "--stride",
        str(STRIDE),
        "--reference-precision",
        "float32",
        "--json",
        str(out),
        cache=tmp_path,
    )
    assert res.code == 0, res.stderr
    hf, art = json.loads(out.read_text())["candidates"]
    assert art["name"] == artefact.name and art["logits_path"] == "decode" and art["recipe"] == "fp32"
    assert art["scored_tokens"] == hf["scored_tokens"] == len(TEXT) - 1
    assert art["perplexity"] == pytest.approx(hf["perplexity"], rel=1e-5)
    assert art["kl_mean"] < 1e-9 and art["kl_p99"] < 1e-9 and art["top1_agreement"] == 1.0

    res = run_cli(
        "eval",
        "choice",
        str(FIXTURE),
        str(artefact),
        "--checkpoint",
        str(tiny_ckpt),
        "--scoring",
        "text",
        "--json",
        str(out),
        cache=tmp_path,
    )
    assert res.code == 0, res.stderr
    hf, art = json.loads(out.read_text())["candidates"]
    assert art["predictions"] == hf["predictions"] and art["total"] == 9


def test_window_longer_than_the_artefact_cache_exits_2(tmp_path, tiny_ckpt, artefact, text_file):
    res = run_cli(
        "eval",
        "perplexity",
        str(artefact),
        "--checkpoint",
        str(tiny_ckpt),
        "--text",
        str(text_file),
        "--window",
        str(CACHE_LEN + 1),
        "--stride",
        "64",
        cache=tmp_path,
    )
    assert_bad_input(res, f"--window {CACHE_LEN + 1}", f"KV cache of {artefact.name} ({CACHE_LEN})")


def test_artefact_with_another_tokenizer_exits_2(tmp_path, tiny_ckpt, artefact, text_file):
    from tokenizers import Tokenizer, models

    from tinyexport.artefact import write_manifest

    other = tmp_path / "other_vocab"
    shutil.copytree(artefact, other)
    Tokenizer(models.WordLevel({"[UNK]": 0, "to": 1, "be": 2}, unk_token="[UNK]")).save(str(other / "tokenizer.json"))
    manifest = json.loads((other / "manifest.json").read_text())
    write_manifest(
        other, {k: v for k, v in manifest.items() if k not in ("schema", "created", "tool_versions", "files")}
    )
    res = run_cli(
        "eval",
        "perplexity",
        str(other),
        "--checkpoint",
        str(tiny_ckpt),
        "--text",
        str(text_file),
        "--window",
        "64",
        "--stride",
        "32",
        cache=tmp_path,
    )
    assert_bad_input(res, "other_vocab", "different tokenizer")
