"""The class store: classes, their students, answers and measured results, in one SQLite file (WAL) in the data
directory, `classes.sqlite`. This module is the only code that touches it.

Everything a class is lives here, never only in a server process's memory: a class survives a restart, and
several server processes can serve one class (each polls `version`, which every change of a class bumps in the
same transaction; see live.py). The rules that must hold whatever another process does at the same moment (an
answer after the reveal, a student over the limit) are checked inside the write's transaction and refused with
`Refused(reason)`; sessions.py says what each reason means to the person refused.

One connection guarded by a lock, as in the run store: the web server's threads come and go, every query takes
well under a millisecond, and SQLite takes one writer at a time anyway. Callers on the event loop reach it
through a worker thread (sessions.in_thread), so a write waiting for another process's lock never stalls it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.classroom.codes import new_code

STORE_FILE = "classes.sqlite"
SCHEMA_VERSION = 2  # 2: classes.joins_locked, address_events
FAILURES_KEPT_S = 3600  # wrong join codes older than this are forgotten

_SCHEMA = """
CREATE TABLE IF NOT EXISTS classes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    code           TEXT NOT NULL UNIQUE,
    teacher_digest TEXT NOT NULL,          -- SHA-256 of the teacher's secret (never the secret)
    lesson         TEXT NOT NULL,
    step_index     INTEGER NOT NULL DEFAULT 0,
    step_id        TEXT NOT NULL,          -- the step at step_index (answers name it: none lands on the next)
    created_at     REAL NOT NULL,
    expires_at     REAL NOT NULL,
    closed_at      REAL,
    joins_locked   INTEGER NOT NULL DEFAULT 0,  -- the teacher stopped new students joining
    version        INTEGER NOT NULL DEFAULT 0  -- bumped by every change: what the live watchers poll
);
CREATE TABLE IF NOT EXISTS students (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    class_id     INTEGER NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
    number       INTEGER NOT NULL,         -- 1, 2, … in the class: an anonymous student's name
    token_digest TEXT NOT NULL UNIQUE,     -- SHA-256 of the token in the student's cookie
    nickname     TEXT NOT NULL DEFAULT '',
    joined_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS students_by_class ON students (class_id);
CREATE TABLE IF NOT EXISTS answers (
    student_id  INTEGER NOT NULL REFERENCES students (id) ON DELETE CASCADE,
    class_id    INTEGER NOT NULL,
    step        TEXT NOT NULL,
    choice      TEXT NOT NULL,
    answered_at REAL NOT NULL,
    PRIMARY KEY (student_id, step)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS answers_by_step ON answers (class_id, step);
CREATE TABLE IF NOT EXISTS steps (
    class_id    INTEGER NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
    step        TEXT NOT NULL,
    revealed_at REAL,                      -- answers lock and the distribution shows
    ran_at      REAL,
    result      TEXT,                      -- JSON: what the experiment measured (experiment.py)
    PRIMARY KEY (class_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS join_failures (
    address TEXT NOT NULL,
    at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS join_failures_by_address ON join_failures (address, at);
CREATE TABLE IF NOT EXISTS address_events (
    kind    TEXT NOT NULL,                 -- "start" (a class started), "join" (a student joined)
    address TEXT NOT NULL,
    at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS address_events_by_kind ON address_events (kind, address, at);
"""


class Refused(Exception):
    """A change the class's state does not allow: "closed", "expired", "full", "too_many_open", "moved_on" (the
    answer names a step the class has left), "locked" (answers are revealed), "not_revealed" (run before reveal),
    "joins_locked" (the teacher stopped new joins), "too_many_starts" and "too_many_joins" (one address did that
    too often; `seconds` says how long until it may again)."""

    def __init__(self, reason: str, **values: Any):
        super().__init__(reason)
        self.reason = reason
        self.values = values


@dataclass(frozen=True)
class ClassRow:
    id: int
    code: str
    teacher_digest: str
    lesson: str
    step_index: int
    step_id: str
    created_at: float
    expires_at: float
    closed_at: float | None
    version: int
    joins_locked: bool = False

    def ended(self, now: float) -> str | None:
        """Why the class takes no more joins or answers: "closed", "expired", or None while it is open."""
        return "closed" if self.closed_at is not None else "expired" if now >= self.expires_at else None


@dataclass(frozen=True)
class Student:
    id: int
    class_id: int
    number: int
    nickname: str
    joined_at: float


@dataclass(frozen=True)
class StepState:
    revealed_at: float | None = None
    ran_at: float | None = None
    result: dict | None = None


@dataclass(frozen=True)
class Snapshot:
    """What the live screens follow, read in one query: where the class is and how many answered."""

    version: int
    step_index: int
    step_id: str
    expires_at: float
    closed: bool
    joined: int
    answered: int
    revealed: bool
    ran: bool


def _class(row: sqlite3.Row | None) -> ClassRow | None:
    if row is None:
        return None
    fields = {k: row[k] for k in ClassRow.__dataclass_fields__}
    return ClassRow(**{**fields, "joins_locked": bool(fields["joins_locked"])})


def _student(row: sqlite3.Row | None) -> Student | None:
    return Student(**{k: row[k] for k in Student.__dataclass_fields__}) if row is not None else None


class ClassStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.clock = clock  # tests set it to move time on (expiry)
        # isolation_level=None: no implicit transactions, _write() opens each; timeout: wait for another process
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: never corrupt, at worst loses the last commit
            self._conn.execute("PRAGMA foreign_keys=ON")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"schema version {version}; this code knows up to {SCHEMA_VERSION}")
            with self._write() as conn:
                columns = {r[1] for r in conn.execute("PRAGMA table_info(classes)")}
                if columns and "joins_locked" not in columns:  # a store of schema 1
                    conn.execute("ALTER TABLE classes ADD COLUMN joins_locked INTEGER NOT NULL DEFAULT 0")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ClassStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock first, so the checks made inside hold until the commit
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def reading(self) -> Iterator[None]:
        """The reads inside see one state of the store, whatever another process commits meanwhile (a page read
        in several queries never mixes two steps of a class). Only reads: a write inside would fail."""
        with self._lock:
            if self._conn.in_transaction:  # already inside one
                yield
                return
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _open_class(self, conn: sqlite3.Connection, class_id: int) -> ClassRow:
        row = _class(conn.execute("SELECT * FROM classes WHERE id = ?", (class_id,)).fetchone())
        if row is None:
            raise KeyError(f"no class {class_id}")
        ended = row.ended(self.clock())
        if ended:
            raise Refused(ended)
        return row

    def _take(self, conn: sqlite3.Connection, kind: str, address: str | None, limit: int | None,
              window_s: float) -> None:
        """Count one `kind` from `address`, or refuse ("too_many_<kind>s", seconds) once it did `limit` within the
        window. Inside the caller's write, so several processes count together."""
        if address is None or limit is None:
            return
        now = self.clock()
        conn.execute("DELETE FROM address_events WHERE kind = ? AND at <= ?", (kind, now - window_s))
        count, oldest = conn.execute("SELECT count(*), min(at) FROM address_events WHERE kind = ? AND address = ?",
                                     (kind, address)).fetchone()
        if count >= limit:
            raise Refused(f"too_many_{kind}s", seconds=int(max(1.0, math.ceil(oldest + window_s - now))))
        conn.execute("INSERT INTO address_events (kind, address, at) VALUES (?, ?, ?)", (kind, address, now))

    @staticmethod
    def _bump(conn: sqlite3.Connection, class_id: int) -> None:
        conn.execute("UPDATE classes SET version = version + 1 WHERE id = ?", (class_id,))

    # ---- classes ----

    def create_class(self, lesson: str, first_step: str, teacher_digest: str, hours: float, max_open: int,
                     address: str | None = None, starts_per_hour: int | None = None) -> ClassRow:
        """A new class; refused when `max_open` are open, or when `address` started `starts_per_hour` within the
        hour (a class refused for either is not counted)."""
        now = self.clock()
        with self._write() as conn:
            (open_now,) = conn.execute("SELECT count(*) FROM classes WHERE closed_at IS NULL AND expires_at > ?",
                                       (now,)).fetchone()
            if open_now >= max_open:
                raise Refused("too_many_open", limit=max_open)
            self._take(conn, "start", address, starts_per_hour, 3600.0)
            for _ in range(20):  # a repeated code is a one-in-a-billion event; try another
                try:
                    cursor = conn.execute(
                        "INSERT INTO classes (code, teacher_digest, lesson, step_id, created_at, expires_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (new_code(), teacher_digest, lesson, first_step, now,
                                                      now + hours * 3600))
                    break
                except sqlite3.IntegrityError:
                    continue
            return _class(conn.execute("SELECT * FROM classes WHERE id = ?", (cursor.lastrowid,)).fetchone())

    def get_class(self, class_id: int) -> ClassRow | None:
        rows = self._read("SELECT * FROM classes WHERE id = ?", (class_id,))
        return _class(rows[0]) if rows else None

    def by_code(self, code: str | None) -> ClassRow | None:
        """The class with this code, counting nothing: for a request that proves it belongs to the class."""
        if code is None:
            return None
        rows = self._read("SELECT * FROM classes WHERE code = ?", (code,))
        return _class(rows[0]) if rows else None

    def lookup(self, code: str | None, address: str, limit: int, window_s: float = 60.0) -> tuple[ClassRow | None,
                                                                                                   float | None]:
        """(the class with this code, None), or (None, seconds to wait) once `address` has tried `limit` unknown
        codes within the window. An unknown code (or None: text that is no code) counts as one more try."""
        now = self.clock()
        with self._lock:
            count, oldest = self._conn.execute("SELECT count(*), min(at) FROM join_failures WHERE address = ? "
                                               "AND at > ?", (address, now - window_s)).fetchone()
            if count >= limit:
                return None, max(1.0, math.ceil(oldest + window_s - now))
            row = None
            if code is not None:
                row = _class(self._conn.execute("SELECT * FROM classes WHERE code = ?", (code,)).fetchone())
            if row is None:
                with self._write() as conn:
                    conn.execute("DELETE FROM join_failures WHERE at < ?", (now - FAILURES_KEPT_S,))
                    conn.execute("INSERT INTO join_failures (address, at) VALUES (?, ?)", (address, now))
            return row, None

    def set_step(self, class_id: int, index: int, step_id: str) -> None:
        with self._write() as conn:
            self._open_class(conn, class_id)
            conn.execute("UPDATE classes SET step_index = ?, step_id = ? WHERE id = ?", (index, step_id, class_id))
            self._bump(conn, class_id)

    def lock_joins(self, class_id: int, locked: bool) -> None:
        """Stop new students joining (`locked`), or let them again; who joined goes on as before."""
        with self._write() as conn:
            self._open_class(conn, class_id)
            conn.execute("UPDATE classes SET joins_locked = ? WHERE id = ?", (int(locked), class_id))
            self._bump(conn, class_id)

    def close_class(self, class_id: int) -> None:
        with self._write() as conn:
            conn.execute("UPDATE classes SET closed_at = coalesce(closed_at, ?) WHERE id = ?", (self.clock(), class_id))
            self._bump(conn, class_id)

    def version(self, class_id: int) -> int | None:
        rows = self._read("SELECT version FROM classes WHERE id = ?", (class_id,))
        return rows[0][0] if rows else None

    def snapshot(self, class_id: int) -> Snapshot | None:
        rows = self._read("""
            SELECT c.version, c.step_index, c.step_id, c.expires_at, c.closed_at IS NOT NULL AS closed,
                   (SELECT count(*) FROM students WHERE class_id = c.id) AS joined,
                   (SELECT count(*) FROM answers WHERE class_id = c.id AND step = c.step_id) AS answered,
                   s.revealed_at IS NOT NULL AS revealed, s.ran_at IS NOT NULL AS ran
            FROM classes c LEFT JOIN steps s ON s.class_id = c.id AND s.step = c.step_id WHERE c.id = ?""",
                          (class_id,))
        if not rows:
            return None
        r = rows[0]
        return Snapshot(r["version"], r["step_index"], r["step_id"], r["expires_at"], bool(r["closed"]), r["joined"],
                        r["answered"], bool(r["revealed"]), bool(r["ran"]))

    # ---- students ----

    def join(self, class_id: int, token_digest: str, nickname: str, max_students: int, address: str | None = None,
             joins_per_minute: int | None = None) -> Student:
        with self._write() as conn:
            row = self._open_class(conn, class_id)
            if row.joins_locked:
                raise Refused("joins_locked")
            (joined,) = conn.execute("SELECT count(*) FROM students WHERE class_id = ?", (class_id,)).fetchone()
            if joined >= max_students:
                raise Refused("full", limit=max_students)
            self._take(conn, "join", address, joins_per_minute, 60.0)
            cursor = conn.execute("INSERT INTO students (class_id, number, token_digest, nickname, joined_at) "
                                  "VALUES (?, ?, ?, ?, ?)",
                                  (class_id, joined + 1, token_digest, nickname, self.clock()))
            self._bump(conn, class_id)
            return _student(conn.execute("SELECT * FROM students WHERE id = ?", (cursor.lastrowid,)).fetchone())

    def student(self, class_id: int, token_digest: str) -> Student | None:
        rows = self._read("SELECT * FROM students WHERE class_id = ? AND token_digest = ?", (class_id, token_digest))
        return _student(rows[0]) if rows else None

    def students(self, class_id: int) -> list[Student]:
        return [_student(r) for r in self._read("SELECT * FROM students WHERE class_id = ? ORDER BY number",
                                                (class_id,))]

    # ---- answers and steps ----

    def answer(self, class_id: int, student_id: int, step_id: str, choice: str) -> None:
        """Set (or change) the student's answer at the class's current step, until the answers are revealed."""
        with self._write() as conn:
            row = self._open_class(conn, class_id)
            if row.step_id != step_id:
                raise Refused("moved_on", step=row.step_id)
            revealed = conn.execute("SELECT revealed_at FROM steps WHERE class_id = ? AND step = ?",
                                    (class_id, step_id)).fetchone()
            if revealed is not None and revealed[0] is not None:
                raise Refused("locked")
            conn.execute("INSERT INTO answers (student_id, class_id, step, choice, answered_at) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT (student_id, step) DO UPDATE SET choice = excluded.choice, "
                         "answered_at = excluded.answered_at", (student_id, class_id, step_id, choice, self.clock()))
            self._bump(conn, class_id)

    def answer_of(self, student_id: int, step_id: str) -> str | None:
        rows = self._read("SELECT choice FROM answers WHERE student_id = ? AND step = ?", (student_id, step_id))
        return rows[0][0] if rows else None

    def counts(self, class_id: int, step_id: str) -> dict[str, int]:
        rows = self._read("SELECT choice, count(*) FROM answers WHERE class_id = ? AND step = ? GROUP BY choice",
                          (class_id, step_id))
        return {choice: n for choice, n in rows}

    def answers(self, class_id: int) -> list[dict[str, Any]]:
        """Every answer of the class with its student, in the order given (for the CSV)."""
        rows = self._read("SELECT s.number, s.nickname, a.step, a.choice, a.answered_at FROM answers a "
                          "JOIN students s ON s.id = a.student_id WHERE a.class_id = ? "
                          "ORDER BY a.answered_at, s.number", (class_id,))
        return [dict(r) for r in rows]

    def step_state(self, class_id: int, step_id: str) -> StepState:
        rows = self._read("SELECT revealed_at, ran_at, result FROM steps WHERE class_id = ? AND step = ?",
                          (class_id, step_id))
        if not rows:
            return StepState()
        r = rows[0]
        return StepState(r["revealed_at"], r["ran_at"], json.loads(r["result"]) if r["result"] else None)

    def results(self, class_id: int) -> dict[str, dict]:
        """Each run step's result (the CSV marks answers right or wrong with it)."""
        rows = self._read("SELECT step, result FROM steps WHERE class_id = ? AND result IS NOT NULL", (class_id,))
        return {r["step"]: json.loads(r["result"]) for r in rows}

    def reveal(self, class_id: int, step_id: str) -> None:
        with self._write() as conn:
            row = self._open_class(conn, class_id)
            if row.step_id != step_id:
                raise Refused("moved_on", step=row.step_id)
            conn.execute("INSERT INTO steps (class_id, step, revealed_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (class_id, step) DO UPDATE "
                         "SET revealed_at = coalesce(revealed_at, excluded.revealed_at)",
                         (class_id, step_id, self.clock()))
            self._bump(conn, class_id)

    def save_result(self, class_id: int, step_id: str, result: dict) -> None:
        """The step's measured result, once: a second run (another click, another process) keeps the first."""
        with self._write() as conn:
            self._open_class(conn, class_id)
            state = conn.execute("SELECT revealed_at FROM steps WHERE class_id = ? AND step = ?",
                                 (class_id, step_id)).fetchone()
            if state is None or state[0] is None:
                raise Refused("not_revealed")
            conn.execute("UPDATE steps SET ran_at = ?, result = ? WHERE class_id = ? AND step = ? AND ran_at IS NULL",
                         (self.clock(), json.dumps(result), class_id, step_id))
            self._bump(conn, class_id)


def open_class_store(data_dir: Path) -> tuple[ClassStore | None, str | None]:
    """(the store, None), or (None, why not) naming ADDNORM_DATA_DIR and the path: classes then answer 503 and the
    rest of the app works on."""
    data_dir = Path(data_dir)
    path = data_dir / STORE_FILE
    where = f"ADDNORM_DATA_DIR={data_dir}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data_dir):  # a real write: permissions, read-only mounts and root alike
            pass
    except OSError as error:
        return None, f"class sessions are off: {where} cannot be written ({error.strerror or error})"
    try:
        return ClassStore(path), None
    except (sqlite3.Error, OSError) as error:
        return None, f"class sessions are off: the class store {path} cannot be used ({error}); {where}"
