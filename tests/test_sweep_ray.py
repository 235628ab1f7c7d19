"""`tinyexport sweep --executor ray`: a tiny sweep's cell runs as a task on a local Ray instance and lands
in the run store; an address nothing answers on (refused, or a socket that never speaks Ray) and a
missing Ray install are one line, exit 2, bounded by the connect timeout."""

from __future__ import annotations

import json
import socket

import pytest

from tinyexport.records.store import STORE_NAME, RunStore

from .cli_helpers import assert_bad_input
from .eval_helpers import tiny_text_checkpoint
from .test_sweep import cli, sweep_text

pytest.importorskip("ray")


def test_sweep_cell_runs_as_a_ray_task_on_a_local_instance(tmp_path):
    ckpt = tiny_text_checkpoint(tmp_path / "tiny")
    text = sweep_text(tmp_path / "text.txt")
    args = ["--checkpoint", str(ckpt), "--format", "onnx", "--recipe", "fp32", "--cache-length", "128"]
    args += ["--text", str(text), "--max-tokens", "128", "--window", "64", "--prompt-len", "8", "--new-tokens", "8"]
    args += ["--repeats", "1", "--no-verify", "--max-kl", "0.05"]
    res = cli("sweep", *args, "--executor", "ray", "--jobs", "1", "-o", str(tmp_path / "out"), cache=tmp_path / "c")
    assert res.code == 0, res.stderr[-3000:]
    assert "recommendation: tiny_onnx_fp32_kv128" in res.stdout
    report = json.loads((tmp_path / "out" / "sweep.json").read_text())
    (cell,) = report["cells"]
    assert cell["status"] == "pareto" and cell["metrics"]["kl_mean"] < 1e-4 and cell["metrics"]["decode_tok_s"] > 0
    store = RunStore(tmp_path / "c" / STORE_NAME)
    (record,) = store.runs(command="sweep cell")
    assert record.record["result"]["status"] == "done" and record.record["artefacts"][0]["sha256"]
    # the stages ran inside the Ray worker and recorded themselves in the same store
    assert [r.command for r in store.runs(command="convert")] == ["convert"]
    assert len(store.runs(command="bench")) == 1


def test_unreachable_ray_address_is_one_line(tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: connection refused
    res = cli("sweep", "--executor", "ray", "--address", f"127.0.0.1:{port}", "-o", str(tmp_path / "o"), cache=tmp_path)
    assert_bad_input(res, f"Ray cluster at 127.0.0.1:{port} cannot be reached", "ray start --head")
    assert_bad_input(
        cli("sweep", "--executor", "ray", "--address", "nowhere", cache=tmp_path), "'nowhere' is not HOST:PORT"
    )


def test_silent_endpoint_times_out(tmp_path):
    with socket.socket() as silent:  # accepts TCP, never answers Ray's protocol
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        res = cli(
            "sweep", "--executor", "ray", "--address", f"127.0.0.1:{port}", "--connect-timeout", "3", cache=tmp_path
        )
    assert_bad_input(res, f"no Ray cluster answered at 127.0.0.1:{port} within 3 s", "--connect-timeout")
    assert not (tmp_path / STORE_NAME).exists()


def test_missing_ray_names_the_extra(tmp_path):
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    res = cli("sweep", "--executor", "ray", cache=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")})
    assert_bad_input(res, "needs Ray", "tinyexport[ray]")
