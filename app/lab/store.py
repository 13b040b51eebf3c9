"""The run store: every training run, its metrics and its checkpoint, in one SQLite file.

This module is the only code that touches the file. A run is defined by a RunSpec (app/lab/runs.py); identical
specs share a key, so a finished run can be replayed instead of trained again (find_done). The server opens the
store with open_store (app/lab/store_opening.py), which never stops the app. A store opened read-only (or an empty
one in memory) raises StoreNotWritable on every write, saying why; a run that cannot be read raises RunUnreadable
naming it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from app.lab.runs import FINAL_STATUSES, INTERRUPTED, STATUSES, RunRecord, RunSpec

SCHEMA_VERSION = 3  # 2: sweeps.stopped_at; 3: runs.probes
log = logging.getLogger(__name__)


class StoreNotWritable(Exception):
    """The run store is open read-only, or there is none: nothing can be trained or saved. The message says
    why, naming ADDNORM_DATA_DIR and the path."""


class RunUnreadable(Exception):
    """One run cannot be read from the store (a metrics row that is not JSON, a damaged page of the file);
    the other runs still can be."""

    def __init__(self, run_id: int, path: Path, why: str):
        super().__init__(f"run {run_id} cannot be read from the run store {path}: {why}")
        self.run_id = run_id


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL,
    spec        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    label       TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    started_at  REAL,
    finished_at REAL,
    error       TEXT,
    final       TEXT,
    steps_done  INTEGER NOT NULL DEFAULT 0,
    probes      TEXT  -- what was measured on the trained model once it finished (model/train/probes.py)
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, status);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
-- Checkpoints live apart from runs so that listing runs never reads the blobs.
CREATE TABLE IF NOT EXISTS sweeps (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL,
    items      TEXT NOT NULL,
    created_at REAL NOT NULL,
    stopped_at REAL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id INTEGER PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    data   BLOB NOT NULL
);
"""

_SELECT_RUN = """
SELECT runs.*, EXISTS (SELECT 1 FROM checkpoints c WHERE c.run_id = runs.id) AS has_checkpoint FROM runs
"""


def _add_column(conn: sqlite3.Connection, table: str, column: str) -> None:
    """ALTER TABLE … ADD COLUMN, unless the table has that column already."""
    names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    if column.split()[0] not in names:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _check_status(status: str, allowed: tuple[str, ...]) -> None:
    if status not in allowed:
        raise ValueError(f"status {status!r} is not allowed; choose one of {' | '.join(allowed)}")


class RunStore:
    """Thread-safe access to the run database.

    One connection guarded by a lock, rather than one connection per thread: the web server's
    worker threads come and go, and per-thread connections would be left open behind them and
    could not all be closed by close(). Every query here takes milliseconds, so serialising them
    costs nothing noticeable, and SQLite admits only one writer at a time anyway. Other processes
    (training workers) are kept apart by SQLite's own file locks; WAL lets them read while one writes.
    """

    def __init__(self, path: Path, read_only: bool = False):
        """read_only: open an existing store with SQLite's mode=ro (its directory or file cannot be written);
        every write then raises StoreNotWritable."""
        self.path = Path(path)
        self.read_only: str | None = None  # why writes are refused; None: the store can be written
        if read_only:
            self._conn = connect_read_only(self.path)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; _write() opens each one explicitly.
            # timeout: wait up to 10 s for another process's write lock instead of failing at once.
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._reached: dict[tuple[int, float], int | None] = {}  # (run id, target) -> step; finished runs only
        try:
            self._set_up(read_only)
        except BaseException:
            self._conn.close()
            raise
        if read_only:
            self.refuse_writes(f"the run store {self.path} is open read-only")

    def _set_up(self, read_only: bool = False) -> None:
        if not read_only:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: never corrupt, at worst loses the last commits
        self._conn.execute("PRAGMA foreign_keys=ON")  # so deleting a run deletes its metrics and checkpoint
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path} has schema version {version}; this code knows up to {SCHEMA_VERSION}")
        if read_only:
            return
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            # columns added since version 1 (a table created above already has them)
            _add_column(conn, "sweeps", "stopped_at REAL")
            _add_column(conn, "runs", "probes TEXT")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def writable(self) -> bool:
        return self.read_only is None

    def refuse_writes(self, why: str) -> None:
        """From now on every write raises StoreNotWritable(why)."""
        self.read_only = why

    def require_writable(self) -> None:
        if self.read_only is not None:
            raise StoreNotWritable(self.read_only)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails halfway
        # because another process started writing after it had read.
        self.require_writable()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:  # a failed COMMIT may have ended it already
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _reading(self, run_id: int) -> Iterator[None]:
        """What goes wrong reading one run's rows (a damaged page, text that is not JSON) becomes RunUnreadable."""
        try:
            yield
        except RunUnreadable:
            raise
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as error:
            raise RunUnreadable(run_id, self.path, f"{type(error).__name__}: {error}") from error

    def _record(self, row: sqlite3.Row) -> RunRecord:
        with self._reading(row["id"]):
            return RunRecord.from_row(row)

    def _require(self, conn: sqlite3.Connection, run_id: int) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise KeyError(f"no run with id {run_id}")

    def recover(self) -> int:
        """Fail every run left queued or running by a previous process; returns how many."""
        with self._write() as conn:
            cursor = conn.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? "
                                  "WHERE status IN ('queued', 'running')", (INTERRUPTED, time.time()))
            return cursor.rowcount

    def create(self, spec: RunSpec, label: str = "") -> RunRecord:
        with self._write() as conn:
            cursor = conn.execute("INSERT INTO runs (key, spec, status, label, created_at) "
                                  "VALUES (?, ?, 'queued', ?, ?)", (spec.key(), spec.to_json(), label, time.time()))
            row = conn.execute(_SELECT_RUN + "WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return RunRecord.from_row(row)

    def find_done(self, spec: RunSpec) -> RunRecord | None:
        """The newest finished run with this exact spec that can be replayed (it has a checkpoint)."""
        with self._lock:
            row = self._conn.execute(
                _SELECT_RUN + "WHERE key = ? AND status = 'done' AND EXISTS (SELECT 1 FROM checkpoints c "
                              "WHERE c.run_id = runs.id) ORDER BY id DESC LIMIT 1",
                (spec.key(),)).fetchone()
        return self._record(row) if row else None

    def find_latest(self, spec: RunSpec) -> RunRecord | None:
        """The newest run with this spec, whatever its status (a sweep's cell shows it)."""
        with self._lock:
            row = self._conn.execute(_SELECT_RUN + "WHERE key = ? ORDER BY id DESC LIMIT 1", (spec.key(),)).fetchone()
        return self._record(row) if row else None

    def run_for(self, spec: RunSpec) -> RunRecord | None:
        """The run that stands for this spec (a sweep's cell, a claim's seed): a finished one that can be replayed,
        else the newest whatever its status (shipped runs, which have no checkpoint, are found this way)."""
        return self.find_done(spec) or self.find_latest(spec)

    def finished_run(self, spec: RunSpec) -> RunRecord | None:
        """run_for(spec) when it finished ("done"), else None."""
        record = self.run_for(spec)
        return record if record is not None and record.status == "done" else None

    # ---- sweeps: named lists of run specs; their results are the runs with those specs ----

    def create_sweep(self, name: str, items: list[dict[str, Any]]) -> int:
        """items: [{"spec": RunSpec, ...labels}]; returns the sweep id."""
        stored = [{**item, "spec": item["spec"].to_json()} for item in items]
        with self._write() as conn:
            cursor = conn.execute("INSERT INTO sweeps (name, items, created_at) VALUES (?, ?, ?)",
                                  (name, json.dumps(stored), time.time()))
            return cursor.lastrowid

    def sweep(self, sweep_id: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT id, name, items, created_at, stopped_at FROM sweeps WHERE id = ?",
                                     (sweep_id,)).fetchone()
        return self._sweep_from_row(row) if row else None

    def sweeps(self, limit: int = 20) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute("SELECT id, name, items, created_at, stopped_at FROM sweeps "
                                      "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [self._sweep_from_row(row) for row in rows]

    def _sweep_from_row(self, row) -> dict[str, Any]:
        """A sweep with the items whose spec this code can read; one it cannot (a setting or task since removed)
        is left out, logged and counted in "unreadable", so the sweep and the server still start."""
        items, unreadable = [], 0
        for item in json.loads(row[2]):
            try:
                items.append({**item, "spec": RunSpec.from_json(item["spec"])})
            except (ValueError, TypeError, KeyError) as error:
                unreadable += 1
                log.warning("sweep %s in %s: an item's spec cannot be read (%s)", row[0], self.path, error)
        return {"id": row[0], "name": row[1], "items": items, "created_at": row[3], "stopped_at": row[4],
                "unreadable": unreadable}

    def stop_sweep(self, sweep_id: int) -> None:
        """Mark a sweep stopped: its unfinished runs are not started again, not even after a restart."""
        with self._write() as conn:
            conn.execute("UPDATE sweeps SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL",
                         (time.time(), sweep_id))

    def mark_running(self, run_id: int) -> None:
        with self._write() as conn:
            self._require(conn, run_id)
            conn.execute("UPDATE runs SET status = 'running', started_at = ? WHERE id = ?", (time.time(), run_id))

    def add_metrics(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        """Store metrics rows keyed by their "step"; a row for a step already stored replaces it."""
        for row in rows:
            step = row.get("step")
            if isinstance(step, bool) or not isinstance(step, int):
                raise ValueError(f"each metrics row needs an integer 'step'; got {step!r}")
        if not rows:
            return
        with self._write() as conn:
            self._require(conn, run_id)
            # json.dumps keeps NaN/Infinity (a diverged loss must stay visible) and json.loads reads them back.
            conn.executemany("INSERT INTO metrics (run_id, step, data) VALUES (?, ?, ?) "
                             "ON CONFLICT (run_id, step) DO UPDATE SET data = excluded.data",
                             [(run_id, row["step"], json.dumps(row)) for row in rows])
            # Derived from the table rather than from this batch, so batches may arrive in any order.
            conn.execute("UPDATE runs SET steps_done = (SELECT MAX(step) FROM metrics WHERE run_id = :id), "
                         "final = (SELECT data FROM metrics WHERE run_id = :id ORDER BY step DESC LIMIT 1) "
                         "WHERE id = :id", {"id": run_id})

    def metrics(self, run_id: int, after_step: int = 0) -> list[dict[str, Any]]:
        """Rows with step > after_step, in step order (a client passes the last step it has seen).
        RunUnreadable when they cannot be read."""
        with self._reading(run_id):
            with self._lock:
                rows = self._conn.execute("SELECT step, data FROM metrics WHERE run_id = ? AND step > ? "
                                          "ORDER BY step", (run_id, after_step)).fetchall()
            parsed = []
            for step, data in rows:
                try:
                    parsed.append(json.loads(data))
                except ValueError as error:
                    raise RunUnreadable(run_id, self.path, f"its metrics row at step {step} is not valid JSON "
                                                           f"({error})") from error
        return parsed

    def finish(self, run_id: int, status: str, checkpoint: bytes | None = None, error: str | None = None) -> None:
        _check_status(status, FINAL_STATUSES)
        with self._write() as conn:
            self._require(conn, run_id)
            conn.execute("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ?",
                         (status, error, time.time(), run_id))
            if checkpoint is not None:
                conn.execute("INSERT OR REPLACE INTO checkpoints (run_id, data) VALUES (?, ?)", (run_id, checkpoint))

    def import_run(self, spec: RunSpec, run: dict[str, Any]) -> int:
        """A finished run measured elsewhere (shipped results: metrics and probes, no checkpoint)."""
        metrics = run["metrics"]
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (key, spec, status, label, created_at, started_at, finished_at, final, steps_done, "
                "probes) VALUES (?, ?, 'done', ?, ?, ?, ?, ?, ?, ?)",
                (spec.key(), spec.to_json(), run.get("label", ""), run.get("started_at") or 0.0, run.get("started_at"),
                 run.get("finished_at"), json.dumps(metrics[-1]) if metrics else None, run.get("steps_done", 0),
                 json.dumps(run["probes"]) if run.get("probes") is not None else None))
            conn.executemany("INSERT INTO metrics (run_id, step, data) VALUES (?, ?, ?)",
                             [(cursor.lastrowid, row["step"], json.dumps(row)) for row in metrics])
            return cursor.lastrowid

    def set_probes(self, run_id: int, probes: dict[str, Any]) -> None:
        with self._write() as conn:
            self._require(conn, run_id)
            conn.execute("UPDATE runs SET probes = ? WHERE id = ?", (json.dumps(probes), run_id))

    def fingerprint(self) -> str:
        """Changes whenever a run finishes or is probed, or a sweep is made or stopped: what claim verdicts are
        computed from."""
        with self._lock:
            runs = self._conn.execute("SELECT COUNT(*), COALESCE(MAX(finished_at), 0), COUNT(probes) FROM runs "
                                      "WHERE status = 'done'").fetchone()
            sweeps = self._conn.execute("SELECT COUNT(*), COALESCE(MAX(id), 0), COALESCE(MAX(stopped_at), 0) "
                                        "FROM sweeps").fetchone()
        return f"{runs[0]}:{runs[1]:.6f}:{runs[2]}:{sweeps[0]}:{sweeps[1]}:{sweeps[2]:.6f}"

    def steps_to_reach(self, run_id: int, target: float) -> int | None:
        """The first evaluated step at which the run's held-out exact accuracy reached `target` (None: never).
        Remembered once the run has ended, since its metrics no longer change: sweep pages refresh every few
        seconds and every claim reads the same sweeps, and parsing all metrics is what costs."""
        from model.train import steps_to_reach  # the one definition of "reached"

        key = (run_id, target)
        if key in self._reached:
            return self._reached[key]
        record = self.get(run_id)
        reached = steps_to_reach(self.metrics(run_id), target)
        if record is not None and record.status in FINAL_STATUSES:
            self._reached[key] = reached
        return reached

    def size_mb(self) -> float:
        """The store's size on disk, its write-ahead log included."""
        files = [self.path, self.path.with_name(self.path.name + "-wal")]
        return sum(f.stat().st_size for f in files if f.exists()) / (1 << 20)

    def checkpoint(self, run_id: int) -> bytes | None:
        with self._reading(run_id), self._lock:
            row = self._conn.execute("SELECT data FROM checkpoints WHERE run_id = ?", (run_id,)).fetchone()
        return bytes(row["data"]) if row else None

    def get(self, run_id: int) -> RunRecord | None:
        """None when there is no such run; RunUnreadable when it cannot be read."""
        with self._reading(run_id):
            with self._lock:
                row = self._conn.execute(_SELECT_RUN + "WHERE id = ?", (run_id,)).fetchone()
            return self._record(row) if row else None

    def list(self, limit: int = 50, status: str | None = None) -> list[RunRecord]:
        """Newest first (by id, which never ties, unlike created_at)."""
        if status is not None:
            _check_status(status, STATUSES)
        with self._lock:
            rows = self._conn.execute(_SELECT_RUN + "WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2",
                                      (status, limit)).fetchall()
        records = []
        for row in rows:
            try:
                records.append(self._record(row))
            except RunUnreadable as error:  # left out, so that one damaged run does not hide the others
                log.warning("%s", error)
        return records


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that only reads. A store in WAL mode whose directory cannot be written has no -shm file to
    share, and SQLite cannot open it read-only; opened as immutable it can still be read."""
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    for options in ("", "&immutable=1"):
        conn = sqlite3.connect(uri + options, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if options:
                raise
    raise AssertionError("unreachable")
