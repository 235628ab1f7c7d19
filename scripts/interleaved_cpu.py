#!/usr/bin/env python
"""Interleaved CPU-time comparison of artefacts in ONE process (A, B, C, A, B, C, ...), 1 thread each.

On a shared, overloaded machine wall-clock ratios between sequential bench candidates move by 20%+;
the CPU time a single-threaded runner spends per decode step does not depend on how long it waited for a
core, so this gives ratios that survive the load. usage:

    scripts/interleaved_cpu.py ART... [--rounds 3] [--steps 32] [--prompt-len 128] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artefacts", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from tinyexport.resolve import load_artefacts
    from tinyexport.runners import open_artefact_runner

    arts = load_artefacts(args.artefacts)
    runners = {a.name: open_artefact_runner(a, threads=1) for a in arts}
    vocab = arts[0].config.vocab_size
    ids = np.random.default_rng(0).integers(0, vocab, args.prompt_len)
    cpu = {n: {"prefill": [], "decode": [], "decode_wall": []} for n in runners}
    for _ in range(args.rounds):
        for name, runner in runners.items():
            runner.reset()
            c = time.process_time()
            tok = int(runner.prefill(ids)[-1].argmax())
            cpu[name]["prefill"].append(time.process_time() - c)
            for _ in range(args.steps):
                c, w = time.process_time(), time.perf_counter()
                tok = int(runner.decode(tok).argmax())
                cpu[name]["decode"].append(time.process_time() - c)
                cpu[name]["decode_wall"].append(time.perf_counter() - w)
    rows = {
        n: {k: 1e3 * statistics.median(v) for k, v in d.items()} | {"format": a.format, "recipe": a.recipe}
        for (n, d), a in zip(cpu.items(), arts)
    }
    for name, r in rows.items():
        print(
            f"{name:32s} prefill CPU {r['prefill']:8.1f} ms   decode CPU {r['decode']:7.2f} ms/token   "
            f"(wall {r['decode_wall']:7.2f})"
        )
    if args.json:
        doc = {
            "rounds": args.rounds,
            "steps": args.steps,
            "prompt_len": args.prompt_len,
            "load": Path("/proc/loadavg").read_text().split()[:3],
            "rows": rows,
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
