"""The roofline's machine probes: cache-size parsing, the probe array's size, the read kernels."""

from __future__ import annotations

import numpy as np
import pytest

from tinyexport.bench.probes import (
    MAX_ARRAY_BYTES,
    MIN_ARRAY_BYTES,
    READ_KERNELS,
    last_level_cache_bytes,
    measure_bandwidth,
    probe_array_bytes,
)


def test_last_level_cache_is_the_largest_size_linux_reports(tmp_path):
    for index, size in enumerate(["48K", "2048K", "480M", "weird", ""]):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert last_level_cache_bytes(tmp_path) == 480 * 2**20
    assert last_level_cache_bytes(tmp_path / "missing") == 0


@pytest.mark.parametrize(
    "cache, expected",
    [(0, MIN_ARRAY_BYTES), (32 * 2**20, MIN_ARRAY_BYTES), (480 * 2**20, 960 * 2**20), (4 * 2**30, MAX_ARRAY_BYTES)],
)
def test_probe_array_is_twice_the_cache_within_bounds(cache, expected):
    assert probe_array_bytes(cache) == expected


def test_read_kernels_read_every_element():
    """Each kernel's result depends on every element (a reduction), so none can skip the bytes."""
    data = np.ones(1000, dtype=np.float32)
    data[-1] = 7.0
    assert [float(k(data)) for k in READ_KERNELS] == [7.0, 999.0 + 49.0]
    assert measure_bandwidth(2, array_bytes=8 * 2**20, repeats=1) > 0
