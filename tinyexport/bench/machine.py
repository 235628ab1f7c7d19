"""What the benchmark ran on: CPU model, cores, RAM, OS, runtime versions, git commit. No heavy imports."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from tinyexport import __version__
from tinyexport.artefact import tool_versions


def cpu_model() -> str:
    """The CPU's marketing name (Linux/Android /proc/cpuinfo, macOS sysctl), else the machine type."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor", "cpu model") and value.strip():
                return value.strip()
    if platform.system() == "Darwin":
        try:
            return (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
                ).stdout.strip()
                or platform.machine()
            )
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown"


def ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def git_commit() -> str:
    """Short commit of the tinyexport checkout (``-dirty`` if modified), or ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


def host_name() -> str:
    return platform.node() or "unknown-host"


def machine_info() -> dict[str, Any]:
    ram = ram_bytes()
    return {
        "host": host_name(),
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "ram_gb": round(ram / 2**30, 1) if ram else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "runtime_versions": tool_versions(),
        "tinyexport_version": __version__,
        "git_commit": git_commit(),
    }
