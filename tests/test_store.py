"""The run store against a real SQLite file in tmp_path: lifecycle, replay lookup, persistence, threads."""

import hashlib
import json
import logging
import re
import sqlite3
import threading
from contextlib import closing

import pytest
from helpers import spec_with

from app.lab.runs import INTERRUPTED, RunSpec
from app.lab.store import SCHEMA_VERSION, RunStore
from model.config import TrainConfig


def make_spec(seed: int = 0, residual: bool = True, task: str = "reverse") -> RunSpec:
    return spec_with(task, seed=seed, residual=residual)


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as run_store:
        yield run_store


def test_spec_key_is_canonical_and_sensitive():
    spec = make_spec()
    data = json.loads(spec.to_json())
    shuffled = RunSpec.from_json(json.dumps({k: dict(reversed(v.items())) if isinstance(v, dict) else v
                                             for k, v in reversed(data.items())}, indent=1))
    assert len(spec.key()) == 16 and int(spec.key(), 16) >= 0
    assert shuffled.key() == spec.key() and shuffled == spec
    assert make_spec(seed=1).key() != spec.key()
    assert make_spec(residual=False).key() != spec.key()


def test_a_stored_spec_keeps_its_key_where_the_code_has_since_added_a_setting():
    # a spec written before a setting existed names no value for it: the typed config reads the default, and the
    # key stays the stored one, also for each seed (with_seed edits the stored text), so a stored sweep's
    # items still find their finished runs
    data = json.loads(make_spec().to_json())
    del data["train_config"]["warmup_steps"]
    old = RunSpec.from_json(json.dumps(data))
    assert old.train.warmup_steps == TrainConfig().warmup_steps
    stored_text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert old.key() == hashlib.sha256(stored_text.encode()).hexdigest()[:16]
    assert old.key() != make_spec().key()
    data["train_config"]["seed"] = 4
    assert old.with_seed(4).key() == RunSpec.from_json(json.dumps(data)).key()
    assert old.with_seed(4).train.seed == 4


def test_a_spec_that_is_not_one_is_refused():
    good = json.loads(make_spec().to_json())
    for bad in ({**good, "extra": 1}, {**good, "task": "copy"}, {**good, "switches": {"norm": "group"}}):
        with pytest.raises(ValueError):
            RunSpec.from_json(json.dumps(bad))


def test_create_is_queued(store):
    record = store.create(make_spec(), label="A: residual on")
    assert record.status == "queued"
    assert record.label == "A: residual on"
    assert record.key == make_spec().key()
    assert record.spec == make_spec()
    assert record.started_at is None and record.finished_at is None and record.error is None
    assert record.final is None and record.steps_done == 0 and record.has_checkpoint is False
    assert store.get(record.id) == record
    assert store.get(record.id + 1000) is None


def test_mark_running(store):
    run_id = store.create(make_spec()).id
    store.mark_running(run_id)
    record = store.get(run_id)
    assert record.status == "running"
    assert record.started_at is not None and record.started_at >= record.created_at


def test_add_metrics_batches_and_upserts(store):
    run_id = store.create(make_spec()).id
    store.add_metrics(run_id, [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}])
    store.add_metrics(run_id, [{"step": 3, "loss": 1.5, "accuracy": 0.1}, {"step": 4, "loss": 1.0}])
    # The same step again replaces the row instead of duplicating it.
    store.add_metrics(run_id, [{"step": 2, "loss": 1.9}])
    assert store.metrics(run_id) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 1.9},
                                     {"step": 3, "loss": 1.5, "accuracy": 0.1}, {"step": 4, "loss": 1.0}]
    store.add_metrics(run_id, [])  # an empty batch changes nothing
    record = store.get(run_id)
    assert record.steps_done == 4
    assert record.final == {"step": 4, "loss": 1.0}


def test_diverged_losses_round_trip(store):
    run_id = store.create(make_spec()).id
    store.add_metrics(run_id, [{"step": 1, "loss": float("nan"), "grad_norm": float("inf")}])
    (row,) = store.metrics(run_id)
    assert row["loss"] != row["loss"] and row["grad_norm"] == float("inf")


def test_final_is_the_highest_step_even_if_batches_arrive_out_of_order(store):
    run_id = store.create(make_spec()).id
    store.add_metrics(run_id, [{"step": 10, "loss": 0.5}])
    store.add_metrics(run_id, [{"step": 5, "loss": 0.9}])
    assert store.get(run_id).steps_done == 10
    assert store.get(run_id).final == {"step": 10, "loss": 0.5}


def test_metrics_after_step_in_step_order(store):
    run_id = store.create(make_spec()).id
    store.add_metrics(run_id, [{"step": s, "loss": 1 / s} for s in (5, 3, 1, 4, 2)])
    assert [row["step"] for row in store.metrics(run_id)] == [1, 2, 3, 4, 5]
    assert [row["step"] for row in store.metrics(run_id, after_step=3)] == [4, 5]
    assert store.metrics(run_id, after_step=5) == []


def test_add_metrics_rejects_rows_without_integer_step(store):
    run_id = store.create(make_spec()).id
    with pytest.raises(ValueError, match="step"):
        store.add_metrics(run_id, [{"loss": 1.0}])
    with pytest.raises(ValueError, match="step"):
        store.add_metrics(run_id, [{"step": "3", "loss": 1.0}])
    assert store.metrics(run_id) == []


def test_unknown_run_raises_key_error(store):
    with pytest.raises(KeyError):
        store.mark_running(99)
    with pytest.raises(KeyError):
        store.add_metrics(99, [{"step": 1}])
    with pytest.raises(KeyError):
        store.finish(99, "done")


def test_finish_done_keeps_checkpoint(store):
    run_id = store.create(make_spec()).id
    store.mark_running(run_id)
    blob = bytes(range(256)) * 40
    store.finish(run_id, "done", checkpoint=blob)
    record = store.get(run_id)
    assert record.status == "done" and record.has_checkpoint and record.error is None
    assert record.finished_at is not None
    assert store.checkpoint(run_id) == blob


def test_finish_failed_keeps_error_and_no_checkpoint(store):
    run_id = store.create(make_spec()).id
    store.finish(run_id, "cancelled", error="cancelled by the user")
    record = store.get(run_id)
    assert record.status == "cancelled" and record.error == "cancelled by the user"
    assert record.has_checkpoint is False
    assert store.checkpoint(run_id) is None


def test_find_done_matches_identical_spec_only(store):
    assert store.find_done(make_spec()) is None
    done = store.create(make_spec())
    store.finish(done.id, "done", checkpoint=b"weights")
    # A freshly built, equal spec finds it; any difference in seed or switches does not.
    assert store.find_done(make_spec()).id == done.id
    assert store.find_done(make_spec(seed=1)) is None
    assert store.find_done(make_spec(residual=False)) is None
    failed = store.create(make_spec(seed=2))
    store.finish(failed.id, "failed", checkpoint=b"partial", error="loss became NaN")
    assert store.find_done(make_spec(seed=2)) is None
    no_checkpoint = store.create(make_spec(seed=3))
    store.finish(no_checkpoint.id, "done")
    assert store.find_done(make_spec(seed=3)) is None


def test_find_done_returns_the_newest(store):
    first, second = store.create(make_spec()), store.create(make_spec())
    store.finish(first.id, "done", checkpoint=b"one")
    store.finish(second.id, "done", checkpoint=b"two")
    assert store.find_done(make_spec()).id == second.id


def test_everything_persists_across_reopen(tmp_path):
    path = tmp_path / "nested" / "dir" / "runs.sqlite"  # parent directories are created
    with RunStore(path) as first:
        run_id = first.create(make_spec(), label="B: residual off").id
        first.mark_running(run_id)
        first.add_metrics(run_id, [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}])
        first.finish(run_id, "done", checkpoint=b"\x00weights\xff")
        before = first.get(run_id)
    with RunStore(path) as second:
        assert second.get(run_id) == before
        assert second.metrics(run_id) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]
        assert second.checkpoint(run_id) == b"\x00weights\xff"
        assert second.find_done(make_spec()).id == run_id


def test_recover_fails_unfinished_runs_only(tmp_path):
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as first:
        queued = first.create(make_spec(seed=1)).id
        running = first.create(make_spec(seed=2)).id
        first.mark_running(running)
        done = first.create(make_spec(seed=3)).id
        first.finish(done, "done", checkpoint=b"w")
    with RunStore(path) as second:
        assert second.recover() == 2
        for run_id in (queued, running):
            record = second.get(run_id)
            assert record.status == "failed" and record.error == INTERRUPTED and record.finished_at is not None
        assert second.get(done).status == "done" and second.get(done).error is None
        assert second.recover() == 0
    assert INTERRUPTED == "interrupted: the server stopped before this run finished"


def test_wal_mode_and_schema_version(store):
    # A separate connection sees it too: WAL is a property of the file, not of the store's connection.
    with closing(sqlite3.connect(store.path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "runs.sqlite"
    with closing(sqlite3.connect(path)) as raw:
        raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match=f"schema version {SCHEMA_VERSION + 1}"):
        RunStore(path)


def test_a_store_from_before_sweeps_could_be_stopped_is_upgraded(tmp_path):
    path = tmp_path / "runs.sqlite"
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("CREATE TABLE sweeps (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
                    "items TEXT NOT NULL, created_at REAL NOT NULL)")
        raw.execute("INSERT INTO sweeps (name, items, created_at) VALUES ('old', '[]', 0)")
        raw.execute("PRAGMA user_version=1")
        raw.commit()
    with RunStore(path) as store:
        assert store.sweep(1)["stopped_at"] is None
        store.stop_sweep(1)
        assert store.sweep(1)["stopped_at"] > 0


def test_concurrent_add_metrics_all_land(store):
    run_id = store.create(make_spec()).id
    errors: list[BaseException] = []

    def write(thread_index: int) -> None:
        try:
            for i in range(50):
                step = thread_index * 50 + i + 1
                store.add_metrics(run_id, [{"step": step, "loss": 1.0 / step}])
                store.metrics(run_id, after_step=step - 1)  # readers interleave with writers
        except BaseException as error:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [row["step"] for row in store.metrics(run_id)] == list(range(1, 201))
    assert store.get(run_id).steps_done == 200


def test_invalid_status_raises(store):
    run_id = store.create(make_spec()).id
    with pytest.raises(ValueError, match=re.escape("done | failed | cancelled")):
        store.finish(run_id, "running")
    with pytest.raises(ValueError, match="'finished'"):
        store.finish(run_id, "finished")
    with pytest.raises(ValueError, match=re.escape("queued | running | done")):
        store.list(status="bogus")
    assert store.get(run_id).status == "queued"


def test_list_newest_first_with_limit_and_status(store):
    ids = [store.create(make_spec(seed=s), label=f"run {s}").id for s in range(5)]
    store.finish(ids[1], "done", checkpoint=b"w")
    store.finish(ids[3], "failed", error="boom")
    assert [r.id for r in store.list()] == ids[::-1]
    assert [r.id for r in store.list(limit=2)] == [ids[4], ids[3]]
    assert [r.id for r in store.list(status="queued")] == [ids[4], ids[2], ids[0]]
    assert [r.id for r in store.list(status="done")] == [ids[1]]
    assert store.list(status="running") == []


def test_steps_to_reach_follows_a_running_run_and_is_kept_once_it_ended(store):
    run_id = store.create(make_spec()).id
    store.mark_running(run_id)
    store.add_metrics(run_id, [{"step": 10, "heldout_seq_accuracy": 0.5}])
    assert store.steps_to_reach(run_id, 0.99) is None  # not yet: still training
    store.add_metrics(run_id, [{"step": 20, "heldout_seq_accuracy": 0.995}])
    assert store.steps_to_reach(run_id, 0.99) == 20
    store.finish(run_id, "done")
    assert store.steps_to_reach(run_id, 0.99) == 20 and (run_id, 0.99) in store._reached
    assert store.steps_to_reach(run_id, 0.4) == 10  # each target on its own


def test_a_store_from_before_runs_were_probed_is_upgraded(tmp_path):
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        run_id = store.create(make_spec()).id
    with closing(sqlite3.connect(path)) as raw:  # as version 2 made it: no probes column
        raw.execute("ALTER TABLE runs DROP COLUMN probes")
        raw.execute("PRAGMA user_version=2")
        raw.commit()
    with RunStore(path) as store:
        assert store.get(run_id).probes is None
        store.set_probes(run_id, {"long_inputs": {"seq_accuracy": 0.5}})
        assert store.get(run_id).probes == {"long_inputs": {"seq_accuracy": 0.5}}


def test_an_imported_run_keeps_its_metrics_and_probes_without_a_checkpoint(store):
    rows = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0, "heldout_seq_accuracy": 0.5}]
    run_id = store.import_run(make_spec(), {"metrics": rows, "steps_done": 2, "probes": {"p": 1}, "label": "x"})
    record = store.get(run_id)
    assert record.status == "done" and record.final == rows[-1] and record.probes == {"p": 1}
    assert store.metrics(run_id) == rows and not record.has_checkpoint
    assert store.find_latest(make_spec()).id == run_id and store.find_done(make_spec()) is None  # not replayable


def test_a_sweep_item_whose_spec_cannot_be_read_is_left_out_not_fatal(store, caplog):
    # e.g. a sweep stored before a task was removed: the sweep, its other items and the server still load
    sweep_id = store.create_sweep("old", [{"variant": "a", "depth": 2, "spec": make_spec()},
                                          {"variant": "b", "depth": 2, "spec": make_spec(seed=1)}])
    with store._write() as conn:
        items = json.loads(conn.execute("SELECT items FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()[0])
        items[1]["spec"] = items[1]["spec"].replace('"task":"reverse"', '"task":"poetry"')
        conn.execute("UPDATE sweeps SET items = ? WHERE id = ?", (json.dumps(items), sweep_id))
    with caplog.at_level(logging.WARNING, logger="app.lab.store"):
        sweep = store.sweep(sweep_id)
    assert [i["variant"] for i in sweep["items"]] == ["a"] and sweep["unreadable"] == 1
    assert store.sweeps()[0]["unreadable"] == 1 and "cannot be read" in caplog.text
