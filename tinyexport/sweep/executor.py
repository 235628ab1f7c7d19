"""Running a sweep's cells: each stage (convert, verify, eval perplexity, bench) is the tinyexport
command itself in its own process, so cells are isolated and every stage lands in the run store like
any other run. Cells run on a local pool (``jobs`` at once); conversions additionally wait for memory:
never more at once than the available RAM holds, by the peak RSS recorded for similar conversions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .matrix import Cell

STAGE_TIMEOUT_S = 6 * 3600


def available_ram_mb() -> float:
    """MemAvailable from /proc/meminfo (Linux), else physical RAM."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return 4096.0


class MemoryBudget:
    """Admits work while the sum of its estimates fits ``total_mb``; one job is always admitted alone."""

    def __init__(self, total_mb: float) -> None:
        self.total_mb = total_mb
        self._used = 0.0
        self._running = 0
        self._cond = threading.Condition()

    def acquire(self, mb: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._running == 0 or self._used + mb <= self.total_mb)
            self._used += mb
            self._running += 1

    def release(self, mb: float) -> None:
        with self._cond:
            self._used -= mb
            self._running -= 1
            self._cond.notify_all()


@dataclass(frozen=True)
class StageFailure(Exception):
    stage: str
    message: str


def run_stage(stage: str, args: list[str], ok: tuple[int, ...] = (0,)) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "tinyexport", *args], capture_output=True, text=True, timeout=STAGE_TIMEOUT_S
    )
    if proc.returncode not in ok:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise StageFailure(stage, (lines[-1] if lines else f"exit {proc.returncode}")[:300])
    return proc.returncode


def _checkpoint_args(cell: Cell) -> list[str]:
    return ["--checkpoint", cell.checkpoint] + (
        ["--random-weights", "--seed", str(cell.seed)] if cell.random_weights else []
    )


def run_cell(cell: Cell, out_dir: Path, budget: MemoryBudget, convert_mb: Callable[[Cell], float]) -> dict[str, Any]:
    """Convert, verify, evaluate and bench one cell; the cell's result document (status done/failed)."""
    s = dict(cell.settings)
    art = Path(out_dir) / cell.name
    work = Path(out_dir) / ".sweep" / cell.name
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    result: dict[str, Any] = {"key": cell.key, "cell": cell.name, "artefact": str(art), "spec": cell_spec(cell)}
    try:
        start = time.perf_counter()
        if not _finished_artefact(art, cell):
            mb = convert_mb(cell)
            budget.acquire(mb)
            try:
                lens = ",".join(str(n) for n in (8, 64, 128) if n <= cell.cache_length) or str(cell.cache_length)
                run_stage(
                    "convert",
                    ["convert", "--format", cell.format, "--quantize", cell.recipe, "-o", str(art), "--force"]
                    + _checkpoint_args(cell)
                    + ["--kv-cache-max-len", str(cell.cache_length), "--prefill-seq-lens", lens]
                    + [arg for t in cell.transforms for arg in ("--transform", t)],
                )
            finally:
                budget.release(mb)
        seconds["convert"] = time.perf_counter() - start
        verify_doc = None
        if s["verify"]:
            start = time.perf_counter()
            code = run_stage(
                "verify", ["verify", str(art), "--max-new-tokens", "8", "--json", str(work / "verify.json")], (0, 1)
            )
            verify_doc = json.loads((work / "verify.json").read_text()) if (work / "verify.json").is_file() else None
            seconds["verify"] = time.perf_counter() - start
            result["verify_exit"] = code
        start = time.perf_counter()
        eval_args = ["eval", "perplexity", str(art), "--max-tokens", str(s["max_tokens"]), "--window", str(s["window"])]
        eval_args += ["--stride", str(max(1, s["window"] // 2)), "--json", str(work / "eval.json")]
        run_stage("eval", eval_args + (["--text", str(s["text"])] if s["text"] else []))
        seconds["eval"] = time.perf_counter() - start
        start = time.perf_counter()
        bench_args = ["bench", str(art), "--prompt-len", str(s["prompt_len"]), "--new-tokens", str(s["new_tokens"])]
        bench_args += ["--repeats", str(s["repeats"]), "--warmup", "1", "--no-log", "--json", str(work / "bench.json")]
        run_stage("bench", bench_args)
        seconds["bench"] = time.perf_counter() - start
    except StageFailure as err:
        return {**result, "status": "failed", "failed_stage": err.stage, "error": err.message, "seconds": seconds}
    except subprocess.TimeoutExpired:
        return {**result, "status": "failed", "error": f"a stage ran over {STAGE_TIMEOUT_S} s", "seconds": seconds}
    metrics = cell_metrics(
        art, verify_doc, json.loads((work / "eval.json").read_text()), json.loads((work / "bench.json").read_text())
    )
    return {**result, "status": "done", "metrics": metrics, "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def cell_spec(cell: Cell) -> dict[str, Any]:
    return {
        "checkpoint": cell.checkpoint,
        "random_weights": cell.random_weights,
        "seed": cell.seed,
        "format": cell.format,
        "recipe": cell.recipe,
        "cache_length": cell.cache_length,
        **({"transform": cell.transform} if cell.transform else {}),
        **dict(cell.settings),
    }


def _finished_artefact(art: Path, cell: Cell) -> bool:
    """A complete artefact of this cell from an interrupted earlier sweep (convert publishes atomically)."""
    try:
        manifest = json.loads((art / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("format") == cell.format
        and manifest.get("recipe") == cell.recipe
        and manifest.get("kv_cache_max_len") == cell.cache_length
        and [t.get("name") for t in manifest.get("transforms", [])] == [t.split("=")[0] for t in cell.transforms]
    )


def cell_metrics(art: Path, verify: Mapping | None, evaluation: Mapping, bench: Mapping) -> dict[str, Any]:
    """The numbers the gate and the ranking use, from the stages' JSON documents."""
    manifest = json.loads((art / "manifest.json").read_text())
    by_name = {c["name"]: c for c in evaluation["candidates"]}
    ref, cand = by_name.get("hf", {}), by_name.get(art.name, {})
    ref_ppl, ppl = ref.get("perplexity"), cand.get("perplexity")
    b = next((c for c in bench["candidates"] if c["name"] == art.name and not c.get("error")), None)
    conv = manifest.get("conversion", {})
    return {
        "size_mb": b["size_bytes"] / 1e6 if b else None,
        "decode_tok_s": b["decode_tok_s"]["median"] if b else None,
        "prefill_tok_s": b["prefill_tok_s"]["median"] if b else None,
        "ttft_ms": b["ttft_ms"]["median"] if b else None,
        "run_peak_rss_mb": b["peak_rss_mb"] if b else None,
        "perplexity": ppl,
        "reference_perplexity": ref_ppl,
        "dppl_pct": 100 * (ppl - ref_ppl) / ref_ppl if ppl is not None and ref_ppl else None,
        "kl_mean": cand.get("kl_mean"),
        "top1_agreement": cand.get("top1_agreement"),
        "verify_passed": None if verify is None else all(c.get("passed") for c in verify.get("candidates", [])),
        "convert_s": conv.get("seconds"),
        "convert_peak_rss_mb": conv.get("peak_rss_mb"),
    }


def run_cells(
    cells: list[Cell],
    out_dir: Path,
    jobs: int,
    convert_mb: Callable[[Cell], float],
    on_done: Callable[[Cell, dict[str, Any]], None],
    ram_mb: float | None = None,
) -> list[dict[str, Any]]:
    """Every cell on a pool of ``jobs`` workers, conversions within the RAM budget; ``on_done`` (record,
    report progress) runs as each cell finishes, so an interruption keeps every finished cell."""
    budget = MemoryBudget(0.8 * (ram_mb if ram_mb is not None else available_ram_mb()))

    def one(cell: Cell) -> dict[str, Any]:
        result = run_cell(cell, out_dir, budget, convert_mb)
        on_done(cell, result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, cells))
