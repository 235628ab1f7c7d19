"""A long command's stages as they happen, with elapsed time: on a terminal a live spinner line for the
current stage (each finished stage stays as a line with its duration); otherwise one plain line per
stage as it starts, ``[  12.3 s] lowering ...``, so logs and pipes show where the time goes."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class StageReporter:
    """``with StageReporter(console) as stages: stages.stage("loading weights"); ...``"""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live = console.is_terminal
        self._progress = (
            Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            if self._live
            else None
        )
        self._start = time.perf_counter()
        self._current: tuple[str, float, TaskID | None] | None = None

    def __enter__(self) -> StageReporter:
        self._start = time.perf_counter()
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish(failed=exc[0] is not None)
        if self._progress is not None:
            self._progress.stop()

    def stage(self, name: str) -> None:
        """The previous stage is done; ``name`` starts now."""
        self._finish()
        now = time.perf_counter()
        task = None
        if self._progress is not None:
            task = self._progress.add_task(name, total=None)
        else:
            self._console.print(f"[{now - self._start:7.1f} s] {name}", highlight=False, markup=False)
        self._current = (name, now, task)

    def _finish(self, failed: bool = False) -> None:
        if self._current is None:
            return
        name, began, task = self._current
        self._current = None
        if self._progress is not None and task is not None:
            self._progress.remove_task(task)
            mark = "failed:" if failed else "done:"
            self._progress.console.print(
                f"  {mark} {name} ({time.perf_counter() - began:.1f} s)", highlight=False, markup=False
            )
