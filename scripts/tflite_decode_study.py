"""Decode ms/token of TFLite artefacts at given cache fills, variants interleaved in ONE run.

    python scripts/tflite_decode_study.py --fills 100,900 --steps 16 --rounds 5 \\
        span=out/smol_spans copy=out/smol_spans:copy

Each ``label=artefact[:flag,...]`` opens a ``TFLiteRunner`` (``copy``: separate input/output cache
buffers, the layout before in-place updates; ``nospans``: only the whole-cache signatures). Per round and fill, every variant in turn is reset,
prefilled with the same ``fill`` random tokens and timed over ``steps`` greedy-free decode steps
(fixed token ids); by default the clock is the process's CPU time with one LiteRT thread, which
other processes' load barely moves (wall time on a shared machine does), and CPU contention from other processes hits every variant alike; the report is
the median over rounds, plus the logits' max difference from the first variant (same file =>
the in-place/copy and span/no-span paths must agree).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--fills", default="100,900")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: this process's CPU time (with --threads 1, robust to other processes' load); wall",
    )
    args = parser.parse_args()

    from tinyexport.artefact import load_artefact
    from tinyexport.runners.tflite_runner import TFLiteRunner

    runners = {}
    for spec in args.variants:
        label, _, rest = spec.partition("=")
        path, _, flag_text = rest.partition(":")
        flags = set(flag_text.split(",")) - {""}
        art = load_artefact(path)
        runners[label] = TFLiteRunner(
            art.model_path,
            art.config,
            kv_cache_max_len=art.kv_cache_max_len,
            threads=args.threads,
            name=label,
            inplace_cache="copy" not in flags,
            use_spans="nospans" not in flags,
        )
    fills = [int(f) for f in args.fills.split(",")]
    rng = np.random.default_rng(0)
    vocab = next(iter(runners.values())).config.vocab_size
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times: dict[tuple[str, int], list[float]] = {}
    diffs: dict[tuple[str, int], float] = {}
    for _ in range(args.rounds):
        for fill in fills:
            prompt = rng.integers(0, vocab, fill)
            steps = rng.integers(0, vocab, args.steps)
            first = None
            for label, runner in runners.items():
                runner.reset()
                runner.prefill(prompt)
                t0 = clock()
                logits = [runner.decode(int(tok)) for tok in steps]
                times.setdefault((label, fill), []).append((clock() - t0) / args.steps * 1e3)
                logits = np.stack(logits)
                if first is None:
                    first = logits
                diffs[(label, fill)] = max(diffs.get((label, fill), 0.0), float(np.abs(logits - first).max()))
    print(f"{args.clock} ms/token, {args.threads} thread(s), {args.steps} steps x {args.rounds} rounds")
    print(f"{'variant':<14}{'fill':>6}{'ms/token (median)':>20}{'min':>8}{'max |dlogits|':>16}")
    for (label, fill), values in sorted(times.items(), key=lambda kv: (kv[0][1], list(runners).index(kv[0][0]))):
        print(f"{label:<14}{fill:>6}{statistics.median(values):>20.2f}{min(values):>8.2f}{diffs[(label, fill)]:>16.2e}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (all variants together): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
