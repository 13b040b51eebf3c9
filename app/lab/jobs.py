"""Training jobs: never on the event loop. Worker processes, bounded concurrency, a queue,
cancellation, and live events for whoever watches a run.

`JobRunner` is the small interface the routes use; `LocalJobRunner` implements it with a process
pool on this machine, and a distributed task queue could implement it instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.lab.store import FINAL_STATUSES, RunRecord, RunSpec, RunStore

EVENT_FLUSH_SECONDS = 0.1  # a worker sends metrics at most 10 times a second (the page wants >= 5)


class QueueFull(Exception):
    """More runs are waiting than the server accepts."""


@dataclass
class Event:
    kind: str  # queued | started | metrics | done | failed | cancelled
    run_id: int
    data: Any = None


class JobRunner(Protocol):
    def submit(self, spec: RunSpec, label: str = "", background: bool = False) -> tuple[RunRecord, bool]: ...
    def cancel(self, run_id: int) -> bool: ...
    def waiting_count(self) -> int: ...
    def queue_position(self, run_id: int) -> int | None: ...
    def events(self, run_id: int) -> AsyncIterator[Event]: ...


def _train_in_worker(run_id: int, spec: dict, events: mp.Queue, cancel: mp.Event) -> None:
    """Runs in a worker process: train, stream metrics in small batches, send the checkpoint."""
    import torch

    from model.checkpoint import checkpoint_bytes
    from model.config import ModelConfig, Switches
    from model.train import TrainConfig, TrainingRun

    torch.set_num_threads(1)  # one core per job: the web server keeps the other
    try:
        run = TrainingRun(ModelConfig.from_dict(spec["model_config"]), Switches.from_dict(spec["switches"]),
                          TrainConfig.from_dict(spec["train_config"]))
        events.put(("started", run_id, None))
        pending, last_flush = [], time.monotonic()
        for metrics in run:
            pending.append(metrics.to_dict())
            if time.monotonic() - last_flush >= EVENT_FLUSH_SECONDS or metrics.heldout_seq_accuracy is not None:
                events.put(("metrics", run_id, pending))
                pending, last_flush = [], time.monotonic()
            if cancel.is_set():
                run.cancel()
        if pending:
            events.put(("metrics", run_id, pending))
        if cancel.is_set():
            events.put(("cancelled", run_id, "stopped by the learner"))
        else:
            events.put(("done", run_id, checkpoint_bytes(run.model, run.train_config, run.history)))
    except Exception as error:  # reported to the page; the run is marked failed, never left running
        events.put(("failed", run_id, f"{type(error).__name__}: {error}"))


@dataclass
class _Job:
    run_id: int
    spec: dict
    cancel: Any  # mp.Event
    process: Any = None  # mp.Process once started
    background: bool = False  # trains on when nobody watches
    subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = field(default_factory=list)


class LocalJobRunner:
    def __init__(self, store: RunStore, workers: int = 1, max_queue: int = 8, disconnect_grace_s: float = 5.0,
                 connect_timeout_s: float = 20.0, recover: bool = True):
        self.store = store
        self.workers = workers
        self.max_queue = max_queue
        self.disconnect_grace_s = disconnect_grace_s  # after the last watcher leaves
        self.connect_timeout_s = connect_timeout_s  # for the first watcher to arrive
        self.recover = recover  # only the server recovers: a command beside it must not fail its runs
        # forkserver: workers start from a clean process that has torch imported, fast and thread-safe
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["torch", "model.train"])
        self._events: mp.Queue = self._ctx.Queue()
        self._jobs: dict[int, _Job] = {}
        self._waiting: deque[int] = deque()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._dispatch_loop, daemon=True, name="jobs-dispatch"),
                         threading.Thread(target=self._event_loop, daemon=True, name="jobs-events")]

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.recover:
            self.store.recover()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
            if job.process is not None:
                job.process.join(timeout=5)
                if job.process.is_alive():
                    job.process.terminate()
        for thread in self._threads:
            thread.join(timeout=5)
        self._events.close()  # release the queue's semaphores and feeder thread
        self._events.join_thread()
        if self.recover:
            self.store.recover()  # anything still unfinished is marked failed, not left running

    # ---- the interface ------------------------------------------------------------------

    def submit(self, spec: RunSpec, label: str = "", background: bool = False) -> tuple[RunRecord, bool]:
        """(run, replayed). A background run (a sweep's) trains whether or not anyone watches it."""
        stored = self.store.find_done(spec)
        if stored is not None:
            return stored, True
        with self._lock:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} runs are already waiting (the limit is {self.max_queue}); "
                                "try again when one has finished")
            record = self.store.create(spec, label)
            self._jobs[record.id] = _Job(record.id, _spec_dict(spec), self._ctx.Event(), background=background)
            self._waiting.append(record.id)
        if not background:
            self._schedule_unwatched_check(record.id, self.connect_timeout_s)  # in case its page never connects
        return record, False

    def cancel(self, run_id: int) -> bool:
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return False
            job.cancel.set()
            if run_id in self._waiting:  # never started: finish it here
                self._waiting.remove(run_id)
                del self._jobs[run_id]
                waiting_cancelled = job
            else:
                waiting_cancelled = None
        if waiting_cancelled is not None:
            self.store.finish(run_id, "cancelled", error="stopped before it started")
            self._publish(waiting_cancelled, Event("cancelled", run_id, "stopped before it started"))
        return True

    def waiting_count(self) -> int:
        with self._lock:
            return len(self._waiting)

    def queue_position(self, run_id: int) -> int | None:
        """1 = next to start; None when running or not waiting."""
        with self._lock:
            return self._waiting.index(run_id) + 1 if run_id in self._waiting else None

    def is_active(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._jobs

    async def events(self, run_id: int) -> AsyncIterator[Event]:
        """What has happened so far (from the store), then live events until the run ends."""
        inbox: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None:
                job.subscribers.append((loop, inbox))
        try:
            last_step = 0
            stored = self.store.metrics(run_id)
            if stored:
                last_step = stored[-1]["step"]
                yield Event("metrics", run_id, stored)
            if job is None:  # finished (or unknown): nothing live will come
                record = self.store.get(run_id)
                if record is not None:
                    yield Event(record.status, run_id, record.error)
                return
            while True:
                event = await inbox.get()
                if event.kind == "metrics":
                    rows = [r for r in event.data if r["step"] > last_step]
                    if not rows:
                        continue
                    last_step = rows[-1]["step"]
                    event = Event("metrics", run_id, rows)
                yield event
                if event.kind in FINAL_STATUSES:
                    return
        finally:
            self._unsubscribe(run_id, loop, inbox)

    # ---- internals ------------------------------------------------------------------------

    def _unsubscribe(self, run_id: int, loop, inbox) -> None:
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return
            job.subscribers = [(lp, q) for lp, q in job.subscribers if q is not inbox]
            orphaned = not job.subscribers
        if orphaned:  # nobody watches: cancel after a grace period (a reload re-subscribes in time)
            self._schedule_unwatched_check(run_id, self.disconnect_grace_s)

    def _schedule_unwatched_check(self, run_id: int, delay: float) -> None:
        timer = threading.Timer(delay, self._cancel_if_unwatched, args=(run_id,))
        timer.daemon = True
        timer.start()

    def _cancel_if_unwatched(self, run_id: int) -> None:
        with self._lock:
            job = self._jobs.get(run_id)
            unwatched = job is not None and not job.subscribers and not job.background
        if unwatched:
            self.cancel(run_id)

    def _publish(self, job: _Job, event: Event) -> None:
        for loop, inbox in list(job.subscribers):
            loop.call_soon_threadsafe(inbox.put_nowait, event)

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                while self._waiting and len(self._running) < self.workers:
                    run_id = self._waiting.popleft()
                    job = self._jobs[run_id]
                    job.process = self._ctx.Process(target=_train_in_worker, daemon=True,
                                                    args=(run_id, job.spec, self._events, job.cancel))
                    job.process.start()
                    self._running.add(run_id)
                crashed = [self._jobs[r] for r in self._running
                           if self._jobs[r].process is not None and not self._jobs[r].process.is_alive()
                           and self._jobs[r].process.exitcode not in (0, None)]
            for job in crashed:
                self._finish(job.run_id, "failed", None, f"the training process exited ({job.process.exitcode})")
            time.sleep(0.05)

    def _event_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                kind, run_id, data = self._events.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                job = self._jobs.get(run_id)
            if job is None:
                continue
            if kind == "started":
                self.store.mark_running(run_id)
                self._publish(job, Event("started", run_id))
            elif kind == "metrics":
                self.store.add_metrics(run_id, data)
                self._publish(job, Event("metrics", run_id, data))
            elif kind == "done":
                self._finish(run_id, "done", data, None)
            else:
                self._finish(run_id, kind, None, data)

    def _finish(self, run_id: int, status: str, checkpoint: bytes | None, error: str | None) -> None:
        with self._lock:
            job = self._jobs.pop(run_id, None)
            self._running.discard(run_id)
        if job is None:
            return
        self.store.finish(run_id, status, checkpoint=checkpoint, error=error)
        self._publish(job, Event(status, run_id, error))


def _spec_dict(spec: RunSpec) -> dict:
    return {"task": spec.task, "model_config": spec.model_config, "switches": spec.switches,
            "train_config": spec.train_config}
