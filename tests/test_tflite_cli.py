"""`tinyexport convert --format tflite` through the real CLI: bad input exits 2 with one line and
writes nothing; a conversion killed midway leaves no artefact directory behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .cli_helpers import assert_bad_input, run_cli


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--quantize", "bogus"], ["bogus", "--quantize"]),
        (["--prefill-seq-lens", ""], ["--prefill-seq-lens", "empty"]),
        (["--prefill-seq-lens", " , "], ["--prefill-seq-lens", "empty"]),
        (["--prefill-seq-lens", "8,x"], ["non-integer", "8,x"]),
        (["--prefill-seq-lens", "8,0"], ["positive"]),
        (["--prefill-seq-lens", "8,64", "--kv-cache-max-len", "32"], ["[64]", "exceed kv_cache_max_len 32"]),
        (["--kv-cache-max-len", "0"], ["kv_cache_max_len"]),
    ],
)
def test_bad_export_options_exit_2(tmp_path, tiny_hf_dir, args, fragments):
    out = tmp_path / "out"
    res = run_cli(
        "convert",
        "--format",
        "tflite",
        "--checkpoint",
        str(tiny_hf_dir),
        "-o",
        str(out),
        *args,
        cache=tmp_path / "cache",
    )
    assert_bad_input(res, *fragments)
    assert not out.exists()


def test_recipe_the_format_cannot_build_exits_2(tmp_path, tiny_hf_dir):
    from tinyexport.formats.recipes import RECIPES

    missing = [name for name, r in RECIPES.items() if "onnx" not in r.formats]
    assert missing, "every recipe is buildable as ONNX; pick another format/recipe pair for this test"
    res = run_cli(
        "convert",
        "--format",
        "onnx",
        "--quantize",
        missing[0],
        "--checkpoint",
        str(tiny_hf_dir),
        "-o",
        str(tmp_path / "out"),
        cache=tmp_path / "cache",
    )
    assert_bad_input(res, missing[0], "not available for onnx")


def test_existing_output_needs_force(tmp_path, tiny_hf_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = run_cli(
        "convert",
        "--format",
        "tflite",
        "--checkpoint",
        str(tiny_hf_dir),
        "--kv-cache-max-len",
        "16",
        "--prefill-seq-lens",
        "4",
        "-o",
        str(out),
        cache=tmp_path / "cache",
    )
    assert_bad_input(res, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def _start_conversion(tiny_hf_dir: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TINYEXPORT_CACHE=str(out.parent / "cache"))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinyexport",
            "convert",
            "--format",
            "tflite",
            "--quantize",
            "--checkpoint",
            str(tiny_hf_dir),
            "--prefill-seq-lens",
            "4",
            "--kv-cache-max-len",
            "16",
            "-o",
            str(out),
            "--verbose",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _wait_until_converting(proc: subprocess.Popen, timeout: float = 300) -> None:
    """Read the conversion's output until litert-torch reports it is tracing the model."""
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if "Torch Export" in line:
            return
        assert time.monotonic() < deadline, "conversion did not start"
    pytest.fail(f"conversion ended before it started converting (exit {proc.wait()})")


@pytest.mark.parametrize("sig, leaves_temp", [(signal.SIGKILL, True), (signal.SIGINT, False)])
def test_conversion_killed_midway_leaves_no_artefact(tmp_path, tiny_hf_dir, sig, leaves_temp):
    out = tmp_path / "art"
    proc = _start_conversion(tiny_hf_dir, out)
    try:
        _wait_until_converting(proc)
        temps = list(tmp_path.glob(".tmp-art-*"))
        assert len(temps) == 1  # the artefact is being built in a temporary sibling
        proc.send_signal(sig)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.communicate()
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 130  # the CLI reports the interrupt as a shell would
    assert not out.exists()  # never a half-written artefact under the requested name
    assert bool(list(tmp_path.glob(".tmp-art-*"))) == leaves_temp  # an interrupt cleans up; SIGKILL cannot


def test_conversion_shows_its_stages_and_verbose_shows_the_converter(tmp_path, tiny_hf_dir):
    """By default the converters' progress, warnings and native logs are held back and convert prints its
    own stages; --verbose shows the converters' chatter."""
    args = (
        "convert",
        "--format",
        "tflite",
        "--quantize",
        "--checkpoint",
        str(tiny_hf_dir),
        "--prefill-seq-lens",
        "4",
        "--kv-cache-max-len",
        "16",
    )
    quiet = run_cli(*args, "-o", str(tmp_path / "quiet"), cache=tmp_path / "cache")
    assert quiet.code == 0, quiet.stderr[-2000:]
    lines = quiet.stdout.splitlines()
    assert lines[0].startswith("converting") and lines[-1].startswith("wrote")
    stages = [re.fullmatch(r"\[\s*(\d+\.\d) s\] (.+)", line) for line in lines[1:-1]]
    assert all(stages), lines  # one plain line per stage (not a terminal), with the elapsed time
    assert [m.group(2).split()[0] for m in stages] == [
        "loading",
        "tracing",
        "writing",
        "quantizing",
        "reading",
        "hashing",
    ]
    assert "2 signatures: prefill_4, decode" in stages[1].group(2)
    times = [float(m.group(1)) for m in stages]
    assert times == sorted(times)
    assert quiet.stderr.strip() == ""
    loud = run_cli(
        *args,
        "--verbose",
        "-o",
        str(tmp_path / "loud"),
        cache=tmp_path / "cache",
        env={"LITERT_TORCH_SHOW_PROGRESS": "y"},
    )
    assert loud.code == 0 and "Torch Export" in loud.stdout
