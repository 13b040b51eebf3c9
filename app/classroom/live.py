"""Live class screens over server-sent events, with one watcher per class per server process.

The state is in the class store, never in one process's memory, so any process can serve any screen. Each process
keeps, for each class that has a screen open on it, one task that polls the class's `version` (one indexed row)
every POLL_S, and when it moved reads a Snapshot once and wakes that class's listeners. A hundred phones then cost
one query per poll, not a hundred, and answers arriving together are shown together (at most one update per poll).

    teacher stream: `tally` (JSON: answered, joined, stage) on every change; `stage` when the class moves on
    student stream: `stage` only (the phone then asks for its own view: what it shows is the student's own)
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import suppress

from anyio.to_thread import run_sync
from sse_starlette import ServerSentEvent

from app.classroom.store import ClassStore, Snapshot
from app.classroom.views import stage_of

POLL_S = 0.2
log = logging.getLogger(__name__)


def stage_ended(stage: str) -> bool:
    """Whether a stage (views.stage_of) is of a class that has ended: closed or expired, nothing more changes."""
    return stage.endswith((":closed", ":expired"))


class _Watch:
    """One class as this process follows it: its newest snapshot and an event set whenever that changes."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.stage = ""
        self.changed = asyncio.Event()
        self.listeners = 0
        self.closed = False
        self.task: asyncio.Task | None = None

    def publish(self, snapshot: Snapshot, stage: str) -> None:
        self.snapshot, self.stage = snapshot, stage
        woken, self.changed = self.changed, asyncio.Event()  # listeners that wake wait on the new one next
        woken.set()


class ClassHub:
    def __init__(self, store: ClassStore, poll_s: float = POLL_S):
        self.store = store
        self.poll_s = poll_s
        self._watches: dict[int, _Watch] = {}

    async def follow(self, class_id: int) -> AsyncIterator[tuple[Snapshot, str]]:
        """Each new (snapshot, stage) of the class, the current one first; ends after the class has ended (closed
        or expired: nothing more will change), or when the hub closes."""
        watch = self._watches.get(class_id)
        if watch is None:
            watch = self._watches[class_id] = _Watch()
            watch.task = asyncio.create_task(self._poll(class_id, watch), name=f"class-watch-{class_id}")
        watch.listeners += 1
        try:
            seen = None
            while not watch.closed:
                if watch.snapshot is not None and watch.snapshot is not seen:
                    seen, stage = watch.snapshot, watch.stage
                    yield seen, stage
                    if stage_ended(stage):
                        return
                    continue  # a change while the event was being sent: look again before waiting
                await watch.changed.wait()
        finally:
            watch.listeners -= 1
            if watch.listeners == 0 and self._watches.get(class_id) is watch:
                del self._watches[class_id]
                watch.task.cancel()

    async def _poll(self, class_id: int, watch: _Watch) -> None:
        seen: tuple[int, str] | None = None
        failing = False
        while True:
            try:
                version = await run_sync(self.store.version, class_id)
                # the stage also moves without a write when the class expires: the clock is part of the key
                now = self.store.clock()
                if watch.snapshot is None or (version, stage_of(watch.snapshot, now)) != seen:
                    snapshot = await run_sync(self.store.snapshot, class_id)
                    if snapshot is not None:
                        stage = stage_of(snapshot, now)
                        seen = (snapshot.version, stage)
                        watch.publish(snapshot, stage)
                failing = False
            except sqlite3.Error as error:  # keep the streams open: the store may come back (a locked file)
                if not failing:
                    log.warning("class %s: the class store cannot be read: %s", class_id, error)
                failing = True
            await asyncio.sleep(self.poll_s)

    async def close(self) -> None:
        """Stop every watcher and end every stream (the server is shutting down)."""
        for watch in list(self._watches.values()):
            watch.closed = True
            watch.changed.set()
            watch.task.cancel()
            with suppress(asyncio.CancelledError):
                await watch.task
        self._watches.clear()

    def watching(self) -> int:
        return len(self._watches)


async def teacher_events(hub: ClassHub, class_id: int) -> AsyncIterator[ServerSentEvent]:
    stage = None
    async for snapshot, now_stage in hub.follow(class_id):
        yield ServerSentEvent(json.dumps({"answered": snapshot.answered, "joined": snapshot.joined,
                                          "stage": now_stage, "version": snapshot.version}), event="tally")
        if now_stage != stage:
            stage = now_stage
            yield ServerSentEvent(now_stage, event="stage")


async def student_events(hub: ClassHub, class_id: int) -> AsyncIterator[ServerSentEvent]:
    stage = None
    async for _, now_stage in hub.follow(class_id):
        if now_stage != stage:
            stage = now_stage
            yield ServerSentEvent(now_stage, event="stage")
