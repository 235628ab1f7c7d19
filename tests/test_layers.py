"""The layering written in README holds (scripts/check_layers.py), and the check can fail."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_layers.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_layers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_layers", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_tree_keeps_its_layers():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "0 violation(s)" in proc.stdout


def _copy_tree(tmp_path: Path) -> Path:
    for name in ("pyproject.toml",):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("tinyexport", "models", "converters", "verify"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_a_deliberate_inversion_fails(tmp_path):
    """core importing the CLI layer, runners importing converters, a cycle, torch in a runtime module."""
    tree = _copy_tree(tmp_path)
    check = _checker()
    assert check.check(tree) == []
    with (tree / "tinyexport" / "atomic.py").open("a") as f:
        f.write("\n\ndef _inverted():\n    from tinyexport.commands import options  # noqa\n")
    with (tree / "tinyexport" / "runners" / "ort_runner.py").open("a") as f:
        f.write("\n\ndef _sideways():\n    from tinyexport.converters import onnx  # noqa\n")
    with (tree / "tinyexport" / "formats" / "onnx_io.py").open("a") as f:
        f.write("\n\ndef _heavy():\n    import torch  # noqa\n")
    problems = check.check(tree)
    assert any(p.startswith("tinyexport.atomic:") and "higher layer" in p for p in problems), problems
    assert any(p.startswith("tinyexport.runners.ort_runner:") and "sibling" in p for p in problems), problems
    assert any(p.startswith("tinyexport.formats.onnx_io:") and "torch" in p for p in problems), problems


def test_cycles_are_found():
    check = _checker()
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert check.find_cycles(graph) == [["a", "b", "c"]]
    assert check.find_cycles({"a": {"b"}, "b": set()}) == []
