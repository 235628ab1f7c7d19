"""Run records: the SQLite store (migration, concurrency, crash safety, refusals) and the CLI hook."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tinyexport.records.query import compare, flatten
from tinyexport.records.store import SCHEMA_V1, SCHEMA_VERSION, STORE_NAME, RunStore, StoreError

from .cli_helpers import Result, assert_bad_input

RECORDING = {"TINYEXPORT_NO_RECORD": ""}  # conftest turns recording off for every other test


def cli(*args: str, cache: Path, cwd: Path | None = None, record: bool = True, timeout: int = 300) -> Result:
    env = dict(os.environ, TINYEXPORT_CACHE=str(cache), **(RECORDING if record else {}))
    proc = subprocess.run(
        [sys.executable, "-m", "tinyexport", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def record(i: int, command: str = "bench", **extra) -> dict:
    return {
        "id": f"run{i:08d}",
        "command": command,
        "argv": [command],
        "started": f"2026-01-01T00:00:{i % 60:02d}.000+00:00",
        "ended": f"2026-01-01T00:01:{i % 60:02d}.000+00:00",
        "exit_status": 0,
        "checkpoint": {"name": "tiny"},
        **extra,
    }


def test_migration_from_v1_keeps_records_and_backfills_model(tmp_path):
    path = tmp_path / STORE_NAME
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_V1)
        conn.execute("PRAGMA user_version = 1")
        for i, name in enumerate(("smollm2-135m", "tiny")):
            rec = record(i, checkpoint={"name": name})
            conn.execute(
                "INSERT INTO runs (id, command, started, ended, exit_status, record) VALUES (?, ?, ?, ?, ?, ?)",
                (rec["id"], rec["command"], rec["started"], rec["ended"], 0, json.dumps(rec)),
            )
    store = RunStore(path)
    rows = store.runs()
    assert store.schema_version() == SCHEMA_VERSION == 2
    assert [(r.id, r.model) for r in rows] == [("run00000000", "smollm2-135m"), ("run00000001", "tiny")]
    assert [r.id for r in store.runs(model="smol")] == ["run00000000"]
    store.append(record(5))
    assert len(store.runs()) == 3
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.DatabaseError, match="immutable"):
        conn.execute("UPDATE runs SET exit_status = 1")
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = textwrap.dedent(
    """
    import sys
    from tinyexport.records.store import RunStore
    store, tag, n, pad = RunStore(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    i = 0
    while n < 0 or i < n:
        store.append({"id": f"{tag}-{i}", "command": "bench", "argv": [], "started": "2026-01-01T00:00:00+00:00",
                      "ended": "2026-01-01T00:00:01+00:00", "exit_status": 0, "result": {"pad": "x" * pad, "i": i}})
        i += 1
    """
)


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / STORE_NAME
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(n), "2000"]) for tag in ("a", "b")]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    ids = [r.id for r in RunStore(path).runs()]
    assert len(ids) == len(set(ids)) == 2 * n
    assert {f"{t}-{i}" for t in "ab" for i in range(n)} == set(ids)


def test_kill_9_during_writes_leaves_a_readable_store(tmp_path):
    path = tmp_path / STORE_NAME
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "k", "-1", "300000"])
    try:
        deadline = time.monotonic() + 120
        seen = 0
        while seen < 20 and time.monotonic() < deadline:  # let it get well into its stream of writes
            time.sleep(0.2)
            if path.is_file():
                try:
                    seen = len(RunStore(path).runs())
                except StoreError:
                    seen = 0
        assert seen >= 20
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = RunStore(path).runs()
    assert len(rows) >= seen
    assert [r.record["result"]["i"] for r in rows] == list(range(len(rows)))  # a gapless prefix
    RunStore(path).append(record(1))  # and it still takes writes


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / STORE_NAME
    RunStore(path).append(record(1))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    assert_bad_input(cli("runs", "list", cache=tmp_path), "schema v99", "newer")
    assert_bad_input(cli("runs", "show", "run00000001", cache=tmp_path), "schema v99", "newer")
    with sqlite3.connect(path) as conn:  # untouched: same version, same rows
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
        assert conn.execute("SELECT id FROM runs").fetchall() == [("run00000001",)]


def test_unknown_run_id_and_missing_store(tmp_path):
    assert_bad_input(cli("runs", "show", "abcdef", cache=tmp_path), "no run store")
    RunStore(tmp_path / STORE_NAME).append(record(1))
    assert_bad_input(cli("runs", "show", "abcdef", cache=tmp_path), "no run 'abcdef'", "runs list")
    assert_bad_input(cli("runs", "compare", "run00000001", "zzzz", cache=tmp_path), "no run 'zzzz'")
    assert_bad_input(cli("runs", "list", "--since", "yesterday", cache=tmp_path), "--since")


def test_compare_deltas_and_flatten():
    from tinyexport.records.store import RunRow

    def row(i, decode, size):
        rec = record(i, result={"candidates": [{"name": "q8", "decode_tok_s": {"median": decode}, "size": size}]})
        return RunRow(i, rec["id"], "bench", "tiny", rec["started"], rec["ended"], 0, rec)

    assert flatten({"candidates": [{"name": "q8", "x": {"median": 1}}], "n": 2}) == {
        "candidates[q8].x.median": 1,
        "n": 2,
    }
    result = compare([row(1, 100.0, 7), row(2, 150.0, 7)])
    rows = dict(result.rows)
    assert rows["result.candidates[q8].decode_tok_s.median"] == ("100", "150 (+50, +50.0%)")
    assert "result.candidates[q8].size" not in rows  # equal everywhere: only with --all
    assert dict(compare([row(1, 100.0, 7), row(2, 150.0, 7)], all_keys=True).rows)["result.candidates[q8].size"]


@pytest.fixture(scope="module")
def recorded_bench(tmp_path_factory):
    """A real `bench` run recorded from inside a fresh git repository (commit + dirty flag known)."""
    tmp = tmp_path_factory.mktemp("records_cli")
    repo, cache = tmp / "repo", tmp / "cache"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "notes.txt").write_text("a\n")
    subprocess.run([*git, "add", "notes.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    (repo / "notes.txt").write_text("b\n")  # tracked and modified: dirty
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    args = ("bench", "--checkpoint", "tiny", "--random-weights", "--torch", "--prompt-len", "8", "--new-tokens", "4")
    args += ("--repeats", "2", "--warmup", "0", "--json", str(tmp / "bench.json"), "--log-csv", str(tmp / "bench.csv"))
    res = cli(*args, cache=cache, cwd=repo)
    assert res.code == 0, res.stderr
    assert_bad_input(cli("--no-record", "bench", "--checkpoint", "skip1", cache=cache, cwd=repo), "skip1")
    assert_bad_input(cli("bench", "--checkpoint", "skip2", cache=cache, cwd=repo, record=False), "skip2")
    assert_bad_input(cli("bench", "--checkpoint", "nope", cache=cache, cwd=repo), "nope")
    assert cli("bench", "--help", cache=cache, cwd=repo).code == 0  # help is not a run
    return tmp, cache, commit


def test_bench_run_is_recorded_with_everything(recorded_bench):
    tmp, cache, commit = recorded_bench
    from tinyexport.resolve import open_checkpoint

    rows = RunStore(cache / STORE_NAME).runs()
    # bad input is recorded too (exit 2); --no-record and TINYEXPORT_NO_RECORD=1 left nothing
    assert [(r.command, r.exit_status) for r in rows] == [("bench", 0), ("bench", 2)]
    assert "nope" in rows[1].record["argv"]
    rec = rows[0].record
    assert rec["git"] == {"commit": commit, "dirty": True}
    assert rec["argv"][0] == "bench" and "--random-weights" in rec["argv"]
    assert rec["result"] == json.loads((tmp / "bench.json").read_text())
    assert rec["versions"]["tinyexport"] and rec["versions"]["python"]
    assert rec["machine"]["cores"] >= 1 and rec["machine"]["cpu_model"]
    env_cache = os.environ.get("TINYEXPORT_CACHE")
    os.environ["TINYEXPORT_CACHE"] = str(cache)
    try:
        ckpt = open_checkpoint("tiny", True, 0)
    finally:
        os.environ.pop("TINYEXPORT_CACHE") if env_cache is None else os.environ.update(TINYEXPORT_CACHE=env_cache)
    assert rec["checkpoint"]["fingerprint"] == ckpt.fingerprint()
    assert rec["started"] < rec["ended"]


def test_cli_list_show_and_bench_csv_export(recorded_bench):
    tmp, cache, _ = recorded_bench
    listing = cli("runs", "list", "--command", "bench", "--model", "tiny", cache=cache)
    assert listing.code == 0 and "tok/s" in listing.stdout, listing.stderr
    run_id = RunStore(cache / STORE_NAME).runs()[0].id
    shown = cli("runs", "show", run_id[:6], cache=cache)
    assert json.loads(shown.stdout)["id"] == run_id
    exported = cli("runs", "export", "--csv", "--command", "bench", "-o", str(tmp / "export.csv"), cache=cache)
    assert exported.code == 0, exported.stderr
    assert (tmp / "export.csv").read_text() == (tmp / "bench.csv").read_text()  # logs/bench.csv, from the store
    assert cli("runs", "list", "--since", "1d", cache=cache).stdout.count("bench") == 2
    assert "0 run(s)" in cli("runs", "list", "--since", "2999-01-01", cache=cache).stdout
    as_json = json.loads(cli("runs", "export", "--json", cache=cache).stdout)
    assert [r["exit_status"] for r in as_json] == [0, 2]
