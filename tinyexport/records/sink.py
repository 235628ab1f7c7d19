"""What a command hands to the run recorder: its JSON result, the checkpoint and artefacts it used.

The ``tinyexport`` group puts one ``RunSink`` in click's context object for each invocation; commands
reach it through ``hand_result`` (a no-op outside the CLI, e.g. when library code is called directly).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunSink:
    """Filled by the running command, read once by the recorder when the command ends."""

    record: bool = True
    command: str | None = None
    result: Mapping[str, Any] | None = None
    checkpoint: Any = None  # a resolved tinyexport.models.checkpoint.Checkpoint
    artefacts: list[Path] = field(default_factory=list)
    context: Any = None  # tinyexport.records.capture.RunContext, started with a recorded command


def current_sink() -> RunSink | None:
    import click

    ctx = click.get_current_context(silent=True)
    return ctx.find_object(RunSink) if ctx is not None else None


def hand_result(
    result: Mapping[str, Any] | None = None, *, checkpoint: Any = None, artefacts: Iterable[Path] = ()
) -> None:
    """Give the recorder this command's JSON result and what it ran on (call it before raising a CheckError)."""
    sink = current_sink()
    if sink is None:
        return
    if result is not None:
        sink.result = result
    if checkpoint is not None:
        sink.checkpoint = checkpoint
    sink.artefacts.extend(Path(p) for p in artefacts if Path(p) not in sink.artefacts)
