"""Peak RSS per stage of a conversion: run a ``tinyexport convert`` command line, sample the process's
resident set (``/proc/PID/status`` VmRSS, every 0.1 s) and print, for each stage line the converter
prints (``[  12.3 s] stage``), the highest RSS seen while it ran, then the process's own high-water mark.

    .venv/bin/python scripts/conversion_memory.py -- .venv/bin/tinyexport --no-record convert --format onnx ...
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time

_STAGE = re.compile(r"^\[\s*[\d.]+ s\] (.*)$")


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command line (after --)")
    args = parser.parse_args()
    command = [c for c in args.command if c != "--"] if args.command[:1] == ["--"] else args.command
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    stages: list[list] = [["(start)", 0, 0]]  # name, highest RSS seen, RSS when it started
    hwm = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = _status_kb(proc.pid, "VmRSS")
            hwm[0] = max(hwm[0], _status_kb(proc.pid, "VmHWM"))
            stages[-1][1] = max(stages[-1][1], rss)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        match = _STAGE.match(line.strip())
        if match:
            rss = _status_kb(proc.pid, "VmRSS")
            stages.append([match.group(1), rss, rss])
    code = proc.wait()
    done.set()
    sampler.join()
    print("\nRSS (sampled, MiB) per stage:  at its start  highest")
    for name, kb, start_kb in stages:
        print(f"  {start_kb / 1024:8.0f}  {kb / 1024:8.0f}  {name}")
    print(f"            {hwm[0] / 1024:8.0f}  VmHWM (the process's high-water mark)")
    return code


if __name__ == "__main__":
    sys.exit(main())
