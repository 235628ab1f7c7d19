"""Run every candidate in its own subprocess (``worker``), one after another, and assemble the results
with the roofline bounds. The parent never loads a model: it only plans, spawns and reads JSON back.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyexport.errors import ChildKilledError, OperationError, UserError
from tinyexport.models.config import ModelConfig
from tinyexport.resolve import Candidate

from .measure import CONTEXT_STEPS, BenchSettings
from .roofline import CACHE_KINDS, MemoryModel, decode_bound, prefill_bound

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
RESULT_SCHEMA = 1


class WorkerFailed(RuntimeError):
    """A worker subprocess crashed (not bad input): the message carries its last stderr line."""


class WorkerKilled(WorkerFailed, ChildKilledError):
    """A worker subprocess was killed by a signal (SIGKILL: usually the kernel's OOM killer)."""


def killed_message(what: str, returncode: int) -> str:
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    hint = (
        "the kernel's OOM killer does this when memory runs out (see `dmesg`): free memory or bench fewer "
        "or smaller candidates, then re-run"
        if -returncode == signal.SIGKILL
        else "re-run"
    )
    return f"the {what} was killed by {name}; {hint}"


@dataclass(frozen=True)
class BenchCandidate:
    """What the parent knows about a candidate before running it."""

    spec: Candidate
    name: str
    format: str
    recipe: str
    size_bytes: int  # model files on disk
    capacity: int  # KV-cache slots
    config: ModelConfig
    weight_bytes: int  # bytes of stored weights (a converter may report them; else the file size)
    spans: tuple[int, ...] = ()  # TFLite attention spans below the capacity (manifest tflite.attention_spans)

    @property
    def cache_kind(self) -> str:
        return CACHE_KINDS[self.format]

    def contexts(self, settings: BenchSettings) -> tuple[int, ...]:
        """The --context fills this candidate's cache can hold (the others are reported as skipped)."""
        return tuple(c for c in settings.contexts if c <= self.capacity)


def worker_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env.update({name: str(threads) for name in THREAD_ENV})
    return env


def run_job(job: dict[str, Any], threads: int | None) -> dict[str, Any]:
    """Run one worker job in a fresh interpreter; a user error there becomes a ``UserError`` here."""
    with tempfile.TemporaryDirectory(prefix="tinyexport-bench-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job))
        proc = subprocess.run(
            [sys.executable, "-m", "tinyexport.bench.worker", str(job_path), str(result_path)],
            env=worker_env(threads),
            capture_output=True,
            text=True,
        )
        result = json.loads(result_path.read_text()) if result_path.is_file() else None
    if result is not None and not result.get("ok", False):
        raise UserError(result.get("error", "bench worker rejected its input"))
    if proc.returncode < 0:
        raise WorkerKilled(killed_message(f"bench worker ({job.get('kind')})", proc.returncode))
    if proc.returncode != 0 or result is None:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        raise WorkerFailed(lines[-1] if lines else f"bench worker exited with code {proc.returncode}")
    result.pop("ok", None)
    return result


def run_candidate(
    candidate: BenchCandidate, settings: BenchSettings, threads: int | None, checkpoint_dir: str | None
) -> dict[str, Any]:
    settings = dataclasses.replace(settings, contexts=candidate.contexts(settings))
    job = {
        "kind": "candidate",
        "spec": candidate.spec.to_json(),
        "settings": settings.to_json(),
        "threads": threads,
        "max_len": candidate.capacity,
        "checkpoint_dir": checkpoint_dir,
    }
    return run_job(job, threads)


def run_probes_subprocess(threads: int) -> dict[str, Any]:
    """The machine probes in a worker; a crash there stops the bench with one line (no candidate ran yet)."""
    try:
        return run_job({"kind": "probe", "threads": threads}, threads)
    except WorkerKilled:
        raise
    except WorkerFailed as err:
        raise OperationError(f"the bench worker measuring this machine failed: {err}") from None


def roofline(
    candidate: BenchCandidate, measured: dict[str, Any], settings: BenchSettings, probes: dict[str, Any]
) -> dict[str, Any]:
    """Decode (bandwidth) and prefill (matmul peak) bounds for one candidate, and the measured fractions."""
    memory = MemoryModel(
        candidate.config, candidate.weight_bytes, candidate.cache_kind, candidate.capacity, spans=candidate.spans
    )
    bandwidth, peak = probes["bandwidth_gb_s"], probes["matmul_gflops"]
    fills = range(settings.prompt_len, settings.prompt_len + settings.new_tokens - 1)
    decode = decode_bound(memory, fills, bandwidth)
    decode["fraction"] = measured["decode_tok_s"]["median"] / decode["bound_tok_s"]
    keys = memory.kv_slots_read(settings.prompt_len - 1) if candidate.cache_kind == "fixed" else settings.prompt_len
    prefill = prefill_bound(candidate.config, settings.prompt_len, keys, measured["runner"]["logits_positions"], peak)
    prefill["key_len"] = keys
    prefill["fraction"] = measured["prefill_tok_s"]["median"] / prefill["bound_tok_s"]
    for point in measured.get("contexts", []):
        bound = decode_bound(memory, range(point["context"] - CONTEXT_STEPS, point["context"]), bandwidth)
        point["bound_tok_s"] = bound["bound_tok_s"]
        point["bytes_per_token"] = bound["bytes_per_token"]
        point["fraction"] = point["decode_tok_s"]["median"] / bound["bound_tok_s"]
    return {
        "cache_kind": candidate.cache_kind,
        "kv_bytes_per_slot": memory.kv_bytes_per_slot,
        "decode": decode,
        "prefill": prefill,
    }


def bench_all(
    candidates: list[BenchCandidate],
    settings: BenchSettings,
    threads: int | None,
    checkpoint_dir: str | None,
    probes: dict[str, Any],
    progress: Callable[[str], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """Each candidate in turn, in its own process. A crash is recorded (``error``) and the rest still run."""
    rows = []
    for i, cand in enumerate(candidates, 1):
        progress(f"[{i}/{len(candidates)}] {cand.name}")
        base = {
            "name": cand.name,
            "kind": cand.spec.kind,
            "format": cand.format,
            "recipe": cand.recipe,
            "path": None if cand.spec.artefact is None else str(cand.spec.artefact.path),
            "producer": _producer(cand),
            "size_bytes": cand.size_bytes,
            "weight_bytes": cand.weight_bytes,
            "kv_cache_slots": cand.capacity,
            "contexts_skipped": [c for c in settings.contexts if c > cand.capacity],
        }
        try:
            measured = run_candidate(cand, settings, threads, checkpoint_dir)
        except WorkerFailed as err:
            rows.append({**base, "error": str(err)})
            progress(f"    failed: {err}")
            continue
        rows.append({**base, **measured, "roofline": roofline(cand, measured, settings, probes), "error": None})
    return rows


def _producer(cand: BenchCandidate) -> str:
    """Who wrote the candidate's file: another tool's name from its manifest (llama.cpp's converter), else us."""
    if cand.spec.artefact is None:
        return "transformers" if cand.spec.kind == "hf" else "tinyexport"
    producer = cand.spec.artefact.manifest.get("producer")
    return str(producer.get("tool", "unknown")) if isinstance(producer, dict) else "tinyexport convert"


def bench_document(
    model_name: str,
    config: ModelConfig,
    settings: BenchSettings,
    threads: int | None,
    machine: dict[str, Any],
    probes: dict[str, Any],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """The ``--json`` document (also what ``tinyexport report`` reads)."""
    return {
        "kind": "tinyexport-bench",
        "schema": RESULT_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": model_name, "config": config.to_dict()},
        "settings": {**settings.to_json(), "threads": threads},
        "machine": machine,
        "probes": probes,
        "candidates": rows,
    }
