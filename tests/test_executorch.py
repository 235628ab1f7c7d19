"""ExecuTorch export of tiny random Llamas: the .pte (XNNPACK) through ExecuTorch's Python runtime vs our
torch model and transformers, prefill-then-decode vs one full forward, `tinyexport verify` on it, the
8da4w recipe within its bounds, and the one-line refusals (foreign method names, no executorch)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tinyexport.artefact import load_artefact, write_manifest
from tinyexport.converters.export_config import ExportConfig
from tinyexport.converters.pipeline import export_artefact
from tinyexport.formats.executorch_io import METHODS
from tinyexport.formats.recipes import recipes_for, tolerance_for
from tinyexport.runners import open_artefact_runner
from tinyexport.runners.base import CacheOverflowError
from tinyexport.runners.hf_runner import HFRunner
from tinyexport.runners.torch_runner import TorchRunner
from tinyexport.verify.parity import compare, reference_trace

from .cli_helpers import assert_bad_input, env_without, run_cli
from .tiny_models import TINY_VARIANTS, save_hf_checkpoint

pytest.importorskip("executorch.exir", reason="executorch (extra executorch) is not installed")

CACHE = 48
MAX_PREFILL = 8  # prompts longer than this run in chunks
PROMPT = np.random.default_rng(7).integers(0, 256, 12)
NEW_TOKENS = 12
# fp32: SmolLM2's tied layout with an odd vocabulary, 2 layers (two caches that must not mix up);
# 8da4w: head_dim != hidden / heads (q width 96, three groups of 32), one layer to keep the lowering short.
CASES = {
    "fp32": dataclasses.replace(TINY_VARIANTS["tied_oddvocab"]),
    "8da4w": dataclasses.replace(TINY_VARIANTS["headdim24"], num_layers=1),
}


def _checkpoint(directory):
    from tinyexport.resolve import open_checkpoint

    return open_checkpoint(str(directory))


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory) -> dict[str, Path]:
    return {r: save_hf_checkpoint(cfg, tmp_path_factory.mktemp(f"et_{r}"), seed=3) for r, cfg in CASES.items()}


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, hf_dirs) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("et_artefacts")
    made = {}
    for recipe, directory in hf_dirs.items():
        export = ExportConfig(
            format="executorch",
            recipe=recipe,
            kv_cache_max_len=CACHE,
            prefill_seq_lens=(MAX_PREFILL,),
            prefill_logits="all",
        )
        made[recipe] = root / recipe
        export_artefact(_checkpoint(directory), export, made[recipe], source_ref={"spec": str(directory)})
    return made


def test_recipes_registered_for_executorch():
    assert set(recipes_for("executorch")) == {"fp32", "8da4w", "dynamic_int8"}


def test_fp32_equals_our_torch_model_and_transformers(artefacts, hf_dirs):
    ckpt = _checkpoint(hf_dirs["fp32"])
    runner = open_artefact_runner(artefacts["fp32"], threads=1)
    assert runner.logits_positions == "all" and runner.max_prefill == MAX_PREFILL
    torch_runner = TorchRunner.from_checkpoint(ckpt, max_len=CACHE)
    np.testing.assert_allclose(runner.prefill(PROMPT), torch_runner.prefill(PROMPT), atol=1e-4, rtol=0)
    for token in (5, 200, 256):
        np.testing.assert_allclose(runner.decode(token), torch_runner.decode(token), atol=1e-4, rtol=0)
    hf = HFRunner.from_checkpoint(ckpt, max_len=CACHE)
    trace = reference_trace(hf, PROMPT, NEW_TOKENS)
    report = compare(trace, runner, tolerance_for("executorch", "fp32"), fmt="executorch", recipe="fp32")
    assert report.passed and report.max_abs <= 1e-4 and report.greedy_match == NEW_TOKENS, report
    manifest = load_artefact(artefacts["fp32"]).manifest
    assert manifest["executorch"]["delegated_subgraphs"]["decode"] > 0  # XNNPACK really took part of it


def test_prefill_then_decode_equals_full_forward(artefacts, hf_dirs):
    """Chunks on a non-empty cache (12 = 8 + 4 inside the runner, 3 = one prefill call) and single-token
    decodes give one full forward's rows; reset then gives the same rows again."""
    tokens = np.random.default_rng(11).integers(0, 257, 24)
    full = TorchRunner.from_checkpoint(_checkpoint(hf_dirs["fp32"]), max_len=CACHE).prefill(tokens)
    runner = open_artefact_runner(artefacts["fp32"], threads=1)
    rows = [runner.prefill(tokens[:12]), runner.prefill(tokens[12:15]), runner.prefill(tokens[15:16])]
    rows += [runner.decode(int(t))[None] for t in tokens[16:]]
    assert runner.position == tokens.size
    np.testing.assert_allclose(np.concatenate(rows), full, atol=1e-4, rtol=0)
    runner.reset()
    np.testing.assert_allclose(runner.prefill(tokens[:9]), full[:9], atol=1e-4, rtol=0)  # 9 = 7 + 2
    runner.rollback(4)
    np.testing.assert_allclose(runner.prefill(tokens[4:20]), full[4:20], atol=1e-4, rtol=0)
    with pytest.raises(CacheOverflowError, match=f"KV cache of {CACHE}"):
        runner.prefill(np.arange(CACHE - 19))


def test_verify_cli_passes_on_the_pte(artefacts, hf_dirs):
    res = run_cli(
        "verify",
        str(artefacts["fp32"]),
        "--checkpoint",
        str(hf_dirs["fp32"]),
        "--prompt-tokens",
        "10",
        "--max-new-tokens",
        "8",
    )
    assert res.code == 0, res.stderr[-2000:]
    assert "executorch/fp32" in res.stdout and "pass" in res.stdout


def test_8da4w_within_its_tolerance(artefacts, hf_dirs):
    hf = HFRunner.from_checkpoint(_checkpoint(hf_dirs["8da4w"]), max_len=CACHE)
    trace = reference_trace(hf, PROMPT, NEW_TOKENS)
    runner = open_artefact_runner(artefacts["8da4w"], threads=1)
    report = compare(trace, runner, tolerance_for("executorch", "8da4w"), fmt="executorch", recipe="8da4w")
    assert report.passed, report
    assert report.max_abs > 1e-3  # really quantized: not the fp32 model
    info = load_artefact(artefacts["8da4w"]).manifest["executorch"]
    assert (info["weight_bits"], info["group_size"]) == (4, 32)


def test_pte_with_other_method_names_is_refused_in_one_line(tmp_path, artefacts):
    """A valid .pte whose only method is `forward` (the manifest re-hashed to match) is refused with one
    line (an ArtefactError, which the CLI prints as one line with exit 2, as for every UserError)."""
    import torch
    from executorch.exir import to_edge

    from tinyexport.artefact import ArtefactError

    class AddOne(torch.nn.Module):
        def forward(self, x):
            return x + 1

    program = to_edge(torch.export.export(AddOne(), (torch.zeros(2),))).to_executorch()
    art = tmp_path / "foreign"
    shutil.copytree(artefacts["fp32"], art)
    (art / "model.pte").write_bytes(program.buffer)
    manifest = json.loads((art / "manifest.json").read_text())
    (art / "manifest.json").unlink()
    write_manifest(art, {k: v for k, v in manifest.items() if k not in ("files", "schema", "created", "tool_versions")})
    with pytest.raises(ArtefactError) as err:
        open_artefact_runner(art)
    message = str(err.value)
    assert "\n" not in message and "['forward']" in message and "not tinyexport's" in message
    assert all(m in message for m in METHODS)


def test_recipe_executorch_cannot_carry_is_refused(tmp_path):
    res = run_cli(
        "convert",
        "--format",
        "executorch",
        "--quantize",
        "q8_0",
        "--checkpoint",
        "tiny",
        "--random-weights",
        "-o",
        str(tmp_path / "x"),
        cache=tmp_path / "cache",
    )
    assert_bad_input(res, "q8_0", "executorch", "8da4w")
    assert not (tmp_path / "x").exists()


def test_missing_executorch_names_the_extra(tmp_path, artefacts):
    result = run_cli(
        "verify", str(artefacts["fp32"]), "--prompt-tokens", "4", env=env_without(tmp_path, "executorch"), timeout=300
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "tinyexport[executorch]" in lines[0] and "--no-deps executorch==1.5.1" in lines[0]
