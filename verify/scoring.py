"""Log-likelihood of a continuation under any Runner: the one primitive perplexity and
multiple-choice scoring share.

A runner whose prefill returns every position's logits (``logits_positions == "all"``) scores a
continuation with one prefill of ``context + continuation[:-1]``. A runner that returns only the
last position (artefacts exported with ``--prefill-logits last``) prefills the context and then
decodes the continuation token by token: the same numbers, at the cost of one decode step per
scored token instead of one prefill row.
"""

from __future__ import annotations

import numpy as np

from tinyexport.runners.base import Runner
from tinyexport.runners.decoding import teacher_forced


def continuation_logits(runner: Runner, context: np.ndarray, continuation: np.ndarray) -> np.ndarray:
    """(len(continuation), V) float32 logits; row i predicts ``continuation[i]``. Resets the runner."""
    context = np.asarray(context, dtype=np.int64)
    continuation = np.asarray(continuation, dtype=np.int64)
    if context.size == 0 or continuation.size == 0:
        raise ValueError("scoring needs a non-empty context and continuation")
    if runner.logits_positions == "all":
        runner.reset()
        logits = runner.prefill(np.concatenate([context, continuation[:-1]]))
        return logits[context.size - 1 :]
    return teacher_forced(runner, context, continuation.tolist()).step_logits
