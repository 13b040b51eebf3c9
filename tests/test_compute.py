"""Model work for web requests is queued behind the app's limiter, never run all at once."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import anyio

from app.playground.compute import model_limiter, run_model_work


def peak_concurrency(threads: int, calls: int) -> int:
    active = peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.03)
        with lock:
            active -= 1

    async def main() -> None:
        request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(model_limiter=model_limiter(threads))))
        async with anyio.create_task_group() as tasks:
            for _ in range(calls):
                tasks.start_soon(run_model_work, request, work)

    # Its own thread: another test's browser may leave an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, main).result()
    return peak


def test_requests_run_the_model_at_most_model_threads_at_once():
    assert peak_concurrency(threads=1, calls=5) == 1
    assert peak_concurrency(threads=2, calls=6) == 2
