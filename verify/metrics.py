"""The one metrics module: log-softmax, KL, NLL and top-1 agreement, in float64, row-wise.

Every comparison of distributions in verify (parity), eval (perplexity, KL, choice scoring) and the
reference store uses these functions. Rows are positions, the last axis is the vocabulary.
"""

from __future__ import annotations

import numpy as np

ROW_CHUNK = 128  # rows per float64 log-softmax (bounds temporaries to ROW_CHUNK x vocab x 8 bytes)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    x = np.array(logits, dtype=np.float64)  # always a copy of our own: updated in place below
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return x


def kl_from_logprobs(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """KL(P ‖ Q) per row, in nats, from log-probabilities; clipped at 0 (float rounding)."""
    return np.maximum((np.exp(lp) * (lp - lq)).sum(axis=-1), 0.0)


def kl_divergence(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(P ‖ Q) per row, in nats, where P = softmax(p_logits) is the reference."""
    return kl_from_logprobs(log_softmax(p_logits), log_softmax(q_logits))


def nll_of(logprobs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log p(target_i) under row i of ``logprobs``."""
    return -logprobs[np.arange(logprobs.shape[0]), np.asarray(targets)]


def token_logprobs(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(target_i) under row i of ``logits``, float64, computed in row chunks."""
    out = np.empty(len(targets), dtype=np.float64)
    for start in range(0, len(targets), ROW_CHUNK):
        stop = start + ROW_CHUNK
        out[start:stop] = -nll_of(log_softmax(logits[start:stop]), targets[start:stop])
    return out


def top1_matches(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """Per row: do both put the same token first?"""
    return np.argmax(p_logits, axis=-1) == np.argmax(q_logits, axis=-1)
