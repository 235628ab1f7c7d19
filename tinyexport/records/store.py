"""The run store: stdlib sqlite3, WAL mode, ``PRAGMA user_version`` schema versioning with migrations.

Safe under concurrent writers (several commands or sweeps at once): every write is one short
``BEGIN IMMEDIATE`` transaction and every connection waits up to ``BUSY_TIMEOUT_MS`` for the lock.
Records are immutable: triggers refuse UPDATE and DELETE on ``runs``. A store written by a newer
tinyexport (higher ``user_version``) is refused, never modified.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyexport.errors import UserError

STORE_NAME = "runs.sqlite"
SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 15_000

# v1: the first schema (runs only). Kept verbatim: tests build a v1 store from it to test the migration.
SCHEMA_V1 = """
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    started TEXT NOT NULL,
    ended TEXT NOT NULL,
    exit_status INTEGER,
    record TEXT NOT NULL
);
CREATE INDEX runs_by_command ON runs(command, started);
"""

# v1 -> v2: a model column (backfilled from each record) for `runs list --model`, a cache of checkpoint
# fingerprints keyed by the weight files' stat signature, and immutability triggers.
MIGRATE_V1_TO_V2 = """
ALTER TABLE runs ADD COLUMN model TEXT;
UPDATE runs SET model = json_extract(record, '$.checkpoint.name');
CREATE INDEX runs_by_model ON runs(model, started);
CREATE TABLE fingerprints (
    directory TEXT NOT NULL,
    signature TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (directory, signature)
);
CREATE TRIGGER runs_no_update BEFORE UPDATE ON runs BEGIN SELECT RAISE(ABORT, 'run records are immutable'); END;
CREATE TRIGGER runs_no_delete BEFORE DELETE ON runs BEGIN SELECT RAISE(ABORT, 'run records are immutable'); END;
"""

MIGRATIONS: dict[int, str] = {1: MIGRATE_V1_TO_V2}  # from version -> script reaching version + 1


class StoreError(UserError):
    """The run store cannot be used as asked (newer schema, unknown id, not a database)."""


@dataclass(frozen=True)
class RunRow:
    """One stored run: the indexed columns and the full record."""

    seq: int
    id: str
    command: str
    model: str | None
    started: str
    ended: str
    exit_status: int | None
    record: Mapping[str, Any]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class RunStore:
    """A handle on one store file; each call opens a short-lived connection (no state kept between calls)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        if not create and not self.path.is_file():
            raise StoreError(f"no run store at {self.path}; run a command (convert, verify, eval, bench) first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)) as conn:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                # WAL + NORMAL: a commit survives a killed process (kill -9) and never corrupts the file;
                # only an OS crash or power cut may drop the last commits. Saves an fsync per record.
                conn.execute("PRAGMA synchronous = NORMAL")
                self._prepare(conn)
                yield conn
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError) and "locked" in str(err):
                raise StoreError(
                    f"run store {self.path} stayed locked for {BUSY_TIMEOUT_MS // 1000} s; retry"
                ) from None
            raise StoreError(f"run store {self.path} is unreadable ({err}); move it away to start a new one") from None

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """WAL mode, then create or migrate the schema inside one write transaction."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        self._refuse_newer(version)
        if version == SCHEMA_VERSION:
            return
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            self._refuse_newer(version)
            if version == 0:
                _run_script(conn, SCHEMA_V1)
                version = 1
            while version < SCHEMA_VERSION:
                _run_script(conn, MIGRATIONS[version])
                version += 1
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"run store {self.path} has schema v{version}, newer than this tinyexport understands "
                f"(v{SCHEMA_VERSION}); upgrade tinyexport or set TINYEXPORT_CACHE to another directory"
            )

    def append(self, record: Mapping[str, Any]) -> str:
        """Insert one record (its ``id``, ``command``, ``started``, ``ended`` are required); return the id."""
        model = (record.get("checkpoint") or {}).get("name")
        text = json.dumps(record, sort_keys=True, default=str)
        with self._connect(create=True) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO runs (id, command, started, ended, exit_status, record, model) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record["id"],
                        record["command"],
                        record["started"],
                        record["ended"],
                        record.get("exit_status"),
                        text,
                        model,
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return str(record["id"])

    def runs(self, *, command: str | None = None, model: str | None = None, since: str | None = None) -> list[RunRow]:
        """Records oldest first, filtered by command, model (substring) and start time (ISO, >=)."""
        clauses, params = [], []
        if command:
            clauses.append("(command = ? OR command LIKE ? || ' %')")  # `eval` matches `eval choice`
            params += [command, command]
        if model:
            clauses.append("model LIKE ?")
            params.append(f"%{model}%")
        if since:
            clauses.append("started >= ?")
            params.append(since)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect(create=False) as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM runs {where} ORDER BY seq", params).fetchall()
        return [_row(r) for r in rows]

    def get(self, run_id: str) -> RunRow:
        """One record by id or unique id prefix (at least 4 characters)."""
        with self._connect(create=False) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE id = ? OR (length(?) >= 4 AND id LIKE ? || '%') LIMIT 2",
                (run_id, run_id, run_id),
            ).fetchall()
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}; see `tinyexport runs list` for the ids")
        if len(rows) > 1:
            raise StoreError(f"run id prefix {run_id!r} is ambiguous; give more characters")
        return _row(rows[0])

    def cached_fingerprint(self, directory: str, signature: str) -> str | None:
        with self._connect(create=True) as conn:
            row = conn.execute(
                "SELECT fingerprint FROM fingerprints WHERE directory = ? AND signature = ?", (directory, signature)
            ).fetchone()
        return row[0] if row else None

    def remember_fingerprint(self, directory: str, signature: str, fingerprint: str) -> None:
        with self._connect(create=True) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO fingerprints (directory, signature, fingerprint) VALUES (?, ?, ?)",
                (directory, signature, fingerprint),
            )

    def schema_version(self) -> int:
        with self._connect(create=False) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])


_COLUMNS = "seq, id, command, model, started, ended, exit_status, record"


def _row(r: tuple) -> RunRow:
    return RunRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]))


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Statements one by one inside the caller's transaction (executescript would COMMIT first)."""
    statement = ""
    for line in script.strip().splitlines():
        statement += line + "\n"
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


def default_store() -> RunStore:
    from tinyexport.paths import cache_dir

    return RunStore(cache_dir() / STORE_NAME)
