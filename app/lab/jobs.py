"""Training jobs on Ray: a queue with limits, one streaming Ray task per job, live events for whoever
watches a run, and every way a job can end written to the store.

A job trains one configuration on one or more seeds (one task: the engine trains them together);
each seed is its own run in the store. The web process keeps the queue, so it can say where a run
waits and refuse what does not fit before anything is created; Ray runs the tasks on this machine
or on any machine of the cluster. A thread per running job reads its task's stream, writes the
store and tells the subscribers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError, TaskCancelledError

from app.lab.cluster import training_slots
from app.lab.quotas import Quotas
from app.lab.runs import FINAL_STATUSES, RunRecord, RunSpec
from app.lab.store import RunStore, RunUnreadable
from app.lab.training_task import training_task

STOPPED_BY_LEARNER = "stopped by the learner"
ABANDONED = "abandoned: nobody was watching"
STOPPED_BEFORE_START = "stopped before it started"
FORCE_CANCEL_AFTER_S = 5.0  # a task that ignores the polite cancel is killed


class QueueFull(Exception):
    """More runs are waiting than the server (or this learner's share of it) accepts."""


@dataclass
class Event:
    kind: str  # started | metrics | done | failed | cancelled
    run_id: int
    data: Any = None


@dataclass(frozen=True)
class JobRequest:
    spec: RunSpec  # the configuration; its seed is used when `seeds` is empty
    seeds: tuple[int, ...] = ()
    label: str = ""
    background: bool = False  # a sweep's: trains on whether or not anyone watches
    learner: str | None = None  # whose queue share it takes


@dataclass
class _Job:
    runs: dict[int, int]  # seed -> run id
    spec: RunSpec
    background: bool
    learner: str | None
    generator: Any = None  # the Ray task's stream, once started
    cancel_reason: str | None = None
    subscribers: dict[int, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = field(default_factory=dict)

    @property
    def first_run(self) -> int:
        return next(iter(self.runs.values()))

    def watched(self) -> bool:
        return any(self.subscribers.values())


class RayJobRunner:
    def __init__(self, store: RunStore, max_queue: int = 8, max_per_learner: int = 2, quotas: Quotas | None = None,
                 disconnect_grace_s: float = 5.0, connect_timeout_s: float = 20.0, recover: bool = True,
                 max_running: int | None = None):
        self.store = store
        self.max_running = max_running  # None: one job per CPU of the Ray instance
        self.max_queue = max_queue
        self.max_per_learner = max_per_learner
        self.quotas = quotas or Quotas()
        self.disconnect_grace_s = disconnect_grace_s  # after the last watcher leaves
        self.connect_timeout_s = connect_timeout_s  # for the first watcher to arrive
        self.recover = recover  # only the server recovers: a command beside it must not fail its runs
        self._jobs: dict[int, _Job] = {}  # every run id of a job -> the job
        self._waiting: deque[_Job] = deque()
        self._running: list[_Job] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, daemon=True, name="jobs-dispatch")

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self.recover:
            self.store.recover()
        self._dispatcher.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dispatcher.join(timeout=5)
        with self._lock:
            running = list(self._running)
        for job in running:
            job.cancel_reason = job.cancel_reason or "the server stopped"
            ray.cancel(job.generator, force=True)
        if self.recover:
            self.store.recover()  # anything still unfinished is marked failed, not left running

    # ---- the interface ------------------------------------------------------------------

    def submit(self, spec: RunSpec, label: str = "", background: bool = False,
               learner: str | None = None) -> tuple[RunRecord, bool]:
        """(run, replayed) for the spec's own seed."""
        return self.submit_jobs([JobRequest(spec, (), label, background, learner)])[0][0]

    def submit_jobs(self, requests: list[JobRequest]) -> list[list[tuple[RunRecord, bool]]]:
        """Every request's runs, (run, replayed) per seed; all of them are queued or none is (A/B).
        StoreNotWritable when the store is read-only: training is off."""
        self.store.require_writable()
        plans = []
        for request in requests:
            seeds = request.seeds or (request.spec.train.seed,)
            stored = {s: self.store.find_done(request.spec.with_seed(s)) for s in seeds}
            plans.append((request, seeds, [s for s in seeds if stored[s] is None], stored))
        new = [(request, missing) for request, _, missing, _ in plans if missing]
        self.quotas.check([request.spec.with_seed(s) for request, missing in new for s in missing], self.store)
        created: dict[tuple[int, int], RunRecord] = {}  # (request, seed) -> its new run
        with self._lock:
            self._check_room(new)
            try:
                for request, missing in new:
                    for seed in missing:
                        created[id(request), seed] = self.store.create(request.spec.with_seed(seed), request.label)
            except Exception:  # the store failed half-way: what was created must not wait forever (A/B: neither)
                for record in created.values():
                    with suppress(Exception):
                        self.store.finish(record.id, "failed", error="the run store could not be written")
                raise
            for request, missing in new:
                job = _Job({s: created[id(request), s].id for s in missing}, request.spec, request.background,
                           request.learner)
                for run_id in job.runs.values():
                    self._jobs[run_id] = job
                self._waiting.append(job)
                if not request.background:  # in case its page never connects
                    self._check_unwatched_later(job, self.connect_timeout_s)
        return [[(stored[s], True) if stored[s] else (created[id(request), s], False) for s in seeds]
                for request, seeds, _, stored in plans]

    def cancel(self, run_id: int, reason: str = STOPPED_BY_LEARNER) -> bool:
        """Stop a run's job (every seed of it); False when it is not queued or training."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None or job.cancel_reason:
                return job is not None
            job.cancel_reason = reason
            waiting = job in self._waiting
            if waiting:
                self._waiting.remove(job)
        if waiting:  # never started: finish it here
            self._finish(job, "cancelled", {}, STOPPED_BEFORE_START if reason == STOPPED_BY_LEARNER else reason)
        elif job.generator is not None:
            ray.cancel(job.generator)
            threading.Timer(FORCE_CANCEL_AFTER_S, self._force_cancel, args=(job,)).start()
        return True

    def waiting_count(self) -> int:
        with self._lock:
            return len(self._waiting)

    def queue_position(self, run_id: int) -> int | None:
        """1 = next to start; None when running or not waiting."""
        with self._lock:
            job = self._jobs.get(run_id)
            return self._waiting.index(job) + 1 if job in self._waiting else None

    async def events(self, run_id: int) -> AsyncIterator[Event]:
        """What has happened so far (from the store), then live events until the run ends."""
        inbox: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        with self._lock:
            job = self._jobs.get(run_id)
            if job is not None:
                job.subscribers.setdefault(run_id, []).append((loop, inbox))
        try:
            last_step = 0
            try:
                stored = self.store.metrics(run_id)
            except RunUnreadable as error:  # the page says so, naming the run
                yield Event("failed", run_id, str(error))
                return
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

    def _check_room(self, new: list[tuple[JobRequest, list[int]]]) -> None:
        if len(self._waiting) + len(new) > self.max_queue:
            raise QueueFull(f"{len(self._waiting)} runs are already waiting (the limit is {self.max_queue}); "
                            "try again when one has finished")
        for learner in {request.learner for request, _ in new if request.learner}:
            mine = sum(job.learner == learner for job in [*self._waiting, *self._running])
            asked = sum(request.learner == learner for request, _ in new)
            if mine + asked > self.max_per_learner:
                raise QueueFull(f"you already have {mine} run(s) waiting or training and may have "
                                f"{self.max_per_learner} at once; stop one or wait until it has finished")

    def _unsubscribe(self, run_id: int, loop, inbox) -> None:
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return
            job.subscribers[run_id] = [(lp, q) for lp, q in job.subscribers.get(run_id, []) if q is not inbox]
            orphaned = not job.watched()
        if orphaned:  # nobody watches: stop after a grace period (a reload subscribes again in time)
            self._check_unwatched_later(job, self.disconnect_grace_s)

    def _check_unwatched_later(self, job: _Job, delay: float) -> None:
        timer = threading.Timer(delay, self._cancel_if_unwatched, args=(job,))
        timer.daemon = True
        timer.start()

    def _cancel_if_unwatched(self, job: _Job) -> None:
        with self._lock:
            unwatched = job.first_run in self._jobs and not job.watched() and not job.background
        if unwatched:
            self.cancel(job.first_run, ABANDONED)

    def _force_cancel(self, job: _Job) -> None:
        with self._lock:
            still_running = job in self._running
        if still_running:
            ray.cancel(job.generator, force=True)

    def _publish(self, job: _Job, event: Event) -> None:
        for loop, inbox in list(job.subscribers.get(event.run_id, [])):
            loop.call_soon_threadsafe(inbox.put_nowait, event)

    def _dispatch_loop(self) -> None:
        slots, slots_checked = 1, 0.0
        while not self._stopping.is_set():
            if time.monotonic() - slots_checked > 2:  # machines may join or leave the cluster
                slots, slots_checked = self.max_running or training_slots(), time.monotonic()
            with self._lock:
                starting = []
                while self._waiting and len(self._running) < slots:
                    job = self._waiting.popleft()
                    self._running.append(job)
                    starting.append(job)
            for job in starting:
                threading.Thread(target=self._follow, args=(job,), daemon=True, name=f"job-{job.first_run}").start()
            time.sleep(0.05)

    def _follow(self, job: _Job) -> None:
        """Start the job's task and read its stream to the end, whatever the end is."""
        spec = job.spec
        job.generator = training_task.options(num_returns="streaming").remote(
            spec.model, spec.switches, spec.train, list(job.runs))
        if job.cancel_reason:  # cancelled while it was being started
            ray.cancel(job.generator)
        checkpoints: dict[int, bytes] = {}
        try:
            for ref in job.generator:
                kind, *payload = ray.get(ref)
                if kind == "started":
                    for run_id in job.runs.values():
                        self.store.mark_running(run_id)
                        self._publish(job, Event("started", run_id))
                elif kind == "metrics":
                    self._store_metrics(job, payload[0])
                elif kind == "probes":
                    self.store.set_probes(job.runs[payload[0]], payload[1])
                else:
                    checkpoints[payload[0]] = payload[1]
        except TaskCancelledError:
            self._finish(job, "cancelled", {}, job.cancel_reason or STOPPED_BY_LEARNER)
        except RayError as error:
            if job.cancel_reason:
                self._finish(job, "cancelled", {}, job.cancel_reason)
            else:
                self._finish(job, "failed", {}, _why_the_task_failed(error))
        except Exception as error:  # the store could not be written: stop training, keep the lab working
            ray.cancel(job.generator, force=True)
            self._finish(job, "failed", {}, f"the run could not be saved ({type(error).__name__}: {error})")
        else:
            self._finish(job, "done", checkpoints, None)

    def _store_metrics(self, job: _Job, rows: list[dict]) -> None:
        for seed, run_id in job.runs.items():
            mine = [r for r in rows if r["seed"] == seed]
            if mine:
                self.store.add_metrics(run_id, mine)
                self._publish(job, Event("metrics", run_id, mine))

    def _finish(self, job: _Job, status: str, checkpoints: dict[int, bytes], error: str | None) -> None:
        """Record the end of every run of the job; never raises, so the lab keeps working."""
        with self._lock:
            if job in self._running:
                self._running.remove(job)
            for run_id in job.runs.values():
                self._jobs.pop(run_id, None)
        for seed, run_id in job.runs.items():
            try:
                self.store.finish(run_id, status, checkpoint=checkpoints.get(seed), error=error)
                event = Event(status, run_id, error)
            except Exception as write_error:  # the store itself is failing: say so to whoever watches
                event = Event("failed", run_id, f"the run could not be saved ({write_error})")
            self._publish(job, event)


def _why_the_task_failed(error: RayError) -> str:
    """A learner-readable reason: the training error itself, or what happened to its process or machine."""
    cause = getattr(error, "cause", None)
    if cause is not None and not isinstance(cause, RayError):
        return f"{type(cause).__name__}: {cause}"
    return f"the training process stopped unexpectedly ({type(error).__name__})"
