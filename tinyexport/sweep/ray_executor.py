"""Running a sweep's cells as Ray tasks: the same ``run_cell`` (each stage the tinyexport command in its
own process) on a local Ray instance (``ray.init(num_cpus=jobs)``) or an existing cluster
(``--address``). Each task asks for one CPU and the memory of similar recorded conversions (capped at
the largest node's), so Ray's scheduler does what the local pool's memory budget does. Results come
back to the driver, which records each cell in its run store as it finishes."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tinyexport.errors import UserError

from .executor import MemoryBudget, cell_spec, run_cell
from .matrix import Cell

RAY_EXTRA = "pip install 'tinyexport[ray]' (ray==2.60.0)"

# Connects to ADDRESS and prints the cluster's CPUs; run in a child so that a silent or wrong endpoint
# (ray.init retries for minutes and its core logs to fd 2) is bounded by a timeout and stays quiet.
_PROBE = (
    "import logging, sys, ray\n"
    "ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)\n"
    "print(ray.cluster_resources().get('CPU', 0))\n"
    "ray.shutdown()\n"
)


class RayAddressError(UserError):
    """``--address`` names no reachable Ray cluster."""


def import_ray():
    """The ``ray`` module, or a one-line UserError naming the extra."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed; {RAY_EXTRA}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT``; None for ``auto``/``local``."""
    if address in ("auto", "local"):
        return None
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise RayAddressError(
            f"--address {address!r} is not HOST:PORT or ray://HOST:PORT (e.g. 10.0.0.5:6379, the address "
            "`ray start --head` prints)"
        )
    return parts.hostname, port


def check_address(address: str, timeout_s: float) -> None:
    """Refuse an address no Ray cluster answers on within ``timeout_s`` (TCP first, then a real connect)."""
    where = _host_port(address)
    if where is not None:
        try:
            socket.create_connection(where, timeout=min(timeout_s, 10.0)).close()
        except OSError as err:
            reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
            raise RayAddressError(
                f"Ray cluster at {address} cannot be reached ({reason}); start it with `ray start --head` "
                "there, check the address, or drop --address to start a local Ray instance"
            ) from None
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, address], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        raise RayAddressError(
            f"no Ray cluster answered at {address} within {timeout_s:g} s; check the address (the GCS port "
            "`ray start --head` prints, 6379 by default) or raise --connect-timeout"
        ) from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("[")]
        raise RayAddressError(
            f"cannot connect to the Ray cluster at {address}: {(lines[-1] if lines else f'exit {proc.returncode}')[:200]}"
        )


def _cell_task(cell: Cell, out_dir: str, omp_threads: str | None) -> dict[str, Any]:
    """One cell inside a Ray worker; Ray's resources already admitted its memory. Ray sets
    OMP_NUM_THREADS to the task's CPUs (1) in its workers; the stages get the driver's setting back, so
    they convert and bench with the threads a plain run uses (numbers comparable to the local pool)."""
    import os

    if omp_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp_threads
    return run_cell(cell, Path(out_dir), MemoryBudget(float("inf")), lambda _cell: 0.0)


def run_cells_ray(
    cells: list[Cell],
    out_dir: Path,
    jobs: int,
    convert_mb: Callable[[Cell], float],
    on_done: Callable[[Cell, dict[str, Any]], None],
    address: str | None = None,
    connect_timeout_s: float = 60.0,
    checked: bool = False,
) -> list[dict[str, Any]]:
    """Every cell as a Ray task; ``on_done`` runs in this process as each result arrives. Without
    ``address`` a local instance with ``jobs`` CPUs is started (and stopped at the end); ``checked``:
    the caller already ran ``check_address``."""
    import logging
    import os

    ray = import_ray()
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        ray.init(num_cpus=jobs, include_dashboard=False, **quiet)
    else:
        if not checked:
            check_address(address, connect_timeout_s)
        ray.init(address=address, **quiet)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        node_bytes = max((n.get("Resources", {}).get("memory", 0.0) for n in nodes), default=0.0)
        task = ray.remote(_cell_task)
        pending = {}
        for cell in cells:
            want = convert_mb(cell) * 2**20
            memory = int(min(want, node_bytes)) if node_bytes else int(want)
            ref = task.options(num_cpus=1, memory=memory, max_retries=0).remote(
                cell, str(Path(out_dir).resolve()), os.environ.get("OMP_NUM_THREADS")
            )
            pending[ref] = cell
        results: dict[str, dict[str, Any]] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cell = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # the worker died, the task was cancelled...
                    text = str(err).strip().splitlines()
                    result = {
                        "key": cell.key,
                        "cell": cell.name,
                        "artefact": str(Path(out_dir) / cell.name),
                        "spec": cell_spec(cell),
                        "status": "failed",
                        "failed_stage": "ray",
                        "error": (text[0] if text else type(err).__name__)[:300],
                        "seconds": {},
                    }
                on_done(cell, result)
                results[cell.key] = result
        return [results[c.key] for c in cells]
    finally:
        ray.shutdown()
