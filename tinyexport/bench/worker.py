"""The per-candidate subprocess: ``python -m tinyexport.bench.worker JOB.json RESULT.json``.

A job is one candidate (open it, time it, report its peak RSS) or the machine probes. Running each
in a fresh process keeps peak RSS and allocator state from bleeding between candidates. The parent
sets the thread environment (OMP/MKL/OpenBLAS) before this process starts.
Exit 0 with a result, 2 with a one-line user error in the result, 1 on a crash (traceback on stderr).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tinyexport.atomic import write_json_atomic
from tinyexport.errors import UserError
from tinyexport.resources import peak_rss_mb

# Modules a checkpoint candidate's runner imports lazily; imported (and timed) before the model load.
BACKEND_MODULES = {
    "torch": ("tinyexport.runners.torch_runner",),
    "hf": ("tinyexport.runners.hf_runner", "transformers.models.llama.modeling_llama"),
}


def import_backend(modules: tuple[str, ...]) -> float:
    import importlib

    start = time.perf_counter()
    for module in modules:
        importlib.import_module(module)
    return time.perf_counter() - start


def run_candidate(job: dict[str, Any]) -> dict[str, Any]:
    from tinyexport.resolve import Candidate

    from .measure import BenchSettings, measure

    # An artefact is opened by path without hashing: the parent checked every file's sha256 already.
    candidate = Candidate.from_json(job["spec"])
    settings = BenchSettings.from_json(job["settings"])
    threads = job.get("threads")
    if candidate.artefact is not None:
        from tinyexport.formats.registry import FORMATS

        try:
            import_s = import_backend((FORMATS[candidate.format].runner.partition(":")[0],))
        except ImportError:
            import_s = 0.0  # opening the runner reports the missing runtime as a user error

        def open_runner():
            return candidate.open(**({"threads": threads} if threads else {}))
    else:
        import torch

        from tinyexport.models.checkpoint import resolve_checkpoint
        from tinyexport.paths import cache_dir

        if threads:
            torch.set_num_threads(threads)
        checkpoint = resolve_checkpoint(job["checkpoint_dir"], cache=cache_dir())
        import_s = import_backend(BACKEND_MODULES[candidate.kind])

        def open_runner():
            return candidate.open(checkpoint, max_len=job["max_len"])

    start = time.perf_counter()
    runner = open_runner()
    load_s = time.perf_counter() - start
    rss_after_load = peak_rss_mb(include_children=False)
    metrics = measure(runner, settings)
    return {
        "import_s": import_s,
        "load_s": load_s,
        "peak_rss_after_load_mb": rss_after_load,
        "peak_rss_mb": peak_rss_mb(include_children=False),
        "runner": {"name": runner.name, "max_len": int(runner.max_len), "logits_positions": runner.logits_positions},
        **metrics,
    }


def run_probe(job: dict[str, Any]) -> dict[str, Any]:
    from .probes import run_probes

    return run_probes(int(job["threads"]))


JOBS = {"candidate": run_candidate, "probe": run_probe}


def main(argv: list[str]) -> int:
    job_path, result_path = Path(argv[0]), Path(argv[1])
    job = json.loads(job_path.read_text())
    try:
        result, code = {"ok": True, **JOBS[job["kind"]](job)}, 0
    except UserError as err:
        result, code = {"ok": False, "error": str(err).splitlines()[0] if str(err) else type(err).__name__}, 2
    write_json_atomic(result_path, result)
    return code


if __name__ == "__main__":
    from tinyexport.console import quiet_third_party_logs

    quiet_third_party_logs()
    sys.exit(main(sys.argv[1:]))
