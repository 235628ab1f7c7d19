"""Faults of the environment, reproduced for real: a full or tiny tmpfs, a file-size rlimit, a directory
the process may not write (capabilities dropped), a read-only bind mount, a cache path that is a file,
a temp dir removed mid-conversion, ``kill -9`` of a conversion and of a bench worker. Each ends in one
line on stderr, exit 1, and nothing under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyexport.atomic import atomic_directory, remove_stale_temps, write_bytes_atomic
from tinyexport.errors import NoSpaceError, VanishedError

from .cli_helpers import TINY_ONNX, Result, assert_fault, run_cli


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in Path(directory).iterdir()) if Path(directory).exists() else []


@contextlib.contextmanager
def tmpfs(directory: Path, size: str):
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()}); the ENOSPC tests need one")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@contextlib.contextmanager
def read_only_bind(source: Path, mountpoint: Path):
    source.mkdir(parents=True, exist_ok=True)
    mountpoint.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "--bind", str(source), str(mountpoint)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here; the EROFS test needs one")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mountpoint)], check=True, capture_output=True)
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(directory: Path) -> None:
    """Fill a file system to the last block."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------ ENOSPC
def test_atomic_writers_on_a_full_disk_raise_one_line_and_leave_nothing(tmp_path):
    with tmpfs(tmp_path / "fs", "1m") as fs:
        with pytest.raises(NoSpaceError, match=r"No space left on device writing .*x.bin"):
            write_bytes_atomic(fs / "x.bin", b"0" * 3_000_000)
        with (
            pytest.raises(NoSpaceError, match="free space or pick another output path"),
            atomic_directory(fs / "art") as tmp,
        ):
            (tmp / "model").write_bytes(b"1" * 3_000_000)
        assert leftovers(fs) == []


def test_convert_refuses_early_when_the_artefact_cannot_fit(tmp_path):
    with tmpfs(tmp_path / "fs", "200k") as fs:
        res = run_cli(*TINY_ONNX, "-o", str(fs / "art"), cache=tmp_path / "cache")
        line = assert_fault(res, "needs about 0.5 MB", "only 0.2 MB is free", "pick another -o")
        assert "onnx/fp32 artefact of tiny" in line
        assert leftovers(fs) == []


def test_a_report_on_a_full_disk_fails_mid_write_in_one_line(tmp_path):
    with tmpfs(tmp_path / "fs", "64k") as fs:
        fill(fs)
        res = run_cli("flops", "--config", "tiny", "--json", str(fs / "flops.json"), cache=tmp_path / "cache")
        assert_fault(res, "No space left on device writing", "flops.json")
        assert leftovers(fs) == ["filler"]


def test_cache_on_a_full_disk_names_tinyexport_cache(tmp_path):
    with tmpfs(tmp_path / "fs", "200k") as fs:
        res = run_cli(*TINY_ONNX, "-o", str(tmp_path / "art"), cache=fs / "cache")
        assert_fault(res, "random checkpoint tiny", "set TINYEXPORT_CACHE")
        assert not (tmp_path / "art").exists()
        assert list((fs / "cache").rglob("*.safetensors")) == []


def test_file_size_limit_is_refused_before_the_converter_runs(tmp_path):
    """LLVM aborts the whole process on EFBIG while writing a flatbuffer, so the limit is checked first."""
    limit = 100_000
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from tinyexport.cli import main\n"
        "sys.argv = ['tinyexport', *sys.argv[1:]]\n"
        "main()\n"
    )
    from tinyexport.models.checkpoint import resolve_checkpoint

    resolve_checkpoint("tiny", cache=tmp_path / "cache", random_weights=True)  # 430 KB: above the limit
    env = {**os.environ, "TINYEXPORT_CACHE": str(tmp_path / "cache")}
    tflite = [a if a != "onnx" else "tflite" for a in TINY_ONNX]
    proc = subprocess.run(
        [sys.executable, "-c", code, *tflite, "-o", str(tmp_path / "out" / "art")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert_fault(Result(proc.returncode, proc.stdout, proc.stderr), "at most 0.1 MB (ulimit -f)", "ulimit -f unlimited")
    assert leftovers(tmp_path / "out") == []


# ------------------------------------------------------------------------------------ EACCES / EROFS
def test_unwritable_output_directory_is_refused_before_work(tmp_path):
    """uid 0 without CAP_DAC_OVERRIDE (setpriv drops every capability) meets a directory owned by nobody."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop capabilities")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chown(locked, 65534, 65534)
    locked.chmod(0o755)
    cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
    cmd += [sys.executable, "-m", "tinyexport", *TINY_ONNX, "-o", str(locked / "sub" / "art")]
    env = {**os.environ, "TINYEXPORT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert_fault(Result(proc.returncode, proc.stdout, proc.stderr), "Permission denied", "pick another -o")
    assert leftovers(locked) == []


def test_read_only_output_and_cache(tmp_path):
    with read_only_bind(tmp_path / "src", tmp_path / "ro") as ro:
        res = run_cli(*TINY_ONNX, "-o", str(ro / "art"), cache=tmp_path / "cache")
        assert_fault(res, "Read-only file system", "pick another -o")
        res = run_cli(*TINY_ONNX, "-o", str(tmp_path / "art"), cache=ro / "cache")
        assert_fault(res, "Read-only file system", "set TINYEXPORT_CACHE")
    assert leftovers(tmp_path / "src") == [] and not (tmp_path / "art").exists()


def test_cache_path_that_is_a_file(tmp_path):
    (tmp_path / "cache").write_text("not a directory")
    res = run_cli(*TINY_ONNX, "-o", str(tmp_path / "art"), cache=tmp_path / "cache")
    assert_fault(res, "is a file", "set TINYEXPORT_CACHE")
    assert not (tmp_path / "art").exists()


# ------------------------------------------------------------------------- vanished temp dir, kill -9
def test_temp_dir_vanishing_is_reported(tmp_path):
    with pytest.raises(VanishedError, match="vanished while writing"), atomic_directory(tmp_path / "art") as tmp:
        shutil.rmtree(tmp)
        (tmp / "model").write_bytes(b"1")
    assert leftovers(tmp_path) == []


def _start(args: tuple[str, ...], out: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "TINYEXPORT_CACHE": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-m", "tinyexport", *args, "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_temp(parent: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        temps = list(parent.glob(".tmp-art--pid*"))
        if temps:
            return temps[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail("the conversion never started writing")


def test_conversion_whose_temp_dir_is_removed_fails_in_one_line(tmp_path):
    out = tmp_path / "out" / "art"
    proc = _start(TINY_ONNX, out, tmp_path / "cache")
    try:
        shutil.rmtree(_wait_for_temp(out.parent, proc))
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert_fault(Result(proc.returncode, stdout, stderr), "vanished while writing", "re-run")
    assert leftovers(out.parent) == []


def test_killed_conversion_leaves_no_artefact_and_a_retry_cleans_up(tmp_path):
    out = tmp_path / "out" / "art"
    proc = _start(TINY_ONNX, out, tmp_path / "cache")
    try:
        temp = _wait_for_temp(out.parent, proc)
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and temp.exists()  # only the temp sibling; never a half-written artefact
    retry = run_cli(*TINY_ONNX, "-o", str(out), cache=tmp_path / "cache")
    assert retry.code == 0, retry.stderr
    assert leftovers(out.parent) == ["art"]  # the dead run's temp dir is gone


def test_stale_temps_of_live_processes_are_kept(tmp_path):
    mine = tmp_path / f".tmp-art--pid{os.getpid()}-x"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    theirs = tmp_path / f".tmp-art--pid{dead.pid}-y"
    other = tmp_path / f".tmp-art2--pid{dead.pid}-z"
    for d in (mine, theirs, other):
        d.mkdir()
    assert remove_stale_temps(tmp_path / "art") == [theirs]
    assert mine.exists() and other.exists()


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append((int(entry.name), cmdline))
    return found


def test_killed_bench_worker_is_one_line(tmp_path):
    args = ["bench", "--checkpoint", "tiny", "--random-weights", "--torch", "--threads", "1", "--no-log"]
    env = {**os.environ, "TINYEXPORT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyexport", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 300
        worker = None
        while worker is None and time.monotonic() < deadline and proc.poll() is None:
            worker = next((p for p, cmd in _children(proc.pid) if "tinyexport.bench.worker" in cmd), None)
            time.sleep(0.02)
        assert worker is not None, proc.communicate()
        os.kill(worker, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert_fault(Result(proc.returncode, stdout, stderr), "bench worker (probe) was killed by SIGKILL", "OOM killer")


# ---------------------------------------------------------------------------------------- MemoryError
def test_memory_error_is_one_line(tmp_path):
    """A real MemoryError: a billion random prompt ids (8 GB) under a 6 GiB address-space limit."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
        "from tinyexport.cli import main\n"
        "sys.argv = ['tinyexport', *sys.argv[1:]]\n"
        "main()\n"
    )
    args = [
        "verify",
        "--checkpoint",
        "tiny",
        "--random-weights",
        "--prompt-tokens",
        "1000000000",
        "--max-new-tokens",
        "1",
    ]
    env = {**os.environ, "TINYEXPORT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600)
    assert_fault(
        Result(proc.returncode, proc.stdout, proc.stderr),
        "out of memory while running `tinyexport verify`",
        "ulimit -v",
    )
