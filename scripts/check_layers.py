#!/usr/bin/env python3
"""The import-graph check of tinyexport's layering (run by `make lint`, tested by tests/test_layers.py).

import-linter cannot see this tree (setuptools ``package-dir`` maps ``models/``, ``converters/`` and
``verify/`` into the ``tinyexport`` namespace from outside its folder), so the same three contracts are
checked here from the source files: every import statement, function-level ones included, with
relative imports resolved and ``if TYPE_CHECKING:`` blocks left out.

1. Layers: a module imports only from its own layer or the layers below it; modules in sibling
   groups of one layer (written ``a | b``) never import each other.
2. No import cycles between modules.
3. Runtime-only modules (what a phone/laptop runs an artefact with) never import torch or transformers.

Exit 0 when clean, 1 with one line per violation.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

# Top to bottom. Each layer: sibling groups separated by "|"; each group: module prefixes joined by ",".
LAYERS: tuple[str, ...] = (
    "tinyexport.cli, tinyexport.__main__",
    "tinyexport.commands, tinyexport.records.capture",
    "tinyexport.verify | tinyexport.bench | tinyexport.generate, tinyexport.speculative, tinyexport.chat | tinyexport.sweep | tinyexport.finetune",
    "tinyexport.resolve",
    "tinyexport.runners | tinyexport.converters | tinyexport.flops",
    "tinyexport.formats, tinyexport.artefact",
    "tinyexport.models",
    "tinyexport.tokenizer, tinyexport.corpus",
    "tinyexport.records",
    "tinyexport.errors, tinyexport.atomic, tinyexport.hashing, tinyexport.paths, tinyexport.console, "
    "tinyexport.progress, tinyexport.resources, tinyexport.native_logs, tinyexport.faults, tinyexport.stages, tinyexport",
)
RUNTIME_ONLY = (
    "tinyexport.formats",
    "tinyexport.artefact",
    "tinyexport.runners.base",
    "tinyexport.runners.tflite_runner",
    "tinyexport.runners.tflite_chunks",
    "tinyexport.runners.ort_runner",
    "tinyexport.runners",
    "tinyexport.generate",
    "tinyexport.speculative",
    "tinyexport.chat",
    "tinyexport.tokenizer",
    "tinyexport.bench.measure",
    "tinyexport.bench.stats",
)
HEAVY = ("torch", "transformers")


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int


def package_map(root: Path) -> dict[str, str]:
    """Folder (relative to ``root``) -> dotted package, from pyproject's ``[tool.setuptools] package-dir``."""
    data = tomllib.loads((root / "pyproject.toml").read_text())
    return {folder: pkg for pkg, folder in data["tool"]["setuptools"]["package-dir"].items()}


def module_files(root: Path) -> dict[str, Path]:
    modules = {}
    for folder, package in package_map(root).items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(module: str, path: Path) -> list[Edge]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            edges += [Edge(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            edges.append(Edge(module, base, node.lineno))
            edges += [Edge(module, f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return edges


def layer_of(module: str) -> tuple[int, int] | None:
    """(layer index, sibling group index) of the longest matching prefix."""
    best, best_len = None, -1
    for i, layer in enumerate(LAYERS):
        for g, group in enumerate(layer.split("|")):
            for prefix in (p.strip() for p in group.split(",")):
                if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                    best, best_len = (i, g), len(prefix)
    return best


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours ``name`` refers to (an attribute import names its module), else None."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _runtime_only(module: str) -> bool:
    """A module of the runtime-only set (a package entry covers its submodules, ``tinyexport.runners`` its
    ``__init__`` alone: the torch and transformers runners live beside the runtime ones)."""
    return any(module == m or (m != "tinyexport.runners" and module.startswith(m + ".")) for m in RUNTIME_ONLY)


def violations(edges: list[Edge], modules: dict[str, Path]) -> list[str]:
    problems = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if _runtime_only(e.importer) and e.imported.split(".")[0] in HEAVY:
            problems.append(f"{e.importer}:{e.line} imports {e.imported} (runtime-only modules must not need torch)")
        target = _known(e.imported, modules)
        if target is None or target == e.importer:
            continue
        if not (
            target == "tinyexport" or e.importer.startswith(target + ".")
        ):  # a package's own __init__ is not an edge
            graph[e.importer].add(target)
        src, dst = layer_of(e.importer), layer_of(target)
        if src is None or dst is None:
            problems.append(f"{e.importer if src is None else target} is in no layer of scripts/check_layers.py")
            continue
        if dst[0] < src[0]:
            problems.append(
                f"{e.importer}:{e.line} imports {target}, a higher layer ({LAYERS[dst[0]]!r} above {LAYERS[src[0]]!r})"
            )
        elif dst[0] == src[0] and dst[1] != src[1]:
            problems.append(f"{e.importer}:{e.line} imports {target}: sibling groups of one layer are independent")
    for cycle in find_cycles(graph):
        problems.append("import cycle: " + " -> ".join(cycle))
    return sorted(set(problems))


def check(root: Path, extra: list[Edge] = ()) -> list[str]:
    modules = module_files(root)
    edges = [e for m, p in modules.items() for e in imports_of(m, p)] + list(extra)
    return violations(edges, modules)


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    problems = check(root)
    for line in problems:
        print(line)
    print(f"layers: {len(problems)} violation(s) in {len(module_files(root))} modules")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
