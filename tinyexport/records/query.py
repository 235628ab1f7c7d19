"""Reading records back: one-line summaries, flattened metrics, side-by-side comparison with deltas,
and the generic CSV/JSON export rows. Pure functions over ``RunRow``s."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .store import RunRow

# Record fields shown in a comparison before the result's own metrics.
IDENTITY = ("command", "model", "exit_status", "seconds", "git", "host", "tinyexport")
EXPORT_COLUMNS: tuple[str, ...] = (
    "id",
    "command",
    "model",
    "started",
    "ended",
    "seconds",
    "exit_status",
    "git_commit",
    "git_dirty",
    "host",
    "cpu_model",
    "cores",
    "ram_gb",
    "os",
    "tinyexport_version",
    "checkpoint_fingerprint",
    "artefacts",
    "argv",
)


def seconds(row: RunRow) -> float | None:
    try:
        return (dt.datetime.fromisoformat(row.ended) - dt.datetime.fromisoformat(row.started)).total_seconds()
    except (TypeError, ValueError):
        return None


def since_to_iso(text: str) -> str:
    """``--since``: an ISO date/time (UTC when no zone) or a span back from now: 30m, 12h, 7d."""
    text = text.strip()
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].isdigit():
        moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(**{units[text[-1]]: int(text[:-1])})
    else:
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"--since {text!r} is neither an ISO date/time nor a span like 30m, 12h, 7d") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds")


def headline(row: RunRow) -> str:
    """What the run produced, in a few words."""
    result = row.record.get("result") or {}
    arts = row.record.get("artefacts") or []
    if row.command == "convert" and arts:
        a = arts[0]
        return f"{a.get('name')} {a.get('format')}/{a.get('recipe')} {a.get('size_bytes', 0) / 1e6:.1f} MB"
    cands = result.get("candidates") if isinstance(result, Mapping) else None
    if not isinstance(cands, list):
        return ""
    parts = []
    for c in cands[:4]:
        if not isinstance(c, Mapping):
            continue
        for key, fmt in (
            ("decode_tok_s", "{:.1f} tok/s"),
            ("perplexity", "ppl {:.3f}"),
            ("accuracy", "acc {:.3f}"),
            ("kl_mean", "KL {:.2g}"),
        ):
            value = c.get(key)
            if isinstance(value, Mapping):
                value = value.get("median")
            if isinstance(value, (int, float)):
                parts.append(f"{c.get('name')}: " + fmt.format(value))
                break
    return "; ".join(parts) + (" …" if len(cands) > 4 else "")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Scalars of a JSON value under dotted keys; lists of objects with a ``name`` are keyed by it."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        named = all(isinstance(v, Mapping) and "name" in v for v in value) and value
        for i, v in enumerate(value):
            if named:
                out.update(flatten({k: x for k, x in v.items() if k != "name"}, f"{prefix}[{v['name']}]"))
            else:
                out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out


def identity(row: RunRow) -> dict[str, Any]:
    rec = row.record
    git = rec.get("git") or {}
    return {
        "command": row.command,
        "model": row.model,
        "exit_status": row.exit_status,
        "seconds": seconds(row),
        "git": (git.get("commit", "")[:12] + ("-dirty" if git.get("dirty") else "")) if git else None,
        "host": (rec.get("machine") or {}).get("host"),
        "tinyexport": (rec.get("versions") or {}).get("tinyexport"),
    }


@dataclass(frozen=True)
class Comparison:
    ids: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]  # (key, one cell per run)


def compare(runs: list[RunRow], *, all_keys: bool = False) -> Comparison:
    """Side by side: identity fields, then every result metric (only those that differ unless
    ``all_keys``); numeric cells after the first carry their delta to the first run."""
    flats = [
        {**identity(r), **{f"result.{k}": v for k, v in flatten(r.record.get("result") or {}).items()}} for r in runs
    ]
    keys = list(IDENTITY) + sorted({k for f in flats for k in f if k not in IDENTITY})
    rows = []
    for key in keys:
        values = [f.get(key) for f in flats]
        if not all_keys and key not in IDENTITY and len({repr(v) for v in values}) == 1:
            continue
        rows.append((key, tuple(_cell(v, values[0], i) for i, v in enumerate(values))))
    return Comparison(tuple(r.id for r in runs), tuple(rows))


def _cell(value: Any, base: Any, index: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    text = f"{value:.6g}"
    if index == 0 or isinstance(base, bool) or not isinstance(base, (int, float)) or value == base:
        return text
    delta = value - base
    rel = f", {100 * delta / base:+.1f}%" if base else ""
    return f"{text} ({delta:+.4g}{rel})"


def export_row(row: RunRow) -> dict[str, Any]:
    """One generic CSV row per run (the full record is in the JSON export)."""
    rec = row.record
    git, mach = rec.get("git") or {}, rec.get("machine") or {}
    return {
        "id": row.id,
        "command": row.command,
        "model": row.model or "",
        "started": row.started,
        "ended": row.ended,
        "seconds": f"{seconds(row):.3f}" if seconds(row) is not None else "",
        "exit_status": "" if row.exit_status is None else row.exit_status,
        "git_commit": git.get("commit", ""),
        "git_dirty": "" if not git else int(bool(git.get("dirty"))),
        "host": mach.get("host", ""),
        "cpu_model": mach.get("cpu_model", ""),
        "cores": mach.get("cores", ""),
        "ram_gb": mach.get("ram_gb", ""),
        "os": mach.get("os", ""),
        "tinyexport_version": (rec.get("versions") or {}).get("tinyexport", ""),
        "checkpoint_fingerprint": (rec.get("checkpoint") or {}).get("fingerprint") or "",
        "artefacts": ";".join(a.get("name", "") for a in rec.get("artefacts") or []),
        "argv": " ".join(rec.get("argv") or []),
    }


def export_rows(rows: Iterable[RunRow]) -> list[dict[str, Any]]:
    return [export_row(r) for r in rows]
