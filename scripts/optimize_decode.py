"""Decode ms/token of exported artefacts (any format), interleaved in ONE process, on the CPU clock.

    python scripts/optimize_decode.py OUT.json [--rounds 5] [--steps 16] [--prompt 64] \\
        baseline=out/optimize/a int8=out/optimize/b ...

Every ``label=artefact`` opens through ``open_artefact_runner`` with one runtime thread. In each round
every variant in turn is reset, prefilled with the same random prompt and timed over ``steps`` decode
steps on fixed token ids. The clock is this process's CPU time: with one thread, other processes' load
barely moves it (wall time on a shared machine does). Reported per variant: the median ms/token over
rounds, and the median over rounds of its ratio to the FIRST variant's time in the same round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("variants", nargs="+", help="label=artefact_dir; the first is the reference")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--prompt", type=int, default=64)
    args = parser.parse_args()

    from tinyexport.artefact import load_artefact
    from tinyexport.runners import open_artefact_runner

    runners, paths = {}, {}
    for spec in args.variants:
        label, _, path = spec.partition("=")
        runners[label] = open_artefact_runner(load_artefact(path), threads=1)
        paths[label] = path
    vocab = next(iter(runners.values())).config.vocab_size
    rng = np.random.default_rng(0)
    prompt, steps = rng.integers(0, vocab, args.prompt), rng.integers(0, vocab, args.steps)
    times: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(args.rounds):
        for label, runner in runners.items():
            runner.reset()
            runner.prefill(prompt)
            t0 = time.process_time()
            for token in steps:
                runner.decode(int(token))
            times[label].append((time.process_time() - t0) / args.steps * 1e3)
    first = next(iter(runners))
    rows = []
    for label, values in times.items():
        ratio = statistics.median(v / b for v, b in zip(values, times[first]))
        rows.append(
            {"label": label, "path": paths[label], "cpu_ms_per_token": statistics.median(values), "vs_first": ratio}
        )
        print(f"{label:<28}{statistics.median(values):8.2f} CPU ms/token  {ratio:5.2f}x {first}")
    doc = {"clock": "process cpu", "threads": 1, "rounds": args.rounds, "steps": args.steps, "prompt": args.prompt}
    with open(args.out, "w") as f:
        json.dump({**doc, "reference": first, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
