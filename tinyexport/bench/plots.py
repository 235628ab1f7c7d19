"""PNG plots for ``tinyexport report`` (matplotlib, Agg backend, imported only here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinyexport.atomic import atomic_file
from tinyexport.errors import UserError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UserError(
            "tinyexport report draws with matplotlib; install it (`pip install matplotlib`) "
            "or `pip install 'tinyexport[export]'`"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write the figure beside ``path`` and rename it into place (never a half-written PNG)."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def bar_chart(
    path: Path,
    title: str,
    ylabel: str,
    names: Sequence[str],
    values: Sequence[float],
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    bounds: Sequence[float] | None = None,
    bound_label: str = "roofline bound",
) -> Path:
    """One bar per candidate; optional p10–p90 whiskers and a marker per bar for an upper bound."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 4))
    xs = range(len(names))
    errors = None
    if low is not None and high is not None:
        errors = [[v - lo for v, lo in zip(values, low)], [hi - v for v, hi in zip(values, high)]]
    ax.bar(xs, values, yerr=errors, capsize=4, color="#4878a8", label="median (p10–p90)" if errors else None)
    if bounds is not None:
        ax.scatter(xs, bounds, marker="_", s=600, color="#c44e52", label=bound_label, zorder=3)
    for x, v in zip(xs, values):
        ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if errors or bounds is not None:
        ax.legend(fontsize=8)
    if bounds is not None:
        ax.set_yscale("log")
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def line_chart(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    series: dict[str, tuple[list[float], list[float]]],
    dashed: dict[str, tuple[list[float], list[float]]] | None = None,
) -> Path:
    """One line per candidate (``series``: name -> (xs, ys)); ``dashed``: bounds drawn in the same colour."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, (xs, ys) in series.items():
        (line,) = ax.plot(xs, ys, marker="o", label=name)
        if dashed and name in dashed:
            ax.plot(*dashed[name], linestyle="--", color=line.get_color(), alpha=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def scatter_chart(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    points: list[dict[str, Any]],
    log: bool = False,
    lines: dict[str, tuple[list[float], list[float]]] | None = None,
) -> Path:
    """Labelled points (``{"name", "x", "y"}``, optional ``"group"``: one colour and legend entry per
    group); ``log``: log-log axes; ``lines``: name -> (xs, ys) drawn dashed (fits, bounds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    groups = list(dict.fromkeys(p.get("group") for p in points))
    colours = {}
    for group in groups:
        mine = [p for p in points if p.get("group") == group]
        dots = ax.scatter(
            [p["x"] for p in mine], [p["y"] for p in mine], label=group, color=None if group else "#4878a8"
        )
        colours[group] = dots.get_facecolor()[0]
    for p in points:
        if p.get("name"):
            ax.annotate(p["name"], (p["x"], p["y"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    for name, (xs, ys) in (lines or {}).items():  # a line named after a group takes its colour
        colour = next((c for g, c in colours.items() if g and name.startswith(f"{g} ")), None)
        ax.plot(xs, ys, linestyle="--", linewidth=1, label=name, color=colour)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    if any(groups) or lines:
        ax.legend(fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path
