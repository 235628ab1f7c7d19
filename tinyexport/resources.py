"""Process resource readings (peak RSS) without third-party packages."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb(include_children: bool = True) -> float:
    """High-water resident set size of this process (and its waited-for children), in MiB."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / (1024 * 1024)  # Linux reports KiB, macOS bytes
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    if not include_children:
        return own
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale)
