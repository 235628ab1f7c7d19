"""Process and machine resource readings (peak RSS, available memory) without third-party packages."""

from __future__ import annotations

import os
import resource
import sys


def peak_rss_mb(include_children: bool = True) -> float:
    """High-water resident set size of this process (and its waited-for children), in MiB."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)  # Linux reports KiB, macOS bytes
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    if not include_children:
        return own
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale)


MAX_MEMORY_ENV = "TINYEXPORT_MAX_MEMORY"  # MiB (or "2G", "500M"): what tinyexport may assume is available


def parse_memory_mb(text: str) -> float:
    """``"1500"`` (MiB), ``"500M"``, ``"2G"``, ``"2GiB"`` -> MiB. Raises ValueError on anything else."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2}.get(value[-1:])
    number = float(value[:-1] if scale is not None else value)
    if not number > 0 or number != number or number == float("inf"):
        raise ValueError(f"not a positive size: {text!r}")
    return number * (scale if scale is not None else 1.0)


def available_memory_mb(meminfo: str = "/proc/meminfo") -> float:
    """``MemAvailable`` in MiB (what the kernel can give a new process without swapping); on systems
    without /proc, physical memory as a fallback."""
    try:
        with open(meminfo, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError):
        return float("inf")
