"""Relative decode/prefill speed of transformed SmolLM2 models, interleaved in one process.

On a machine shared with other jobs the load changes from second to second, so each candidate's runs
are interleaved round by round (A B C D, A B C D, ...) and the table reports the median over rounds and
each candidate's speed relative to the baseline measured in the same rounds. One torch thread (spinning
thread pools degrade badly on an oversubscribed CPU). Weight bytes are those the model holds.

usage: python scripts/optimize_speed.py OUT.json [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import torch

from tinyexport.models.transforms import parse_transforms
from tinyexport.resolve import Candidate, open_checkpoint, transform

VARIANTS = {
    "baseline": ([], None),
    "prune-heads-0.25": (["prune-heads=0.25:o_proj"], None),
    "prune-heads-0.5": (["prune-heads=0.5:o_proj"], None),
    "kv-int8": ([], "int8"),
    "bf16": (["mixed-precision=bf16"], None),
}
PROMPT, NEW = 64, 16


def main(out: str, rounds: int) -> None:
    torch.set_num_threads(1)
    base = open_checkpoint("smollm2-135m")
    runners, weights = {}, {}
    for name, (texts, kv) in VARIANTS.items():
        planned = transform(base, parse_transforms(texts, kv)).transforms
        runner = Candidate("torch", "sdpa", transforms=planned).open(base, max_len=PROMPT + NEW)
        runners[name] = runner
        weights[name] = sum(p.numel() * p.element_size() for p in runner.model.parameters())
    ids = np.random.default_rng(0).integers(0, base.config.vocab_size, PROMPT)
    decode = {n: [] for n in runners}
    prefill = {n: [] for n in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            runner.reset()
            start = time.perf_counter()
            logits = runner.prefill(ids)[-1]
            prefill[name].append(PROMPT / (time.perf_counter() - start))
            start = time.perf_counter()
            for _ in range(NEW):
                logits = runner.decode(int(np.argmax(logits)))
            decode[name].append(NEW / (time.perf_counter() - start))
    rows = []
    for name in runners:
        ratio = [d / b for d, b in zip(decode[name], decode["baseline"])]
        rows.append(
            {
                "name": name,
                "label": runners[name].name,
                "decode_tok_s": statistics.median(decode[name]),
                "prefill_tok_s": statistics.median(prefill[name]),
                "decode_vs_baseline": statistics.median(ratio),
                "weight_bytes": weights[name],
            }
        )
    doc = {"rounds": rounds, "prompt": PROMPT, "new_tokens": NEW, "threads": 1, "attention": "sdpa", "rows": rows}
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
    for r in rows:
        print(
            f"{r['name']:18s} decode {r['decode_tok_s']:6.1f} tok/s ({r['decode_vs_baseline']:.2f}x) "
            f"prefill {r['prefill_tok_s']:6.0f} tok/s weights {r['weight_bytes'] / 1e6:.0f} MB"
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
