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

ROW_CHUNK = 128  # rows per float64 log-softmax (bounds temporaries to ROW_CHUNK x vocab x 8 bytes)


def continuation_logits(runner: Runner, context: np.ndarray, continuation: np.ndarray) -> np.ndarray:
    """(len(continuation), V) float32 logits; row i predicts ``continuation[i]``. Resets the runner."""
    context = np.asarray(context, dtype=np.int64)
    continuation = np.asarray(continuation, dtype=np.int64)
    if context.size == 0 or continuation.size == 0:
        raise ValueError("scoring needs a non-empty context and continuation")
    runner.reset()
    if runner.logits_positions == "all":
        logits = runner.prefill(np.concatenate([context, continuation[:-1]]))
        return logits[context.size - 1 :]
    rows = [runner.prefill(context)[-1]]
    for token in continuation[:-1]:
        rows.append(runner.decode(int(token)))
    return np.stack(rows)


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def token_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(target_i) under row i of ``logits``, float64, computed in row chunks."""
    out = np.empty(len(targets), dtype=np.float64)
    for start in range(0, len(targets), ROW_CHUNK):
        stop = start + ROW_CHUNK
        lp = log_softmax64(logits[start:stop])
        out[start:stop] = lp[np.arange(lp.shape[0]), targets[start:stop]]
    return out
