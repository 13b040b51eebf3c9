"""Opening the server's run store, which never stops the app: a damaged store is moved aside and a new one
started; a store or data directory that cannot be written is opened read-only (or not at all), and every write
then raises StoreNotWritable saying why."""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from app.lab.store import RunStore, connect_read_only

STORE_FILE = "runs.sqlite3"  # in the data directory
DATA_DIR_SETTING = "ADDNORM_DATA_DIR"
SIDE_FILES = ("-wal", "-shm")  # SQLite's files beside the store, which belong to it
log = logging.getLogger(__name__)

SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26  # primary result codes of a damaged file


def _is_damage(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)
    return any(words in str(error) for words in ("file is not a database", "malformed"))


@dataclass
class OpenedStore:
    store: RunStore  # read-only (store.read_only says why) when the store or its directory cannot be written
    notice: str | None = None  # what was done at start, to say once: a damaged store was moved aside


def open_store(data_dir: Path) -> OpenedStore:
    """The run store in `data_dir`, as usable as the file and the directory allow; logs what is wrong in one
    line naming ADDNORM_DATA_DIR and the path.

    - a damaged store (PRAGMA quick_check, "file is not a database", "database disk image is malformed") is
      renamed with a timestamp, together with its -wal and -shm files, and a new, empty one is started;
    - a store that exists but cannot be written (read-only file or directory) is opened read-only;
    - a data directory that cannot be used (cannot be created, is a file, is not writable) and holds no store
      gives an empty store in memory that refuses every write.
    """
    data_dir = Path(data_dir)
    path = data_dir / STORE_FILE
    where = f"{DATA_DIR_SETTING}={data_dir}"
    unusable = _why_unusable(data_dir)  # the directory: None when a store can be written there
    notice = None
    damage = _damage(path)
    if damage is not None:
        if unusable is not None:
            return _without_store(f"the run store {path} is damaged ({damage}) and cannot be moved aside: {where} "
                                  f"{unusable}; training is off")
        try:
            moved = _move_aside(path)
        except OSError as error:
            return _without_store(f"the run store {path} is damaged ({damage}) and could not be moved aside "
                                  f"({error}); training is off ({where})")
        notice = (f"the run store {path} was damaged ({damage}); it was moved to {moved} and a new, empty store "
                  f"was started ({where})")
        log.error("%s", notice)
    if unusable is not None:
        if not _is_file(path):
            return _without_store(f"{where} {unusable}: training is off and no runs are kept (the run store would "
                                  f"be {path})")
        return _read_only(path, f"{where} {unusable}: the runs in {path} are shown read-only; training is off")
    try:
        return OpenedStore(RunStore(path), notice)
    except sqlite3.OperationalError as error:
        if not _is_file(path) or path.stat().st_size == 0:
            return _without_store(f"the run store {path} cannot be opened ({error}); training is off ({where})")
        return _read_only(path, f"the run store {path} cannot be written ({error}): its runs are shown read-only; "
                                f"training is off ({where})")
    except (sqlite3.Error, OSError, RuntimeError) as error:
        return _without_store(f"the run store {path} cannot be used ({error}); training is off ({where})")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _why_unusable(data_dir: Path) -> str | None:
    """Why no store can be written in the data directory, or None when one can."""
    try:
        if data_dir.exists() and not data_dir.is_dir():
            return "is a file, not a directory"
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot be created ({error.strerror or error})"
    try:  # a real write: permissions, a read-only file system and root all answer it correctly
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as error:
        return f"is not writable ({error.strerror or error})"
    return None


def _damage(path: Path) -> str | None:
    """Why the store file is damaged, or None (no file, an empty one, or one that passes PRAGMA quick_check).
    Checked on a connection of its own, so the store's connection starts with nothing cached."""
    try:
        if not path.is_file() or path.stat().st_size == 0:  # SQLite takes an empty file for an empty database
            return None
    except OSError:
        return None
    started = time.monotonic()
    try:
        conn = connect_read_only(path)
    except sqlite3.DatabaseError as error:
        return str(error) if _is_damage(error) else None  # other failures are the opening's to report
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as error:
        return str(error) if _is_damage(error) else None
    finally:
        conn.close()
    log.info("quick_check of %s took %.1f s", path, time.monotonic() - started)
    if problems == ["ok"]:
        return None
    return "quick_check: " + "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")


def _move_aside(path: Path) -> Path:
    """Rename the store and its -wal and -shm files with a timestamp (runs.damaged-20250101-120000.sqlite3 and
    its -wal); nothing is deleted. The side files go first, so that none is left to be read with a new store."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = path.with_name(f"{path.stem}.damaged-{stamp}{f'-{n}' if n else ''}{path.suffix}")
        if not any(Path(f"{target}{suffix}").exists() for suffix in ("", *SIDE_FILES)):
            break
    for suffix in (*SIDE_FILES, ""):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(f"{target}{suffix}")
    return target


def _read_only(path: Path, why: str) -> OpenedStore:
    try:
        store = RunStore(path, read_only=True)
    except (sqlite3.Error, OSError, RuntimeError) as error:
        return _without_store(f"{why}; it cannot be read either ({error})")
    store.refuse_writes(why)
    log.error("%s", why)
    return OpenedStore(store)


def _without_store(why: str) -> OpenedStore:
    """An empty store in memory that refuses every write: the pages that list runs show none."""
    store = RunStore(Path(":memory:"))
    store.refuse_writes(why)
    log.error("%s", why)
    return OpenedStore(store)


def store_to_train_in(data_dir: Path) -> RunStore:
    """For the command-line tools that train or save: the run store, or exit with open_store's one-line reason
    (naming ADDNORM_DATA_DIR and the path) when it cannot be written."""
    store = open_store(data_dir).store
    if not store.writable:
        store.close()
        raise SystemExit(f"addnorm: {store.read_only}")
    return store
