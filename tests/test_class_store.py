"""The class store and its live watchers, without a server: the rules that hold inside a write's transaction,
the store surviving a reopen, join codes, nicknames, and one watcher per class however many screens follow it."""

import asyncio
import sqlite3
import threading
import time

import pytest
from helpers import run_async

from app.classroom.codes import (
    ALPHABET,
    BadNickname,
    clean_nickname,
    digest,
    new_code,
    normal_code,
    secret_matches,
    shown_code,
)
from app.classroom.live import ClassHub
from app.classroom.store import ClassStore, Refused
from app.classroom.teacher_routes import csv_cell


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    with ClassStore(tmp_path / "classes.sqlite", clock=Clock()) as store:
        yield store


def new_class(store, hours=4.0, max_open=20, **limits):
    return store.create_class("residual", "question", digest("secret"), hours, max_open, **limits)


def test_codes_are_eight_unambiguous_characters_and_read_back_however_typed():
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200 and all(len(c) == 8 and set(c) <= set(ALPHABET) for c in codes)
    assert not set("01OIL") & set(ALPHABET)
    code = new_code()
    assert normal_code(shown_code(code).lower()) == code
    assert normal_code(f" {code[:4]}-{code[4:]} ") == code
    assert normal_code("0000OOOO") is None and normal_code(code + "X") is None and normal_code("") is None


def test_secrets_are_compared_by_digest():
    assert secret_matches("secret", digest("secret"))
    assert not secret_matches("Secret", digest("secret")) and not secret_matches("", digest(""))
    assert not secret_matches(None, digest("secret"))


def test_nicknames_are_trimmed_limited_and_free_of_invisible_characters():
    assert clean_nickname("  Ada   Lovelace ") == "Ada Lovelace"
    assert clean_nickname(None) == "" and clean_nickname("小明") == "小明"
    assert clean_nickname("<script>") == "<script>"  # shown escaped, not refused
    for bad in ("x" * 25, "evil\u202egnp", "a\x00b", "tab\there"[:3] + "\x07"):
        with pytest.raises(BadNickname):
            clean_nickname(bad)


def test_formula_cells_are_defused_in_the_csv():
    assert [csv_cell(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "Ada", 3, None)] == \
        ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "Ada", "3", ""]


def test_an_answer_can_change_until_the_reveal_then_it_is_locked(store):
    row = new_class(store)
    store.set_step(row.id, 1, "gradient-highway")
    ada = store.join(row.id, digest("a"), "Ada", 200)
    bob = store.join(row.id, digest("b"), "", 200)
    assert (ada.number, bob.number) == (1, 2)
    store.answer(row.id, ada.id, "gradient-highway", "a")
    store.answer(row.id, ada.id, "gradient-highway", "c")  # changed her mind
    store.answer(row.id, bob.id, "gradient-highway", "b")
    assert store.counts(row.id, "gradient-highway") == {"c": 1, "b": 1}
    assert store.snapshot(row.id).answered == 2
    with pytest.raises(Refused) as refused:
        store.answer(row.id, ada.id, "question", "a")  # a step the class has left
    assert refused.value.reason == "moved_on"
    with pytest.raises(Refused) as refused:
        store.save_result(row.id, "gradient-highway", {"status": "resolved"})
    assert refused.value.reason == "not_revealed"
    store.reveal(row.id, "gradient-highway")
    with pytest.raises(Refused) as refused:
        store.answer(row.id, bob.id, "gradient-highway", "c")
    assert refused.value.reason == "locked"
    assert store.answer_of(bob.id, "gradient-highway") == "b"


def test_limits_on_students_and_open_classes(store):
    row = new_class(store, max_open=2)
    new_class(store, max_open=2)
    with pytest.raises(Refused) as refused:
        new_class(store, max_open=2)
    assert refused.value.reason == "too_many_open" and refused.value.values == {"limit": 2}
    store.close_class(row.id)
    third = new_class(store, max_open=2)  # a closed class makes room
    store.join(third.id, digest("1"), "", 2)
    store.join(third.id, digest("2"), "", 2)
    with pytest.raises(Refused) as refused:
        store.join(third.id, digest("3"), "", 2)
    assert refused.value.reason == "full"


def test_an_expired_or_closed_class_takes_no_joins_or_answers(store):
    row = new_class(store, hours=1)
    student = store.join(row.id, digest("a"), "", 200)
    store.clock.now += 3600
    for act in (lambda: store.join(row.id, digest("b"), "", 200),
                lambda: store.answer(row.id, student.id, "question", "a")):
        with pytest.raises(Refused) as refused:
            act()
        assert refused.value.reason == "expired"
    store.clock.now -= 3600
    store.close_class(row.id)
    with pytest.raises(Refused) as refused:
        store.join(row.id, digest("b"), "", 200)
    assert refused.value.reason == "closed"


def test_wrong_codes_are_counted_per_address_and_wait_out_the_minute(store):
    row = new_class(store)
    for _ in range(3):
        assert store.lookup("XXXXXXXX", "10.0.0.1", 3) == (None, None)
    assert store.lookup(row.code, "10.0.0.1", 3) == (None, 60)  # the right code too: no guessing on
    assert store.lookup(row.code, "10.0.0.2", 3) == (row, None)  # another address
    assert store.lookup(None, "10.0.0.2", 3) == (None, None)
    store.clock.now += 61
    assert store.lookup(row.code, "10.0.0.1", 3) == (row, None)


def test_everything_survives_reopening_the_file(tmp_path):
    path = tmp_path / "classes.sqlite"
    with ClassStore(path) as store:
        row = new_class(store)
        store.set_step(row.id, 1, "gradient-highway")
        student = store.join(row.id, digest("token"), "Ada", 200)
        store.answer(row.id, student.id, "gradient-highway", "c")
        store.reveal(row.id, "gradient-highway")
        store.save_result(row.id, "gradient-highway", {"status": "resolved", "choice": "c"})
    with ClassStore(path) as store:
        again = store.lookup(row.code, "x", 10)[0]
        assert again.step_id == "gradient-highway" and again.version == row.version + 5
        assert store.student(row.id, digest("token")).nickname == "Ada"
        assert store.answers(row.id)[0]["choice"] == "c"
        assert store.step_state(row.id, "gradient-highway").result == {"status": "resolved", "choice": "c"}


def test_one_watcher_per_class_wakes_every_screen_with_one_query_per_poll(store):
    row = new_class(store)
    store.set_step(row.id, 1, "gradient-highway")
    students = [store.join(row.id, digest(str(i)), "", 200) for i in range(20)]
    polls = []
    version = store.version
    store.version = lambda class_id: polls.append(class_id) or version(class_id)

    async def scenario():
        hub = ClassHub(store, poll_s=0.02)
        seen = [[] for _ in range(30)]

        async def screen(i):
            async for snapshot, stage in hub.follow(row.id):
                seen[i].append((snapshot.answered, stage))
                if snapshot.answered == len(students):
                    return

        screens = [asyncio.create_task(screen(i)) for i in range(30)]
        await asyncio.sleep(0.1)
        assert hub.watching() == 1
        polls_before, started = len(polls), time.monotonic()
        answering = threading.Thread(target=lambda: [store.answer(row.id, s.id, "gradient-highway", "a")
                                                     for s in students])
        answering.start()
        await asyncio.wait_for(asyncio.gather(*screens), timeout=10)
        answering.join()
        rounds, took = len(polls) - polls_before, time.monotonic() - started
        await asyncio.sleep(0.05)
        assert hub.watching() == 0  # the last screen gone, the watcher stops
        await hub.close()
        return seen, rounds, took

    seen, rounds, took = run_async(scenario())
    for screen in seen:
        assert screen[0][0] == 0 and screen[-1] == (20, "1:open:")
        assert [n for n, _ in screen] == sorted(n for n, _ in screen)
    # one query per poll, not one per screen: 30 watchers would make 30 times as many
    assert 1 <= rounds <= took / 0.02 + 2, (rounds, took)
    assert set(polls) == {row.id}


def test_starts_and_joins_are_counted_per_address_and_locked_joins_are_refused(store):
    for _ in range(2):
        new_class(store, address="10.0.0.1", starts_per_hour=2)
    with pytest.raises(Refused) as refused:
        new_class(store, address="10.0.0.1", starts_per_hour=2)
    assert refused.value.reason == "too_many_starts" and refused.value.values == {"seconds": 3600}
    row = new_class(store, address="10.0.0.2", starts_per_hour=2)  # another address
    store.join(row.id, digest("a"), "", 200, "10.0.0.1", 1)
    with pytest.raises(Refused) as refused:
        store.join(row.id, digest("b"), "", 200, "10.0.0.1", 1)
    assert refused.value.reason == "too_many_joins" and refused.value.values == {"seconds": 60}
    store.clock.now += 60
    store.join(row.id, digest("b"), "", 200, "10.0.0.1", 1)
    store.lock_joins(row.id, True)
    assert store.by_code(row.code).joins_locked
    with pytest.raises(Refused) as refused:
        store.join(row.id, digest("c"), "", 200)
    assert refused.value.reason == "joins_locked"
    store.answer(row.id, store.student(row.id, digest("a")).id, "question", "a")  # who joined goes on
    store.lock_joins(row.id, False)
    store.join(row.id, digest("c"), "", 200)
    store.clock.now += 3600
    new_class(store, address="10.0.0.1", starts_per_hour=2)


def test_a_store_of_the_first_schema_gains_the_joins_lock(tmp_path):
    path = tmp_path / "classes.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""CREATE TABLE classes (id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT NOT NULL UNIQUE,
        teacher_digest TEXT NOT NULL, lesson TEXT NOT NULL, step_index INTEGER NOT NULL DEFAULT 0,
        step_id TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL, closed_at REAL,
        version INTEGER NOT NULL DEFAULT 0);
        INSERT INTO classes (code, teacher_digest, lesson, step_id, created_at, expires_at)
        VALUES ('ABCDEFGH', 'd', 'residual', 'question', 0, 1e12);
        PRAGMA user_version=1;""")
    conn.close()
    with ClassStore(path) as store:
        row = store.by_code("ABCDEFGH")
        assert row is not None and row.joins_locked is False
        store.lock_joins(row.id, True)
        assert store.by_code("ABCDEFGH").joins_locked
