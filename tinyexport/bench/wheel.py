"""A wheel of this tinyexport checkout, for ``bench --on`` to install on a target that lacks it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .transports import RemoteError


def project_root() -> Path | None:
    """The source checkout this tinyexport runs from (editable install), or None."""
    import tinyexport

    root = Path(tinyexport.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def build_wheel(out: Path) -> Path:
    root = project_root()
    if root is None:
        raise RemoteError(
            "tinyexport is not installed from a source checkout here, so no wheel can be built for the "
            "target; install tinyexport[runtime] there and pass --remote-python"
        )
    # build isolation: pip fetches the build backend pyproject.toml names (setuptools>=68)
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(root)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    wheels = sorted(out.glob("tinyexport-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = [line for line in proc.stderr.splitlines() if line.strip()]
        raise RemoteError(f"building a tinyexport wheel for the target failed: {tail[-1] if tail else proc.returncode}")
    return wheels[0]
