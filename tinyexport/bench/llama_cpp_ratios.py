"""Every bench candidate as a ratio to llama.cpp's own conversion of the same weights, measured in the same run.

The reference rows are the candidates whose manifest names llama.cpp as their producer
(``scripts/lcpp_reference.py``: ``convert_hf_to_gguf.py`` + ``llama_model_quantize``), recipe ``q8_0`` and
``q4_0``. Ratios: decode ms/token and peak RSS (below 1 = we use less), prefill tok/s (above 1 = we are faster).
"""

from __future__ import annotations

from typing import Any

LLAMA_CPP_PRODUCER = "llama.cpp"
REFERENCE_RECIPES = ("q8_0", "q4_0")


def is_llama_cpp(row: dict[str, Any]) -> bool:
    return str(row.get("producer") or "").startswith(LLAMA_CPP_PRODUCER)


def references(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """recipe -> the llama.cpp row of that recipe (the first, if several), successful rows only."""
    refs: dict[str, dict[str, Any]] = {}
    for c in doc["candidates"]:
        if not c.get("error") and is_llama_cpp(c) and c["recipe"] in REFERENCE_RECIPES:
            refs.setdefault(c["recipe"], c)
    return refs


def ratios(row: dict[str, Any], ref: dict[str, Any]) -> dict[str, float]:
    return {
        "decode": row["decode_ms_per_token"]["median"] / ref["decode_ms_per_token"]["median"],
        "prefill": row["prefill_tok_s"]["median"] / ref["prefill_tok_s"]["median"],
        "peak_rss": row["peak_rss_mb"] / ref["peak_rss_mb"],
        "size": row["size_bytes"] / ref["size_bytes"],
    }


def llama_cpp_markdown(doc: dict[str, Any]) -> list[str]:
    """The "vs llama.cpp" table of one bench document (nothing when it has no llama.cpp row)."""
    refs = references(doc)
    if not refs:
        return []
    order = [r for r in REFERENCE_RECIPES if r in refs]
    head = " | ".join(
        f"decode × {r.upper()} | prefill × {r.upper()} | peak RSS × {r.upper()} | size × {r.upper()}" for r in order
    )
    lines = [
        "### vs llama.cpp (same run)",
        "",
        "Each candidate against llama.cpp's own conversion of the same weights ("
        + ", ".join(f"`{refs[r]['name']}`" for r in order)
        + "): decode ms/token, peak RSS and size below 1 = ours smaller/faster; prefill tok/s above 1 = ours faster.",
        "",
        f"| candidate | decode ms/token | {head} |",
        "|---|---:|" + "---:|" * (4 * len(order)),
    ]
    for c in doc["candidates"]:
        if c.get("error"):
            continue
        cells = []
        for r in order:
            q = ratios(c, refs[r])
            cells += [f"{q['decode']:.2f}×", f"{q['prefill']:.2f}×", f"{q['peak_rss']:.2f}×", f"{q['size']:.2f}×"]
        lines.append(f"| {c['name']} | {c['decode_ms_per_token']['median']:.2f} | " + " | ".join(cells) + " |")
    return lines + [""]


__all__ = ["is_llama_cpp", "llama_cpp_markdown", "ratios", "references"]
