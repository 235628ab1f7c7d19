"""Relative decode/prefill speed of transformed models, interleaved in one process.

The load changes from second to second on a shared machine, so each candidate's runs are interleaved
round by round (A B C D, A B C D, ...) and the table reports the median over rounds and each
candidate's speed relative to the baseline measured in the same rounds. Weight bytes are those the
model holds. The first variant is the baseline.

usage: python scripts/optimize_speed.py OUT.json [--checkpoint SPEC] [--random-weights] [--rounds N]
           [--threads N] "SLUG|[--transform T]... [--kv-cache int8]" ...
(the variants are `make optimize`'s method entries; default: SmolLM2, 5 rounds, 1 thread)
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import torch

from tinyexport.models.transforms import parse_transforms
from tinyexport.resolve import Candidate, open_checkpoint, transform

PROMPT, NEW = 64, 16


def parse_variant(entry: str) -> tuple[str, tuple[list[str], str | None]]:
    """``"slug|--transform a --transform b --kv-cache int8"`` -> (slug, (["a", "b"], "int8"))."""
    slug, _, args = entry.partition("|")
    words, texts, kv = args.split(), [], None
    for flag, value in zip(words[::2], words[1::2]):
        if flag == "--transform":
            texts.append(value)
        elif flag == "--kv-cache":
            kv = value
        else:
            raise SystemExit(f"variant {entry!r}: unknown option {flag}")
    return slug, (texts, kv)


def main(out: str, rounds: int, variants: dict, spec: str, random_weights: bool, threads: int) -> None:
    torch.set_num_threads(threads)
    base = open_checkpoint(spec, random_weights=random_weights)
    runners, weights = {}, {}
    for name, (texts, kv) in variants.items():
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
    baseline = next(iter(runners))
    for name in runners:
        ratio = [d / b for d, b in zip(decode[name], decode[baseline])]
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
    doc = {
        "checkpoint": spec,
        "random_weights": random_weights,
        "rounds": rounds,
        "prompt": PROMPT,
        "new_tokens": NEW,
        "threads": threads,
        "attention": "sdpa",
        "rows": rows,
    }
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
    for r in rows:
        print(
            f"{r['name']:18s} decode {r['decode_tok_s']:6.1f} tok/s ({r['decode_vs_baseline']:.2f}x) "
            f"prefill {r['prefill_tok_s']:6.0f} tok/s weights {r['weight_bytes'] / 1e6:.0f} MB"
        )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--checkpoint", default="smollm2-135m")
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    chosen = dict(parse_variant(v) for v in args.variants)
    main(args.out, args.rounds, chosen, args.checkpoint, args.random_weights, args.threads)
