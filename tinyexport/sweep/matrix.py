"""The sweep matrix: from flags or a small TOML file; its cells and their stable keys (for resume)."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tinyexport.errors import UserError


class MatrixError(UserError, ValueError):
    """A matrix file or flag is unusable; the message names the key and the fix."""


@dataclass(frozen=True)
class Cell:
    """One export to build and measure. ``key`` identifies it across runs (resume)."""

    checkpoint: str
    random_weights: bool
    seed: int
    format: str
    recipe: str
    cache_length: int
    settings: tuple[tuple[str, Any], ...]  # eval/bench settings that change the numbers
    transform: str = ""  # convert's --transform values joined by "+" ("" = none)

    @property
    def transforms(self) -> tuple[str, ...]:
        return tuple(t for t in self.transform.split("+") if t)

    @property
    def key(self) -> str:
        data = {**asdict(self), "settings": dict(self.settings)}
        if not self.transform:  # keys of cells without transforms predate the axis: keep them
            del data["transform"]
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        model = Path(self.checkpoint).name.removesuffix(".gguf") + (f"-r{self.seed}" if self.random_weights else "")
        suffix = "".join("_" + re.sub(r"[^A-Za-z0-9.-]+", "", re.sub("[=:]", "-", t)) for t in self.transforms)
        return f"{model}_{self.format}_{self.recipe}_kv{self.cache_length}{suffix}"


AXES = ("checkpoints", "formats", "recipes", "cache_lengths", "transforms")


@dataclass(frozen=True)
class SweepMatrix:
    checkpoints: tuple[str, ...] = ("smollm2-135m",)
    formats: tuple[str, ...] = ("onnx",)
    recipes: tuple[str, ...] = ("fp32", "dynamic_int8")
    cache_lengths: tuple[int, ...] = (1024,)
    transforms: tuple[str, ...] = ("",)  # transform sets ("prune-heads=0.25+kv-cache=int8"; "" or "none": none)
    random_weights: bool = False
    seed: int = 0
    text: str | None = None  # eval text [default: the eval command's corpus]
    max_tokens: int = 2048
    window: int = 512
    prompt_len: int = 64
    new_tokens: int = 32
    repeats: int = 3
    verify: bool = True
    max_kl: float | None = None
    max_dppl: float | None = None  # percent
    also: tuple[dict[str, Any], ...] = ()  # [[also]] blocks: more axis products, other axes as above
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def axes(self) -> list[dict[str, tuple]]:
        """The main product's axes, then each ``[[also]]`` block's (unset axes from the main product)."""
        main = {k: tuple(getattr(self, k)) for k in AXES}
        return [main] + [{**main, **{k: tuple(v) for k, v in block.items()}} for block in self.also]

    def skipped(self) -> list[tuple[str, str]]:
        """(format, recipe) pairs of the products that the recipe registry has no entry for (not run)."""
        from tinyexport.formats.recipes import RECIPES

        pairs = {(f, r) for a in self.axes() for f in a["formats"] for r in a["recipes"]}
        return sorted((f, r) for f, r in pairs if r in RECIPES and f not in RECIPES[r].formats)

    def cells(self) -> list[Cell]:
        settings = tuple(
            sorted(
                {
                    "text": self.text,
                    "max_tokens": self.max_tokens,
                    "window": self.window,
                    "prompt_len": self.prompt_len,
                    "new_tokens": self.new_tokens,
                    "repeats": self.repeats,
                    "verify": self.verify,
                }.items()
            )
        )
        skip = set(self.skipped())
        out: dict[str, Cell] = {}
        for a in self.axes():
            for c, f, r, n, t in itertools.product(
                a["checkpoints"], a["formats"], a["recipes"], a["cache_lengths"], a["transforms"]
            ):
                if (f, r) not in skip:
                    cell = Cell(c, self.random_weights, self.seed, f, r, n, settings, _transform_set(t))
                    out.setdefault(cell.key, cell)
        return list(out.values())

    def check(self) -> SweepMatrix:
        """Refuse unknown formats/recipes and windows that cannot fit a cell's cache, before any work."""
        from tinyexport.formats.recipes import RECIPES
        from tinyexport.formats.registry import FORMATS
        from tinyexport.models.transforms import check_carried, parse_transforms

        axes = self.axes()
        for key, known, what in (("formats", FORMATS, "format"), ("recipes", RECIPES, "recipe")):
            unknown = sorted({v for a in axes for v in a[key] if v not in known})
            if unknown:
                raise MatrixError(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
        if any(not a[k] for a in axes for k in AXES if k != "transforms"):
            raise MatrixError("the matrix is empty: give at least one checkpoint, format, recipe and cache length")
        for a in axes:
            for fmt, text in itertools.product(a["formats"], a["transforms"]):
                try:
                    check_carried(
                        parse_transforms([t for t in _transform_set(text).split("+") if t]),
                        fmt,
                        FORMATS[fmt].transforms,
                    )
                except UserError as err:
                    raise MatrixError(f"transform set {text!r}: {err}") from None
        if not self.cells():
            raise MatrixError("no format in the matrix supports its recipes; see `tinyexport convert --help`")
        lengths = {n for a in axes for n in a["cache_lengths"]}
        small = [n for n in sorted(lengths) if n < self.window or n < self.prompt_len + self.new_tokens]
        if small:
            raise MatrixError(
                f"cache length(s) {small} are smaller than the eval window ({self.window}) or the bench's "
                f"prompt + new tokens ({self.prompt_len + self.new_tokens}); lower window / prompt_len"
            )
        return self


_TOML_KEYS = {f.name for f in fields(SweepMatrix) if f.name not in ("extra", "max_kl", "max_dppl")}
_GATE_KEYS = {"max_kl", "max_dppl"}
_LISTS = set(AXES)


def _transform_set(text: str) -> str:
    """A transform set as written ("none" and "" mean none), normalised for keys and names."""
    text = str(text).strip()
    return "" if text.lower() in ("", "none") else "+".join(t.strip() for t in text.split("+") if t.strip())


def parse_percent(value: Any, what: str = "--max-dppl") -> float:
    """``2%``, ``"2"`` or ``2`` -> 2.0 (percent)."""
    text = str(value).strip().removesuffix("%")
    try:
        number = float(text)
    except ValueError:
        raise MatrixError(f"{what} {value!r} is not a percentage; pass e.g. 2%") from None
    if number < 0:
        raise MatrixError(f"{what} {value!r} must not be negative")
    return number


def load_matrix(path: Path) -> dict[str, Any]:
    """The TOML file's settings (top-level keys and a ``[gate]`` table); unknown keys are named."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise MatrixError("matrix files need Python 3.11+ (tomllib); pass the matrix as flags instead") from None
    path = Path(path)
    if not path.is_file():
        raise MatrixError(f"matrix file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MatrixError(f"matrix file {path} is not valid TOML ({err})") from None
    gate = data.pop("gate", {})
    if not isinstance(gate, dict):
        raise MatrixError(f"matrix file {path}: 'gate' must be a table ([gate] with max_kl, max_dppl)")
    unknown = sorted(set(data) - _TOML_KEYS) + [f"gate.{k}" for k in sorted(set(gate) - _GATE_KEYS)]
    if unknown:
        raise MatrixError(
            f"matrix file {path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(_TOML_KEYS))}, "
            f"gate.max_kl, gate.max_dppl"
        )
    also = data.pop("also", [])
    if not isinstance(also, list) or not all(isinstance(b, dict) for b in also):
        raise MatrixError(f"matrix file {path}: 'also' must be an array of tables ([[also]] with axis keys)")
    bad = sorted({f"also.{k}" for b in also for k in b if k not in AXES})
    if bad:
        raise MatrixError(f"matrix file {path}: unknown key(s) {', '.join(bad)}; [[also]] takes {', '.join(AXES)}")
    out: dict[str, Any] = {"also": tuple({k: _as_tuple(v) for k, v in b.items()} for b in also)} if also else {}
    for key, value in data.items():
        if key in _LISTS:
            value = _as_tuple(value)
        out[key] = value
    if "max_kl" in gate:
        out["max_kl"] = float(gate["max_kl"])
    if "max_dppl" in gate:
        out["max_dppl"] = parse_percent(gate["max_dppl"], "gate.max_dppl")
    return out


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, list) else (value,)


def build_matrix(file_values: dict[str, Any], flag_values: dict[str, Any]) -> SweepMatrix:
    """Defaults < matrix file < flags given on the command line."""
    merged = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    try:
        return replace(SweepMatrix(), **merged).check()
    except TypeError as err:
        raise MatrixError(str(err)) from None
