"""`tinyexport sweep --executor ray` refusals: an address nothing answers on (refused, or a socket that
never speaks Ray) and a missing Ray install are one line, exit 2, bounded by the connect timeout. (A
real cell on a local Ray instance: tests/test_sweep.py::test_sweep_runs_records_resumes_and_ranks.)"""

from __future__ import annotations

import socket

import pytest

from tinyexport.records.store import STORE_NAME

from .cli_helpers import assert_bad_input
from .test_sweep import cli


def test_unreachable_ray_address_is_one_line(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: connection refused
    res = cli("sweep", "--executor", "ray", "--address", f"127.0.0.1:{port}", "-o", str(tmp_path / "o"), cache=tmp_path)
    assert_bad_input(res, f"Ray cluster at 127.0.0.1:{port} cannot be reached", "ray start --head")
    assert_bad_input(
        cli("sweep", "--executor", "ray", "--address", "nowhere", cache=tmp_path), "'nowhere' is not HOST:PORT"
    )


def test_silent_endpoint_times_out(tmp_path):
    pytest.importorskip("ray")
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
