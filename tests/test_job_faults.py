"""Faults on a real Ray instance: a worker killed mid-step or around its checkpoint, and a store that cannot
be written. Each run ends failed with a reason within seconds, and the next run trains normally."""

import os
import signal
from contextlib import suppress

import psutil
import pytest
from test_jobs import spec, wait_for

from app.lab.jobs import RayJobRunner
from app.lab.quotas import Quotas
from app.lab.runs import FINAL_STATUSES, RunSpec
from app.lab.store import RunStore
from model.config import Switches
from model.tasks import get_task
from model.train import TrainConfig, model_config_for


@pytest.fixture
def runner(tmp_path):
    r = RayJobRunner(RunStore(tmp_path / "runs.sqlite3"), quotas=Quotas(max_checkpoint_mb=500), max_running=1)
    r.start()
    yield r
    r.stop()


def training_workers() -> list[psutil.Process]:
    """This test session's Ray workers that run a training task (Ray names a worker's process after its task)."""
    workers = []
    for process in psutil.Process().children(recursive=True):
        with suppress(psutil.Error):
            if (process.cmdline() or [""])[0].startswith("ray::train_seeds"):
                workers.append(process)
    return workers


def kill_the_training_worker() -> None:
    wait_for(lambda: training_workers(), timeout=30)
    for process in training_workers():
        os.kill(process.pid, signal.SIGKILL)


def ended(runner, run_id) -> str:
    wait_for(lambda: runner.store.get(run_id).status in FINAL_STATUSES, timeout=15)
    return runner.store.get(run_id).status


def a_new_run_completes(runner) -> None:
    record, _ = runner.submit(spec(steps=20, seed=7))
    wait_for(lambda: runner.store.get(record.id).status == "done", timeout=60)


def test_a_worker_killed_mid_step_fails_its_run_and_the_next_run_trains(runner):
    record, _ = runner.submit(spec(steps=5000), background=True)
    wait_for(lambda: runner.store.get(record.id).steps_done > 0)
    kill_the_training_worker()
    assert ended(runner, record.id) == "failed"
    assert "stopped unexpectedly" in runner.store.get(record.id).error
    a_new_run_completes(runner)  # its one training slot was given back


def big_spec(steps: int) -> RunSpec:
    """A model whose checkpoint (~90 MB) takes a noticeable time to write and send."""
    task = get_task("copy")
    config = model_config_for(task, d_model=256, n_heads=4, d_ff=1024, n_encoder_layers=12, n_decoder_layers=12)
    train = TrainConfig(task="copy", steps=steps, batch_size=4, eval_every=steps, eval_size=4)
    return RunSpec(config, Switches(), train)


def test_a_worker_killed_around_its_checkpoint_never_leaves_the_run_hanging(runner):
    record, _ = runner.submit(big_spec(steps=2), background=True)
    wait_for(lambda: runner.store.get(record.id).steps_done == 2, timeout=60)  # the last step is in: checkpointing
    kill_the_training_worker()
    status = ended(runner, record.id)
    stored = runner.store.get(record.id)
    # killed while checkpointing, or just after the checkpoint was sent: either way it ended, and says how
    assert (status == "failed" and "stopped unexpectedly" in stored.error) or (
        status == "done" and stored.has_checkpoint)
    a_new_run_completes(runner)


def test_a_store_that_cannot_be_written_fails_the_run_with_a_message(runner, monkeypatch):
    def disk_full(run_id, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner.store, "add_metrics", disk_full)
    record, _ = runner.submit(spec(steps=5000), background=True)
    assert ended(runner, record.id) == "failed"
    assert "could not be saved" in runner.store.get(record.id).error and "No space" in runner.store.get(record.id).error
    wait_for(lambda: not training_workers(), timeout=15)  # the training task was stopped too
    monkeypatch.undo()
    a_new_run_completes(runner)
