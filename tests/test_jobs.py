"""The job runner: real training in worker processes, bounded, queued, cancellable, replayed, and
never leaving a run "running" after a restart."""

import asyncio
import threading
import time

import pytest

from app.lab.jobs import LocalJobRunner, QueueFull
from app.lab.store import RunSpec, RunStore
from model.checkpoint import load_checkpoint
from model.config import Switches
from model.tasks import get_task
from model.train import TrainConfig, model_config_for


def spec(steps=20, seed=0) -> RunSpec:
    task = get_task("copy")
    config = model_config_for(task, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1)
    train = TrainConfig(task="copy", steps=steps, batch_size=16, eval_every=10, eval_size=20, seed=seed)
    return RunSpec("copy", config.to_dict(), Switches(norm_position="pre").to_dict(), train.to_dict())


@pytest.fixture
def runner(tmp_path):
    r = LocalJobRunner(RunStore(tmp_path / "runs.sqlite3"), workers=1, max_queue=3, disconnect_grace_s=0.3)
    r.start()
    yield r
    r.stop()


def wait_for(predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    raise AssertionError("timed out")


def run_async(coroutine_function):
    """asyncio.run in a thread of its own: Playwright's sync API may hold this thread's event loop."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=asyncio.run(coroutine_function())))
    thread.start()
    thread.join()
    return result.get("value")


def collect(runner, run_id):
    async def go():
        return [e async for e in runner.events(run_id)]

    return run_async(go)


def test_a_run_trains_streams_its_metrics_and_stores_a_checkpoint(runner):
    record, replayed = runner.submit(spec(), "A")
    assert not replayed and record.status == "queued"
    events = collect(runner, record.id)
    steps = [row["step"] for e in events if e.kind == "metrics" for row in e.data]
    assert steps == list(range(1, 21))
    assert events[-1].kind == "done"
    stored = runner.store.get(record.id)
    assert stored.status == "done" and stored.steps_done == 20 and stored.label == "A"
    model, meta = load_checkpoint(runner.store.checkpoint(record.id))
    assert meta["train_config"]["steps"] == 20 and model.config.d_model == 16


def test_the_same_settings_replay_the_stored_run(runner):
    first, _ = runner.submit(spec())
    collect(runner, first.id)
    again, replayed = runner.submit(spec())
    assert replayed and again.id == first.id
    other, replayed = runner.submit(spec(seed=1))
    assert not replayed and other.id != first.id
    events = collect(runner, first.id)  # a finished run streams its stored metrics, then its status
    assert [e.kind for e in events] == ["metrics", "done"]


def test_concurrency_is_bounded_and_the_queue_has_positions(runner):
    ids = [runner.submit(spec(steps=60, seed=s))[0].id for s in range(3)]
    wait_for(lambda: runner.store.get(ids[0]).status == "running")
    assert runner.queue_position(ids[1]) == 1 and runner.queue_position(ids[2]) == 2
    seen_running = set()
    while any(runner.store.get(i).status in ("queued", "running") for i in ids):
        running = [i for i in ids if runner.store.get(i).status == "running"]
        assert len(running) <= 1
        seen_running.update(running)
        time.sleep(0.02)
    assert [runner.store.get(i).status for i in ids] == ["done"] * 3


def test_a_full_queue_is_refused_before_any_work(runner):
    first, _ = runner.submit(spec(steps=2000))
    wait_for(lambda: runner.store.get(first.id).status == "running")
    for s in range(1, 4):  # three wait: the limit
        runner.submit(spec(steps=2000, seed=s))
    with pytest.raises(QueueFull, match="the limit is 3"):
        runner.submit(spec(steps=2000, seed=99))


def test_cancel_stops_a_running_job_between_steps(runner):
    record, _ = runner.submit(spec(steps=5000))
    wait_for(lambda: runner.store.get(record.id).steps_done > 0)
    assert runner.cancel(record.id)
    wait_for(lambda: runner.store.get(record.id).status == "cancelled")
    assert 0 < runner.store.get(record.id).steps_done < 5000


def test_cancel_of_a_waiting_job_finishes_it_at_once(runner):
    first, _ = runner.submit(spec(steps=5000))
    waiting, _ = runner.submit(spec(steps=5000, seed=1))
    assert runner.cancel(waiting.id)
    assert runner.store.get(waiting.id).status == "cancelled"
    runner.cancel(first.id)


def test_a_run_nobody_watches_any_more_is_cancelled(runner):
    record, _ = runner.submit(spec(steps=5000))

    async def watch_briefly():
        async for event in runner.events(record.id):
            if event.kind == "metrics":
                return  # the client goes away

    run_async(watch_briefly)
    wait_for(lambda: runner.store.get(record.id).status == "cancelled", timeout=30)


def test_after_a_restart_no_run_is_left_running(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    record = store.create(spec())
    store.mark_running(record.id)
    store.close()
    runner = LocalJobRunner(RunStore(tmp_path / "runs.sqlite3"))
    runner.start()
    try:
        stored = runner.store.get(record.id)
        assert stored.status == "failed" and "interrupted" in stored.error
    finally:
        runner.stop()


def test_a_run_whose_page_never_connects_is_cancelled(tmp_path):
    runner = LocalJobRunner(RunStore(tmp_path / "runs.sqlite3"), connect_timeout_s=0.5)
    runner.start()
    try:
        record, _ = runner.submit(spec(steps=5000))
        wait_for(lambda: runner.store.get(record.id).status == "cancelled", timeout=30)
    finally:
        runner.stop()
