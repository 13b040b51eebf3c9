"""Model work for web requests (traces, figures, rendered partials) runs on a few threads, not one
per request.

The work is mostly Python on tiny tensors, so it holds the GIL: twenty clicks run in twenty threads
at once each take about as long as all twenty queued, and the first learner waits for the last.
Queued behind a small limiter, each click is served in turn, at full speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
from anyio.to_thread import run_sync
from fastapi import Request

T = TypeVar("T")


def model_limiter(threads: int) -> anyio.CapacityLimiter:
    """Made in the app's lifespan (an anyio limiter belongs to the running event loop)."""
    return anyio.CapacityLimiter(threads)


async def run_model_work(request: Request, fn: Callable[..., T], *args) -> T:
    return await run_sync(fn, *args, limiter=request.app.state.model_limiter)
