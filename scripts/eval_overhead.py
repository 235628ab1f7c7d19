"""CPU time per token of the reference store's bookkeeping (no model), before vs after, interleaved.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/eval_overhead.py [--rounds 20]

For 128-row chunks of SmolLM2-sized logits (vocab 49,152), alternately runs the writer's per-chunk
work as it was (float64 log-softmax, fixed16 encode, decode with a second log-softmax, KL with a
third exp pass) and as ``ReferenceWriter.write`` does it now (in-place log-softmax and encode,
decode and KL sharing one exp pass), A, B, A, B..., so contention from other processes hits both
alike. Prints the median CPU ms per token of each and checks they store the same bytes, the same
NLL and the same resolution (to 1e-9 relative).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tinyexport.verify.metrics import nll_of
from tinyexport.verify.reference_store import FIXED16_MAX, FIXED16_STEP, PRECISIONS


def _old_log_softmax(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def old_chunk(x: np.ndarray, t: np.ndarray):
    exact = _old_log_softmax(x)
    stored = np.minimum(np.rint(-exact / FIXED16_STEP), FIXED16_MAX).astype(np.uint16)
    approx = _old_log_softmax(-stored.astype(np.float64) * FIXED16_STEP)
    resolution = np.maximum((np.exp(approx) * (approx - exact)).sum(axis=-1), 0.0)
    return stored, nll_of(exact, t), resolution


def new_chunk(x: np.ndarray, t: np.ndarray):
    from tinyexport.verify.metrics import log_softmax

    precision = PRECISIONS["fixed16"]
    exact = log_softmax(x)
    stored = precision.encode(exact)
    approx, probs = precision.decode_with_probs(stored)
    approx -= exact
    resolution = np.maximum(np.einsum("ij,ij->i", probs, approx), 0.0)
    return stored, nll_of(exact, t), resolution


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows, vocab = 128, 49152
    x = (rng.standard_normal((rows, vocab)) * 3).astype(np.float32)
    t = rng.integers(0, vocab, rows)
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for label, fn in (("before", old_chunk), ("after", new_chunk)):
            start = time.process_time()
            out = fn(x, t)
            times[label].append((time.process_time() - start) / rows * 1e3)
            if label == "before":
                ref = out
        assert np.array_equal(out[0], ref[0]) and np.array_equal(out[1], ref[1])
        assert np.allclose(out[2], ref[2], rtol=1e-9, atol=1e-15)
    for label, values in times.items():
        median = statistics.median(values)
        print(f"{label:<7} {median:6.3f} ms/token (median of {args.rounds}), {median * 20.48:5.1f} s per 20,480 tokens")


if __name__ == "__main__":
    main()
