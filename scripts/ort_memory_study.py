"""Peak RSS of an ONNX artefact under onnxruntime session options, one fresh process per option set.

    python scripts/ort_memory_study.py out/smollm2_onnx_int8 [--prompt 128 --steps 16]

Each option set opens the artefact with ``ORTRunner`` (io_binding, default threads), prefills a fixed
random prompt and decodes ``steps`` tokens in a child process, and reports the child's peak RSS after
loading and after decoding (``ru_maxrss``: robust to other processes' CPU load) and the largest logits
difference from the first option set (memory options must not change the numbers).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

OPTION_SETS = {
    "defaults": {},
    "no-prepack": {"session.disable_prepacking": "1"},
    "no-arena": {"@enable_cpu_mem_arena": False},
    "no-prepack+no-arena": {"session.disable_prepacking": "1", "@enable_cpu_mem_arena": False},
}

CHILD = r"""
import json, resource, sys
import numpy as np
import onnxruntime as ort
from tinyexport.artefact import load_artefact
from tinyexport.runners.ort_runner import ORTRunner, session_options
path, options, prompt, steps = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
art = load_artefact(path)
so = session_options(None)
for key, value in options.items():
    if key.startswith("@"):
        setattr(so, key[1:], value)
    else:
        so.add_session_config_entry(key, value)
session = ort.InferenceSession(str(art.model_path), so, providers=["CPUExecutionProvider"])
runner = ORTRunner(session, art.config, max_len=art.kv_cache_max_len, logits_positions="last")
after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
ids = np.random.default_rng(0).integers(0, art.config.vocab_size, prompt + steps)
rows = [runner.prefill(ids[:prompt])[-1]] + [runner.decode(int(t)) for t in ids[prompt:]]
np.save(sys.argv[5], np.stack(rows))
print(json.dumps({"after_load_mib": after_load, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    import tempfile

    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("artefact")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--steps", type=int, default=16)
    args = parser.parse_args()
    first = None
    print(f"{'options':<22}{'RSS after load MiB':>20}{'peak RSS MiB':>14}{'max |dlogits|':>15}")
    with tempfile.TemporaryDirectory() as scratch:
        for label, options in OPTION_SETS.items():
            out = f"{scratch}/{label}.npy"
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    args.artefact,
                    json.dumps(options),
                    str(args.prompt),
                    str(args.steps),
                    out,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            result = json.loads(done.stdout.strip().splitlines()[-1])
            logits = np.load(out)
            first = logits if first is None else first
            diff = float(np.abs(logits - first).max())
            print(f"{label:<22}{result['after_load_mib']:>20.0f}{result['peak_mib']:>14.0f}{diff:>15.2e}")


if __name__ == "__main__":
    main()
