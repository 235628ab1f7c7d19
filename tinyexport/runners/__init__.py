"""Runners: one protocol (prefill / decode / reset) over every backend.

``TorchRunner`` and ``HFRunner`` need torch; artefact runners need only their runtime. Nothing heavy is
imported here: ``open_artefact_runner`` imports the runner its manifest names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tinyexport.artefact import Artefact, load_artefact
from tinyexport.errors import UserError
from tinyexport.formats.registry import FORMATS, load_object

from .base import CacheOverflowError, Runner
from .decoding import Generation, Step, decode_steps, greedy_generate, teacher_forced

__all__ = [
    "CacheOverflowError",
    "Generation",
    "Runner",
    "Step",
    "decode_steps",
    "greedy_generate",
    "open_artefact_runner",
    "teacher_forced",
]


class RuntimeMissingError(UserError, ImportError):
    """The runtime an artefact needs is not installed."""


def open_artefact_runner(
    artefact: Artefact | Path | str, *, all_logits: bool = False, shared_cpu: bool = False, **options: Any
) -> Runner:
    """The Runner for an artefact directory (hashes checked), picked by its manifest's format.

    ``all_logits``: where the format picks prefill logits at run time, return every position's.
    ``shared_cpu``: another runner in this process alternates with this one on the same cores
    (speculative decoding): the format's ``shared_cpu_options`` apply."""
    art = artefact if isinstance(artefact, Artefact) else load_artefact(artefact)
    fmt = FORMATS.get(art.format)
    if fmt is None:
        raise ValueError(f"{art.path}: unknown format {art.format!r} in manifest (known: {', '.join(FORMATS)})")
    try:
        runner_cls = load_object(fmt.runner)
    except ImportError as err:
        raise RuntimeMissingError(
            f"{art.path} needs {fmt.runtime_package} ({err.name or err}); "
            f"install it with `pip install 'tinyexport[runtime]'`"
        ) from None
    if all_logits and fmt.runtime_logits:
        options.setdefault("logits", "all")
    if shared_cpu:
        options = {**dict(fmt.shared_cpu_options), **options}
    return runner_cls.from_artefact(art, **options)
