"""The job runner on a real Ray instance: training tasks bounded, queued, cancellable, replayed, never
left "running" after a restart, and failed with a reason when their worker dies or the store fails."""

import asyncio
import threading
import time

import pytest

from app.lab.jobs import ABANDONED, JobRequest, QueueFull, RayJobRunner
from app.lab.runs import RunSpec
from app.lab.store import RunStore
from model.checkpoint import load_checkpoint
from model.config import Switches
from model.tasks import get_task
from model.train import TrainConfig, model_config_for


def spec(steps=20, seed=0) -> RunSpec:
    task = get_task("copy")
    config = model_config_for(task, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1)
    train = TrainConfig(task="copy", steps=steps, batch_size=16, eval_every=10, eval_size=20, seed=seed)
    return RunSpec(config, Switches(norm_position="pre"), train)


@pytest.fixture
def runner(tmp_path):
    r = RayJobRunner(RunStore(tmp_path / "runs.sqlite3"), max_queue=3, max_per_learner=3, disconnect_grace_s=0.3,
                     max_running=1)
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
    """asyncio.run in a thread of its own (Playwright's sync API may hold this thread's event loop); what it raised
    is raised here."""
    result = {}

    def run():
        try:
            result["value"] = asyncio.run(coroutine_function())
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


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
    assert set(stored.probes) == {"long_inputs"}  # measured on the trained model as the run ended


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
    while any(runner.store.get(i).status in ("queued", "running") for i in ids):
        assert sum(runner.store.get(i).status == "running" for i in ids) <= 1
        time.sleep(0.02)
    runs = [runner.store.get(i) for i in ids]
    assert [r.status for r in runs] == ["done"] * 3
    # one at a time, in the order queued: each started after the one before it finished
    for before, after in zip(runs, runs[1:], strict=False):
        assert before.started_at < before.finished_at <= after.started_at


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
    assert runner.store.get(record.id).error == ABANDONED


def test_after_a_restart_no_run_is_left_running(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    record = store.create(spec())
    store.mark_running(record.id)
    store.close()
    runner = RayJobRunner(RunStore(tmp_path / "runs.sqlite3"))
    runner.start()
    try:
        stored = runner.store.get(record.id)
        assert stored.status == "failed" and "interrupted" in stored.error
    finally:
        runner.stop()


def test_a_run_whose_page_never_connects_is_cancelled(tmp_path):
    runner = RayJobRunner(RunStore(tmp_path / "runs.sqlite3"), connect_timeout_s=0.5)
    runner.start()
    try:
        record, _ = runner.submit(spec(steps=5000))
        wait_for(lambda: runner.store.get(record.id).status == "cancelled", timeout=30)
    finally:
        runner.stop()


def test_a_and_b_are_queued_together_or_not_at_all(runner):
    first, _ = runner.submit(spec(steps=5000))
    wait_for(lambda: runner.store.get(first.id).status == "running")
    runner.submit(spec(steps=5000, seed=1))
    runner.submit(spec(steps=5000, seed=2))  # two of three queue places taken
    before = len(runner.store.list(limit=100))
    with pytest.raises(QueueFull):
        runner.submit_jobs([JobRequest(spec(steps=5000, seed=3)), JobRequest(spec(steps=5000, seed=4))])
    assert len(runner.store.list(limit=100)) == before  # neither A nor B was created
    for record in runner.store.list(limit=100):
        runner.cancel(record.id)


def test_one_learner_cannot_take_the_whole_queue(runner):
    runner.max_per_learner = 2
    for seed in range(2):
        runner.submit(spec(steps=5000, seed=seed), learner="ana")
    with pytest.raises(QueueFull, match="you already have 2"):
        runner.submit(spec(steps=5000, seed=5), learner="ana")
    other, replayed = runner.submit(spec(steps=5000, seed=6), learner="ben")  # another learner still gets a place
    assert not replayed and other.status == "queued"
    for record in runner.store.list(limit=100):
        runner.cancel(record.id)


def test_several_seeds_train_as_one_job_each_stored_as_its_own_run(runner):
    results = runner.submit_jobs([JobRequest(spec(steps=20), seeds=(0, 1, 2))])[0]
    ids = [record.id for record, replayed in results]
    assert len(set(ids)) == 3 and not any(replayed for _, replayed in results)
    wait_for(lambda: all(runner.store.get(i).status == "done" for i in ids))
    assert [runner.store.get(i).spec.train.seed for i in ids] == [0, 1, 2]
    assert all(runner.store.get(i).has_checkpoint and runner.store.get(i).steps_done == 20 for i in ids)
    alone, replayed = runner.submit(spec(steps=20, seed=1))
    assert replayed and alone.id == ids[1]  # a one-seed request finds that seed's run by its spec
