"""Web figures: switch-change latency (server side) at 1 and 20 concurrent clients, partial sizes,
and the bytes of a first page load.

    python benchmarks/bench_web.py [--requests 200]

Starts the app under uvicorn on a free loopback port. A "switch change" is a playground HTMX
request for a (switches, input) the server has not traced yet (a cache miss: the model really
runs) — each client keeps its own input and flips one switch per request, as a learner does — and
then the same clicks again (cache hits, as when a class flips the same switches on the same
example). A static file's latency is measured in the same run as the baseline.

Three loads:
- 1 client clicking back to back;
- a classroom: 20 learners at once, each reading the new plots for 1–3 s before the next click
  (the load the targets are set for);
- saturation: 20 clients clicking back to back with no pause, which no class does; it shows the
  server's throughput and how the queue grows once the cores are busy.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HX = {"HX-Request": "true", "Accept-Encoding": "gzip"}
SWITCHES = {
    "residual": ["on", "off"], "norm": ["layer", "rms", "batch", "none"], "norm_position": ["post", "pre"],
    "pos_encoding": ["sinusoidal", "learned", "none"], "causal_mask": ["on", "off"], "memory": ["final", "same_depth"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def learner_sessions(clients: int, flips: int, seed: int = 0) -> list[list[str]]:
    """Per client: its own random input, then `flips` switch changes, one switch at a time (as a
    learner clicks). The first request of each session loads the intact model and is not timed."""
    rng = random.Random(seed)
    sessions = []
    for _ in range(clients):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10)))
        state = {name: values[0] for name, values in SWITCHES.items()}
        queries = []
        for _ in range(flips + 1):
            queries.append("&".join(f"{k}={v}" for k, v in state.items()) + f"&input={digits}")
            name = rng.choice(list(SWITCHES))
            state[name] = rng.choice([v for v in SWITCHES[name] if v != state[name]])
        sessions.append(queries)
    return sessions


async def timed(client: httpx.AsyncClient, url: str, headers=None) -> tuple[float, int]:
    start = time.perf_counter()
    response = await client.get(url, headers=headers)
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return elapsed, response.num_bytes_downloaded  # on the wire (gzip when the client accepts it)


async def run_load(base: str, paths: list[str], concurrency: int, think_s=None) -> tuple[list[float], list[int]]:
    """`concurrency` clients sending the paths, back to back or with `think_s` pauses (the baseline of a load)."""
    sessions = [paths[i::concurrency] for i in range(concurrency)]
    return await run_sessions(base, sessions, skip_first=False, think_s=think_s)


async def run_sessions(base: str, sessions: list[list[str]], headers=None, skip_first=True,
                       think_s: tuple[float, float] | None = None, seed: int = 0):
    """Each session's paths in order. With `think_s` (lo, hi), a client waits a random time in that
    range before each click, as a learner reading the plots; clients start at random offsets."""
    times, sizes = [], []
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=100)) as client:
        async def client_loop(paths: list[str], pauses: list[float]):
            for i, path in enumerate(paths):
                if think_s:
                    await asyncio.sleep(pauses[i])
                ms, size = await timed(client, path, headers)
                if i or not skip_first:
                    times.append(ms)
                    sizes.append(size)
        pauses = [[rng.uniform(*think_s) if think_s else 0.0 for _ in s] for s in sessions]
        await asyncio.gather(*(client_loop(s, p) for s, p in zip(sessions, pauses, strict=True)))
    return times, sizes


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def first_load_bytes(base: str) -> tuple[int, int]:
    """(raw, gzipped) bytes of /playground and every script and stylesheet it references."""
    page = httpx.get(base + "/playground")
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    raw = len(page.content)
    zipped = len(gzip.compress(page.content))
    for asset in assets:
        body = httpx.get(base + asset).content
        raw += len(body)
        zipped += len(gzip.compress(body))
    return raw, zipped


async def main(requests: int) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
                               "--log-level", "warning"], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(base + "/api/models")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        static_path = "/static/css/app.css"
        print(f"{requests} requests per measurement, server on one uvicorn worker")
        loads = (("1 client, back to back", 1, None), ("classroom: 20 learners, 1-3 s between clicks", 20, (1.0, 3.0)),
                 ("saturation: 20 clients, back to back", 20, None))
        for seed, (name, concurrency, think_s) in enumerate(loads, start=1):
            base_t, _ = await run_load(base, [static_path] * requests, concurrency, think_s)
            flips = max(2, requests // concurrency)
            sessions = [[f"/playground?{q}" for q in s] for s in learner_sessions(concurrency, flips, seed)]
            start = time.perf_counter()
            miss_t, sizes = await run_sessions(base, sessions, HX, think_s=think_s, seed=seed)
            rate = len(miss_t) / (time.perf_counter() - start)
            hit_t, _ = await run_sessions(base, sessions, HX, think_s=think_s, seed=seed)  # the same clicks: cached
            print(f"{name}, {flips} switch changes each:\n"
                  f"    new state (model runs) p50 {pct(miss_t, 50):.0f} ms, p95 {pct(miss_t, 95):.0f} ms, "
                  f"max {max(miss_t):.0f} ms "
                  f"({rate:.1f} switch changes/s served); cached state p50 {pct(hit_t, 50):.1f} ms, "
                  f"p95 {pct(hit_t, 95):.1f} ms\n"
                  f"    static file p50 {pct(base_t, 50):.1f} ms (model run = {pct(miss_t, 50) / pct(base_t, 50):.0f}x "
                  f"static); partial {statistics.median(sizes) / 1000:.0f} KB gzipped (max {max(sizes) / 1000:.0f} KB)")
        raw, zipped = first_load_bytes(base)
        print(f"first page load (/playground + scripts + styles): {raw / 1e6:.2f} MB raw, "
              f"{zipped / 1e6:.2f} MB gzipped")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(main(parser.parse_args().requests))
