"""Machine probes for the roofline: memory read bandwidth and fp32 matmul peak, with numpy only.

Measured once per (host, CPU, thread count) and cached in ``<cache dir>/bench/probes.json``; the
harness runs them in a subprocess whose BLAS/OpenMP thread count matches the benchmark's.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tinyexport.atomic import write_json_atomic

from .machine import cpu_model, host_name

MIN_ARRAY_BYTES = 256 * 2**20  # small enough for a phone
MAX_ARRAY_BYTES = 2**30
MATMUL_SIZES = (512, 1024, 2048)
PROBE_SCHEMA = 2  # 2: best of two read kernels over an array twice the last-level cache


def last_level_cache_bytes(sysfs: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """The largest CPU cache Linux reports for cpu0 (e.g. ``480M``, ``32768K``); 0 when unknown."""
    largest = 0
    for size_file in sysfs.glob("index*/size"):
        text = size_file.read_text(encoding="ascii", errors="replace").strip().upper()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            largest = max(largest, int(digits) * scale)
    return largest


def probe_array_bytes(cache_bytes: int) -> int:
    """Twice the last-level cache, so the probe streams from memory (some server VMs report 480 MiB of
    L3), within 256 MiB .. 1 GiB."""
    return min(max(MIN_ARRAY_BYTES, 2 * cache_bytes), MAX_ARRAY_BYTES)


def _self_dot(chunk: np.ndarray) -> float:
    return float(np.dot(chunk, chunk))  # BLAS sdot: each element read once, FMA with several accumulators


READ_KERNELS: tuple[Callable[[np.ndarray], Any], ...] = (np.max, _self_dot)


def measure_bandwidth(threads: int, array_bytes: int | None = None, repeats: int = 7) -> float:
    """Best streaming-read bandwidth (GB/s): ``threads`` workers each read a slice of one array with a
    reduction (``np.max`` and a BLAS self-dot, the faster of the two: numpy's max alone reached 84% of
    the dot's rate on one server CPU, and runtimes that stream weights faster than the probe made the
    roofline read above 100%).

    numpy releases the GIL inside reductions, so the slices are read in parallel.
    """
    size = array_bytes if array_bytes is not None else probe_array_bytes(last_level_cache_bytes())
    data = np.ones(size // 4, dtype=np.float32)  # touched: every page is resident
    chunks = np.array_split(data, max(1, threads))
    best = float("inf")
    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        for _ in range(repeats):
            for kernel in READ_KERNELS:
                start = time.perf_counter()
                list(pool.map(kernel, chunks))
                best = min(best, time.perf_counter() - start)
    return data.nbytes / best / 1e9


def measure_matmul_peak(sizes: tuple[int, ...] = MATMUL_SIZES, repeats: int = 3) -> float:
    """Best fp32 square matmul rate (GFLOP/s, 2 n^3 FLOPs) of numpy's BLAS over a few sizes."""
    best = 0.0
    for n in sizes:
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
        a @ b  # warm-up (thread pool start, page faults)
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def run_probes(threads: int) -> dict[str, Any]:
    """Both probes, in this process (the caller sets the thread environment)."""
    return {
        "bandwidth_gb_s": round(measure_bandwidth(threads), 2),
        "matmul_gflops": round(measure_matmul_peak(), 1),
        "threads": threads,
        "numpy": np.__version__,
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def probe_key(threads: int) -> str:
    return f"{host_name()}|{cpu_model()}|threads={threads}"


def probes_file(cache: Path) -> Path:
    return Path(cache) / "bench" / "probes.json"


def cached_probes(
    cache: Path, threads: int, measure: Callable[[int], dict[str, Any]], *, refresh: bool = False
) -> dict[str, Any]:
    """The probes for this host and thread count: from the cache file, else ``measure(threads)`` (stored).

    Returns the probe dict with ``cached`` saying whether it was read back.
    """
    path = probes_file(cache)
    stored: dict[str, Any] = {}
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError:
            stored = {}  # a damaged cache is re-measured, never trusted
    if stored.get("schema") != PROBE_SCHEMA:
        stored = {"schema": PROBE_SCHEMA, "hosts": {}}
    key = probe_key(threads)
    if not refresh and key in stored["hosts"]:
        return {**stored["hosts"][key], "cached": True}
    result = measure(threads)
    stored["hosts"][key] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, stored)
    return {**result, "cached": False}
