"""Model work for web requests (traces, figures, rendered partials): on a few threads of the web process,
or on a pool of worker processes.

The work is mostly Python on tiny tensors, so it holds the GIL: twenty clicks run in twenty threads
at once each take about as long as all twenty queued, and the first learner waits for the last.
Queued behind a small limiter, each click is served in turn, at full speed.

A class clicking switch combinations nobody traced yet needs more than one core: with
ADDNORM_MODEL_PROCESSES=N the playground's work runs in N worker processes (`ModelProcesses`). Each has its
own models and trace caches; a state's work always goes to the same worker (by model and input), where the
intact trace it is compared with is already cached. Workers only read: the web process alone keeps the
job engine and writes the store (benchmarks/bench_web.py compares threads and pools).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import anyio
from anyio.to_thread import run_sync
from cachetools import LRUCache
from fastapi import Request

from app.web.errors import BadInput

T = TypeVar("T")
MEMO_SIZE = 256  # rendered partials kept in the web process: a class flips the same switches on the same example


def model_limiter(threads: int) -> anyio.CapacityLimiter:
    """Made in the app's lifespan (an anyio limiter belongs to the running event loop)."""
    return anyio.CapacityLimiter(threads)


async def run_model_work(request: Request, fn: Callable[..., T], *args) -> T:
    return await run_sync(fn, *args, limiter=request.app.state.model_limiter)


class WorkerLost(BadInput):
    def __init__(self):
        super().__init__("server", "the model worker stopped while computing this page; it has been restarted: "
                                   "try again", 503)


def _start_worker(data_dir: str, torch_threads: int, warm_up: Callable[[], None]) -> None:
    """In each worker, once: its share of the cores, the run store (read only: finished runs are models too),
    `warm_up` (the first request should not wait for a model load or a template compile), and what that made
    frozen out of garbage collection (as in the web process)."""
    import torch

    from app.lab.store import RunStore
    from app.lab.store_opening import STORE_FILE
    from app.playground.registry import use_store

    torch.set_num_threads(torch_threads)
    store_path = Path(data_dir) / STORE_FILE
    if store_path.is_file():
        with suppress(Exception):  # a store the web process could not open either: zoo models only
            use_store(RunStore(store_path, read_only=True))
    try:
        warm_up()
    except Exception:  # a page that fails to draw fails on its own request, with its error; the others are served
        logging.getLogger(__name__).exception("the model worker's warm-up failed")
    gc.collect()
    gc.freeze()


class ModelProcesses:
    """`processes` worker processes, one queue each. Started and stopped by the app's lifespan."""

    def __init__(self, processes: int, data_dir: Path, torch_threads: int = 1,
                 warm_up: Callable[[], None] = gc.collect):
        self.size = processes
        self._init_args = (str(data_dir), torch_threads, warm_up)
        self._workers: list[ProcessPoolExecutor] = []
        self._warming: list = []  # each worker's first task: done once it has warmed up
        self._memo: LRUCache[tuple, object] = LRUCache(maxsize=MEMO_SIZE)

    def _new_worker(self) -> ProcessPoolExecutor:
        # spawn: a forked copy of a web process (threads, Ray's connections, an event loop) is not safe to run
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=self._init_args)

    def start(self) -> None:
        """The workers start and warm up in the background (`ready` waits for them)."""
        self._workers = [self._new_worker() for _ in range(self.size)]
        self._warming = [worker.submit(gc.collect) for worker in self._workers]  # a pool starts on its first task

    async def ready(self) -> None:
        """Every worker has warmed up (the lifespan waits for this: a hall clicking the moment the server is up
        would otherwise queue behind model loads). A worker that failed to start is replaced on first use."""
        for warming in self._warming:
            with suppress(BrokenProcessPool):
                await asyncio.wrap_future(warming)

    def stop(self) -> None:
        for worker in self._workers:
            worker.shutdown(wait=False, cancel_futures=True)
        self._workers = []

    def worker_pids(self) -> list[int]:
        return [pid for worker in self._workers for pid in worker._processes]  # noqa: SLF001 - for fault tests

    async def run(self, key: str, fn: Callable[..., T], *args, memo: bool = False) -> T:
        """fn(*args) on the worker that `key` (model and input) belongs to. With `memo`, the result is kept here
        too (small, rendered partials), so a state asked for again is served without waiting for its worker."""
        memo_key = (fn.__module__, fn.__qualname__, args)
        if memo and memo_key in self._memo:
            return self._memo[memo_key]  # reading it makes it the most recently used
        index = zlib.crc32(key.encode()) % self.size
        try:
            result = await self._submit(index, fn, args)
        except BrokenProcessPool:  # the worker died (killed, out of memory): a new one, and one more try
            self._replace(index)
            try:
                result = await self._submit(index, fn, args)
            except BrokenProcessPool:
                self._replace(index)
                raise WorkerLost() from None
        if memo:
            self._memo[memo_key] = result  # the least recently used goes once MEMO_SIZE are kept
        return result

    async def _submit(self, index: int, fn, args):
        return await asyncio.wrap_future(self._workers[index].submit(fn, *args))

    def _replace(self, index: int) -> None:
        broken = self._workers[index]
        if getattr(broken, "_broken", False):  # not yet replaced by a request that failed at the same time
            broken.shutdown(wait=False, cancel_futures=True)
            self._workers[index] = self._new_worker()


async def run_playground_work(request: Request, key: str, fn: Callable[..., T], *args, memo: bool = False) -> T:
    """The playground's model work: on the worker processes when the app has them, else on its threads.
    fn and args cross a process boundary, so they are plain: module-level functions, states, language codes."""
    processes: ModelProcesses | None = getattr(request.app.state, "model_processes", None)
    if processes is None:
        return await run_model_work(request, fn, *args)
    return await processes.run(key, fn, *args, memo=memo)
