#!/usr/bin/env python3
"""Measure what recording one run costs (docs/runs.md): build_record + append, in-process, for a run
with a checkpoint (fingerprint cached after the first) and one artefact. Usage: record_cost.py ARTEFACT_DIR"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from tinyexport.records.capture import RunContext, build_record, utc_now
from tinyexport.records.sink import RunSink
from tinyexport.records.store import RunStore
from tinyexport.resolve import open_checkpoint


def main() -> None:
    artefact = Path(sys.argv[1])
    ckpt = open_checkpoint("tiny", True, 0)
    store = RunStore(Path(tempfile.mkdtemp()) / "runs.sqlite")
    times = []
    for _ in range(30):
        sink = RunSink(command="bench", result={"candidates": [{"name": "x", "decode_tok_s": 1.0}]}, checkpoint=ckpt)
        sink.artefacts.append(artefact)
        sink.context = RunContext()  # the CLI starts it when the command starts
        time.sleep(0.1)  # the command's own work
        start = time.perf_counter()
        store.append(build_record(sink, ["bench", str(artefact)], utc_now(), 0, store))
        times.append(1000 * (time.perf_counter() - start))
    print(
        f"first {times[0]:.1f} ms (fingerprint hashed), then median {statistics.median(times[1:]):.1f} ms, "
        f"max {max(times[1:]):.1f} ms over {len(times) - 1} records"
    )


if __name__ == "__main__":
    main()
