"""Console output: one rich Console per command, wide enough for tables when stdout is not a terminal,
and third-party log noise (torchao's optional CUDA kernels, torch pytree notices) turned down."""

from __future__ import annotations

import logging
import sys

from rich.console import Console

_NOISY_LOGGERS = (
    "torchao",
    "torch.utils._pytree",
    "transformers.tokenization_utils_base",
    "transformers.models.llama.tokenization_llama_fast",
    "absl",
)


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else 160)


def quiet_third_party_logs() -> None:
    """Only errors from libraries whose warnings say nothing actionable about tinyexport's work."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
