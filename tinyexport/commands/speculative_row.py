"""``tinyexport bench ARTEFACT --draft DRAFT [-k N]``: the speculative-decoding row's prompt and table.

The first ARTEFACT is the target; ``speculative.check_artefact_pair`` checks the pair before any work and
``speculative.speed_row`` measures it (target alone and speculative timed interleaved, so both see the
same load). This module only prints the row. No torch import.
"""

from __future__ import annotations

from typing import Any

SPEC_PROMPT = "Write a short story about a robot who learns to paint."


def print_row(console: Any, row: dict[str, Any]) -> None:
    from rich.table import Table

    same = {True: "identical", False: "DIFFERENT", None: "sampled"}[row["identical"]]
    stop = (
        f" (a round stops below p={row['min_draft_prob']:g}: {row['drafted_per_round']:.2f} drafted)"
        if row.get("min_draft_prob")
        else ""
    )
    table = Table(
        title=f"speculative decoding: target {row['target']}, draft {row['draft']}, k={row['k']}{stop}, "
        f"{row['new_tokens']} new tokens, {row['repeats']} interleaved repeats (medians), "
        f"load average {row['load_average'][0]:.1f}-{row['load_average'][1]:.1f}"
    )
    columns = {
        "acceptance": f"{row['acceptance_rate']:.1%}",
        "tokens / target call": f"{row['tokens_per_target_call']:.2f}",
        "target alone ms/token": f"{row['target_decode_ms']:.2f}",
        "speculative ms/token": f"{row['speculative_decode_ms']:.2f}",
        "draft ms/call": f"{row['draft_ms']:.2f}",
        "verify ms/call": f"{row['verify_ms']:.2f}",
        "target tok/s": f"{row['target_tok_s']:.1f}",
        "speculative tok/s": f"{row['speculative_tok_s']:.1f}",
        "speedup": f"{row['speedup']:.2f}x",
        "cost model": f"{row['predicted_decode_speedup']:.2f}x",
        "output": same,
    }
    for name in columns:
        table.add_column(name, justify="right")
    table.add_row(*columns.values())
    console.print(table)
