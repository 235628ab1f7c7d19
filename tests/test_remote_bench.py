"""`bench --on ssh://...` against a real OpenSSH server this test starts on 127.0.0.1 (Debian's
openssh-server, installed by `make install`), with a throwaway host key and user key in a tmp dir.
The target's Python is this one (--remote-python), so nothing is installed by the test.

Also the adb transport as far as a machine without a device allows: the argv it builds, and the
one-line failure when adb or a device is missing.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinyexport.artefact import load_artefact
from tinyexport.hashing import sha256_file

from .cli_helpers import assert_bad_input, run_cli

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
BENCH_ARGS = ("--prompt-len", "8", "--new-tokens", "4", "--warmup", "0", "--repeats", "1", "--threads", "1", "--no-log")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """(port, user key, ssh options) of an sshd on 127.0.0.1 that accepts only that key; stopped after."""
    if SSHD is None:
        pytest.skip("sshd is not installed (Debian: apt-get install openssh-server; `make install` does it)")
    tmp = tmp_path_factory.mktemp("sshd")
    host_key, user_key = _keygen(tmp / "host_key"), _keygen(tmp / "user_key")
    (tmp / "authorized_keys").write_text((tmp / "user_key.pub").read_text())
    os.chmod(tmp / "authorized_keys", 0o600)
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {tmp / 'sshd.pid'}",
                f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {getpass.getuser()}",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir (tmpfs, gone at boot)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited: {proc.stdout.read().decode(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    options = (
        "--ssh-option",
        f"UserKnownHostsFile={tmp / 'known_hosts'}",
        "--ssh-option",
        "StrictHostKeyChecking=accept-new",
    )
    yield port, user_key, options
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def tiny_art(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    target = tmp_path_factory.mktemp("art") / "tiny_f32"
    res = run_cli(
        "convert",
        "--format",
        "tflite",
        "--checkpoint",
        "tiny",
        "--random-weights",
        "--prefill-seq-lens",
        "8",
        "--kv-cache-max-len",
        "32",
        "-o",
        str(target),
        cache=cache,
    )
    assert res.code == 0, res.stderr
    return target


def _on(port: int, user: str | None = None) -> str:
    return f"ssh://{user or getpass.getuser()}@127.0.0.1:{port}"


def test_bench_over_ssh_copies_once_runs_there_and_records_the_remote(sshd, tiny_art, tmp_path):
    port, key, options = sshd
    remote_dir = tmp_path / "remote"
    out = tmp_path / "remote.json"
    args = (
        "bench",
        str(tiny_art),
        "--on",
        _on(port),
        "--identity",
        str(key),
        *options,
        "--remote-python",
        sys.executable,
        "--remote-dir",
        str(remote_dir),
        *BENCH_ARGS,
    )
    res = run_cli(*args, "--json", str(out), cache=tmp_path / "cache", timeout=600)
    assert res.code == 0, res.stdout[-2000:] + res.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["kind"] == "tinyexport-bench"
    (cand,) = doc["candidates"]
    assert cand["name"] == "tiny_f32" and not cand.get("error") and cand["decode_tok_s"]["median"] > 0
    remote = doc["remote"]
    manifest = load_artefact(tiny_art).manifest
    assert remote["transport"] == f"ssh://{getpass.getuser()}@127.0.0.1:{port}"
    assert sorted(remote["copied"]) == sorted(f"tiny_f32/{n}" for n in [*manifest["files"], "manifest.json"])
    assert remote["skipped"] == [] and doc["machine"]["host"] == socket.gethostname()
    copied = remote_dir / "artefacts" / "tiny_f32"
    for name in [*manifest["files"], "manifest.json"]:
        assert sha256_file(copied / name) == sha256_file(tiny_art / name)
    assert not [p for p in copied.iterdir() if p.name.startswith(".")]  # no .part file left
    assert "remote" in res.stdout and "ssh://" in res.stdout

    # a second run copies nothing; a damaged remote file is the only one copied again
    with open(copied / "model.tflite", "r+b") as handle:
        handle.write(b"\0\0\0\0")
    res = run_cli(*args, "--json", str(out), cache=tmp_path / "cache", timeout=600)
    assert res.code == 0, res.stderr[-2000:]
    remote = json.loads(out.read_text())["remote"]
    assert remote["copied"] == ["tiny_f32/model.tflite"]
    assert len(remote["skipped"]) == len(manifest["files"])
    assert sha256_file(copied / "model.tflite") == sha256_file(tiny_art / "model.tflite")


def _timed(*args, **kwargs):
    start = time.monotonic()
    res = run_cli(*args, **kwargs)
    return res, time.monotonic() - start


def test_ssh_failures_are_one_line_exit_2_and_quick(sshd, tiny_art, tmp_path):
    port, key, options = sshd
    common = (*options, "--remote-dir", str(tmp_path / "remote"), "--connect-timeout", "5", *BENCH_ARGS)
    closed = _free_port()  # nothing listens there
    res, seconds = _timed("bench", str(tiny_art), "--on", _on(closed), "--identity", str(key), *common, timeout=60)
    assert_bad_input(res, f"127.0.0.1:{closed}", "Connection refused")
    assert seconds < 30
    stranger = _keygen(tmp_path / "stranger")
    res, seconds = _timed("bench", str(tiny_art), "--on", _on(port), "--identity", str(stranger), *common, timeout=60)
    assert_bad_input(res, "Permission denied", "--identity")
    res = run_cli(
        "bench",
        str(tiny_art),
        "--on",
        _on(port),
        "--identity",
        str(key),
        *common,
        "--remote-python",
        "/nonexistent/python3",
        timeout=60,
    )
    assert_bad_input(res, "--remote-python /nonexistent/python3 does not run there")
    assert_bad_input(
        run_cli("bench", str(tiny_art), "--on", "ssh://127.0.0.1:notaport", *BENCH_ARGS), "not an ssh target"
    )
    assert_bad_input(run_cli("bench", str(tiny_art), "--on", "ftp://x", *BENCH_ARGS), "unknown transport")
    assert_bad_input(run_cli("bench", "--on", _on(port), *BENCH_ARGS), "--on benches artefact directories only")
    assert not (tmp_path / "remote" / "artefacts").exists()  # nothing copied by any failed run


def test_adb_transport_argv_and_missing_device(tmp_path):
    from tinyexport.bench.transports import AdbTransport, RemoteError, parse_target

    adb = parse_target("adb://emulator-5554")
    assert isinstance(adb, AdbTransport) and adb.label == "adb://emulator-5554"
    assert adb.push_argv(Path("/a/model.tflite"), "/data/local/tmp/x/.model.tflite.part") == [
        "adb",
        "-s",
        "emulator-5554",
        "push",
        "/a/model.tflite",
        "/data/local/tmp/x/.model.tflite.part",
    ]
    assert adb.shell_argv("ls /data/local/tmp") == ["adb", "-s", "emulator-5554", "shell", "ls /data/local/tmp"]
    assert parse_target("adb://").prefix() == ["adb"]
    # no adb binary on PATH: one line naming the fix
    empty = tmp_path / "bin"
    empty.mkdir()
    with pytest.raises(RemoteError, match="adb is not installed"):
        AdbTransport(adb=str(empty / "adb")).check_device()
    # an adb that lists no device (a stand-in script printing what `adb devices` prints with none attached)
    fake = empty / "adb"
    fake.write_text("#!/bin/sh\necho 'List of devices attached'\necho\n")
    fake.chmod(0o755)
    with pytest.raises(RemoteError, match="no Android device attached"):
        AdbTransport(adb=str(fake)).check_device()
    res = run_cli("bench", str(tmp_path), "--on", "adb://", *BENCH_ARGS, env={"PATH": str(empty)})
    assert_bad_input(res, "no Android device attached")
