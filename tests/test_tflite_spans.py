"""Attention spans (``--decode-spans``) and in-place cache updates of the TFLite export, on real tiny
conversions: a file with spans 4 and 8 over a 16-slot cache decodes and prefills across every span
boundary exactly like the single-span file, stores its weights once, and the runner really uses the
smallest span; binding one cache buffer as input and output gives the same logits as two buffers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyexport.converters.export_config import ExportConfig, default_spans, parse_spans
from tinyexport.formats.recipes import tolerance_for
from tinyexport.formats.tflite_io import parse_signature, signature_names
from tinyexport.models.config import TINY

from .tiny_models import save_hf_checkpoint

S = 16
SPANS = (4, 8)
PROMPT = np.random.default_rng(11).integers(0, TINY.vocab_size, S, dtype=np.int64)
SAME_MATH_MAX_ABS = 1e-5  # same weights and ops; only the number of (masked) keys differs


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    from tinyexport.converters.pipeline import export_artefact
    from tinyexport.models.checkpoint import resolve_checkpoint

    directory = save_hf_checkpoint(TINY, tmp_path_factory.mktemp("spans_hf"), seed=5)
    ckpt = resolve_checkpoint(str(directory), cache=tmp_path_factory.mktemp("cache"))
    out = {}
    for label, spans, prefill_spans in (("plain", (), False), ("spans", SPANS, True), ("decode_only", SPANS, False)):
        config = ExportConfig(
            format="tflite",
            kv_cache_max_len=S,
            prefill_seq_lens=(4, 8),
            prefill_logits="all",
            decode_spans=spans,
            prefill_spans=prefill_spans,
        )
        path = tmp_path_factory.mktemp("art") / label
        out[label] = path
        out[label + "_manifest"] = export_artefact(ckpt, config, path, source_ref={"spec": "t"})
    out["ckpt"] = ckpt
    return out


def _runner(art, **options):
    from tinyexport.artefact import load_artefact
    from tinyexport.runners.tflite_runner import TFLiteRunner

    loaded = load_artefact(art)
    return TFLiteRunner(loaded.model_path, loaded.config, kv_cache_max_len=S, threads=1, **options)


def test_signature_names_round_trip():
    names = signature_names((4, 8), SPANS)
    assert names == ["prefill_4_s4", "decode_s4", "prefill_4_s8", "prefill_8_s8", "decode_s8"] + [
        "prefill_4",
        "prefill_8",
        "decode",
    ]
    assert [parse_signature(n) for n in names[:2]] == [(4, 4), (1, 4)]
    assert parse_signature("decode") == (1, None) and parse_signature("prefill_8") == (8, None)
    assert parse_signature("decode_sx") is None and parse_signature("other") is None
    # the CLI default: decode spans only, prefill over the whole cache
    assert signature_names((4, 8), SPANS, prefill_spans=False) == [
        "decode_s4",
        "decode_s8",
        "prefill_4",
        "prefill_8",
        "decode",
    ]


def test_span_options_are_validated():
    assert parse_spans("512,256", 1024) == (256, 512)
    assert parse_spans("auto", 2048) == default_spans(2048) == (256, 512, 1024)
    assert parse_spans("auto", 256) == () and parse_spans("none", 1024) == ()
    # `auto` is the CLI default: spans for TFLite only, none for the recipes that widen weights per signature
    assert parse_spans("auto", 1024, "tflite", "dynamic_int8") == parse_spans("auto", 1024, "tflite", "int4_block32")
    assert parse_spans("auto", 1024, "tflite", "int4_block32") == (256, 512)
    assert parse_spans("auto", 1024, "tflite", "fp16") == parse_spans("auto", 1024, "tflite", "weight_only_int8") == ()
    assert parse_spans("auto", 1024, "onnx", "dynamic_int8") == parse_spans("auto", 1024, "gguf", "q8_0") == ()
    ExportConfig(format="onnx", kv_cache_max_len=1024, decode_spans=parse_spans("auto", 1024, "onnx"))
    with pytest.raises(ValueError, match="not a list of integers"):
        parse_spans("256,big", 1024)
    with pytest.raises(ValueError, match="between 1 and kv_cache_max_len - 1"):
        ExportConfig(format="tflite", kv_cache_max_len=S, prefill_seq_lens=(4,), decode_spans=(16,))
    with pytest.raises(ValueError, match="tflite only"):
        ExportConfig(format="onnx", kv_cache_max_len=S, prefill_seq_lens=(4,), decode_spans=(8,))


def test_convert_defaults_to_auto_spans():
    from click.testing import CliRunner

    from tinyexport.commands.convert import convert

    option = next(o for o in convert.params if o.name == "decode_spans")
    assert option.default == "auto"
    assert next(o for o in convert.params if o.name == "prefill_spans").default is False
    with pytest.raises(ValueError, match="--prefill-spans needs attention spans"):
        ExportConfig(format="tflite", kv_cache_max_len=S, prefill_seq_lens=(4,), prefill_spans=True)
    assert "'none'" in CliRunner().invoke(convert, ["--help"]).output


def test_the_file_has_every_span_signature_and_its_weights_once(arts):
    plain, spans = arts["plain_manifest"], arts["spans_manifest"]
    assert sorted(spans["signatures"]) == sorted(signature_names((4, 8), SPANS))
    assert spans["tflite"]["attention_spans"] == [4, 8, S]
    # every signature shares the one set of weights: only a few int32 shape/slice constants are added
    stored_plain, stored_spans = plain["tflite"]["constant_bytes_by_type"], spans["tflite"]["constant_bytes_by_type"]
    assert stored_spans.pop("FLOAT32") == stored_plain.pop("FLOAT32")
    assert 0 <= stored_spans["INT32"] - stored_plain["INT32"] < 1024


def test_decode_across_span_boundaries_equals_the_single_span_file(arts):
    from tinyexport.runners.tflite_chunks import Chunk

    plain, spans = _runner(arts["plain"]), _runner(arts["spans"])
    assert spans.spans == (4, 8, S) and plain.spans == (S,)
    used, rows_plain, rows_spans = [], [], []
    for token in PROMPT:  # fills 1..16: crosses 4 and 8 and runs to the end of the cache
        used.append(spans._signature_for(Chunk(1, spans.position, 1)).name)
        rows_plain.append(plain.decode(int(token)))
        rows_spans.append(spans.decode(int(token)))
    assert used == ["decode_s4"] * 4 + ["decode_s8"] * 4 + ["decode"] * 8
    np.testing.assert_allclose(np.stack(rows_spans), np.stack(rows_plain), atol=SAME_MATH_MAX_ABS, rtol=0)


def test_prefill_across_span_boundaries_equals_the_single_span_file_and_transformers(arts):
    from tinyexport.runners.hf_runner import HFRunner

    hf = HFRunner.from_checkpoint(arts["ckpt"], max_len=S).prefill(PROMPT)
    plain, spans = _runner(arts["plain"]), _runner(arts["spans"])
    # 3 tokens (prefill_4_s4), 3 (prefill_4_s8: ends at 6), 5 (prefill_8 whole cache: ends at 11), 5
    got_plain, got_spans = [], []
    for count in (3, 3, 5, 5):
        start = spans.position
        got_plain.append(plain.prefill(PROMPT[start : start + count]))
        got_spans.append(spans.prefill(PROMPT[start : start + count]))
    got_plain, got_spans = np.concatenate(got_plain), np.concatenate(got_spans)
    np.testing.assert_allclose(got_spans, got_plain, atol=SAME_MATH_MAX_ABS, rtol=0)
    np.testing.assert_allclose(got_spans, hf, atol=tolerance_for("tflite", "fp32").max_abs, rtol=0)


def test_verify_passes_across_every_span_boundary(arts, tmp_path):
    """`tinyexport verify` on the span file: a 3-token prompt (prefill_4_s4) and 12 teacher-forced
    decode steps (decode_s4, decode_s8, decode) against transformers, fp32 bounds."""
    from .cli_helpers import run_cli

    result = run_cli(
        "verify",
        str(arts["spans"]),
        "--checkpoint",
        str(arts["ckpt"].directory),
        "--prompt-tokens",
        "3",
        "--max-new-tokens",
        "12",
        "--json",
        str(tmp_path / "verify.json"),
    )
    assert result.code == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (candidate,) = json.loads((tmp_path / "verify.json").read_text())["candidates"]
    assert candidate["passed"] and candidate["positions"] == 3 + 11 and candidate["top1_agreement"] == 1.0
    assert candidate["max_abs"] <= tolerance_for("tflite", "fp32").max_abs


def test_in_place_cache_gives_the_same_logits_as_two_buffers(arts):
    inplace, copied = _runner(arts["spans"]), _runner(arts["spans"], inplace_cache=False)
    assert inplace._cache_out is inplace._cache_in and copied._cache_out is not copied._cache_in
    a = np.concatenate([inplace.prefill(PROMPT[:6]), np.stack([inplace.decode(int(t)) for t in PROMPT[6:]])])
    b = np.concatenate([copied.prefill(PROMPT[:6]), np.stack([copied.decode(int(t)) for t in PROMPT[6:]])])
    np.testing.assert_array_equal(a, b)


def test_decode_only_spans_prefill_over_the_whole_cache_and_equal_the_single_span_file(arts):
    """The CLI default (decode spans, no prefill spans): prefill falls back to the whole-cache
    signature, decode still crosses each span; logits equal the file without spans."""
    from tinyexport.runners.tflite_chunks import Chunk

    assert sorted(arts["decode_only_manifest"]["signatures"]) == sorted(signature_names((4, 8), SPANS, False))
    plain, decode_only = _runner(arts["plain"]), _runner(arts["decode_only"])
    assert decode_only._signature_for(Chunk(4, 0, 3)).name == "prefill_4"
    a = np.concatenate([plain.prefill(PROMPT[:3]), np.stack([plain.decode(int(t)) for t in PROMPT[3:]])])
    used = []
    rows = [decode_only.prefill(PROMPT[:3])]
    for token in PROMPT[3:]:
        used.append(decode_only._signature_for(Chunk(1, decode_only.position, 1)).name)
        rows.append(decode_only.decode(int(token))[None])
    assert used[0] == "decode_s4" and "decode_s8" in used and used[-1] == "decode"
    np.testing.assert_allclose(np.concatenate(rows), a, atol=SAME_MATH_MAX_ABS, rtol=0)
