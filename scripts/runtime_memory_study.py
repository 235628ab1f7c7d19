"""Where a runner's resident memory goes, per runtime option set, one fresh process each.

    python scripts/runtime_memory_study.py ART [ART...] [--prompt 128 --steps 16] [--sets a,b]

For each artefact (TFLite or ONNX) and each option set of its format (``TFLITE_SETS`` /
``ORT_SETS``), a child process imports the runtime, opens the artefact, prefills a fixed random prompt
and decodes ``steps`` tokens, and reports from ``/proc/self/status``: RSS after the imports, after
loading and after decoding, split into anonymous memory (heap copies) and file-backed pages (memory
maps of the model or of XNNPACK's weight cache), plus the peak (``VmHWM``, what ``bench`` reports as
peak RSS), the decode CPU ms/token (one thread, CPU time: robust to other processes' load), and the
largest logits difference from the artefact's first option set (memory options must not change the
numbers). Sets run interleaved over ``--rounds`` so CPU times share the machine's load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

TFLITE_SETS = {
    "defaults": {},
    "no-weight-cache": {"weight_cache": False},
}
ORT_SETS = {
    "defaults": {},
    "no-arena": {"@enable_cpu_mem_arena": False},
    "device-alloc-init": {"session.use_device_allocator_for_initializers": "1"},
    "no-prepack": {"session.disable_prepacking": "1"},
    "no-arena+device-alloc": {"@enable_cpu_mem_arena": False, "session.use_device_allocator_for_initializers": "1"},
}

CHILD = r"""
import json, sys, time
import numpy as np

def status():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0]) / 1024
    return fields

path, fmt, options, prompt, steps, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
from tinyexport.artefact import load_artefact
art = load_artefact(path)
if fmt == "tflite":
    from tinyexport.runners.tflite_runner import TFLiteRunner
    import ai_edge_litert.compiled_model  # noqa: F401  (import cost outside the load figure)
    report = {"imports": status()}
    runner = TFLiteRunner(art.model_path, art.config, kv_cache_max_len=art.kv_cache_max_len, threads=1, **options)
else:
    import onnxruntime as ort
    from tinyexport.runners.ort_runner import ORTRunner, session_options
    report = {"imports": status()}
    so = session_options(1)
    model_path = options.pop("model", str(art.model_path))  # another file of the same graph
    for key, value in options.items():
        if key.startswith("@"):
            setattr(so, key[1:], value)
        else:
            so.add_session_config_entry(key, value)
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    runner = ORTRunner(session, art.config, max_len=art.kv_cache_max_len, logits_positions="last")
report["loaded"] = status()
ids = np.random.default_rng(0).integers(0, art.config.vocab_size, prompt + steps)
rows = [runner.prefill(ids[:prompt])[-1]]
start = time.process_time()
rows += [runner.decode(int(t)) for t in ids[prompt:]]
report["decode_cpu_ms"] = (time.process_time() - start) / steps * 1e3
report["decoded"] = status()
np.save(out, np.stack(rows))
print(json.dumps(report))
"""


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("artefacts", nargs="+")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sets", default="", help="comma-separated option-set names (default: all)")
    parser.add_argument(
        "--extra-set",
        action="append",
        default=[],
        metavar="LABEL=JSON",
        help='another option set, e.g. ext=\'{"model": "/tmp/x/model.onnx"}\' (ONNX: "model" loads another file)',
    )
    args = parser.parse_args()
    wanted = {s for s in args.sets.split(",") if s}
    extra = {label: json.loads(text) for label, _, text in (e.partition("=") for e in args.extra_set)}

    from tinyexport.artefact import load_artefact

    jobs = []
    for path in args.artefacts:
        fmt = load_artefact(path).format
        sets = {**(TFLITE_SETS if fmt == "tflite" else ORT_SETS), **extra}
        wanted_here = wanted | set(extra) if wanted else set()
        jobs += [
            (path, fmt, label, options) for label, options in sets.items() if not wanted_here or label in wanted_here
        ]
    results: dict[tuple[str, str], list[dict]] = {}
    first: dict[str, np.ndarray] = {}
    diffs: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for path, fmt, label, options in jobs:
                out = f"{scratch}/out.npy"
                command = [sys.executable, "-c", CHILD, path, fmt, json.dumps(options)]
                done = subprocess.run(
                    [*command, str(args.prompt), str(args.steps), out], capture_output=True, text=True
                )
                if done.returncode != 0:
                    print(f"{path} {label}: failed\n{done.stderr[-1500:]}")
                    continue
                results.setdefault((path, label), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
                logits = np.load(out)
                first.setdefault(path, logits)
                diffs[(path, label)] = max(diffs.get((path, label), 0.0), float(np.abs(logits - first[path]).max()))
    print(
        f"{'artefact':<28}{'options':<24}{'imports':>8}{'load anon/file':>16}{'decoded anon/file':>19}"
        f"{'VmRSS':>7}{'peak':>7}{'CPU ms/tok':>11}{'max|dlogit|':>12}"
    )
    for (path, label), runs in results.items():
        last = runs[-1]
        load, dec = last["loaded"], last["decoded"]
        cpu = statistics.median(r["decode_cpu_ms"] for r in runs)
        name = path.rstrip("/").split("/")[-1][:27]
        print(
            f"{name:<28}{label:<24}{last['imports']['VmRSS']:>8.0f}"
            f"{load['RssAnon']:>8.0f}/{load['RssFile'] + load['RssShmem']:<7.0f}"
            f"{dec['RssAnon']:>10.0f}/{dec['RssFile'] + dec['RssShmem']:<8.0f}"
            f"{dec['VmRSS']:>7.0f}{dec['VmHWM']:>7.0f}{cpu:>11.2f}{diffs[(path, label)]:>12.2e}"
        )


if __name__ == "__main__":
    main()
