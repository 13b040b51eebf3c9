"""Web figures: switch-change latency at 1 learner, 20 learners and a class of 50 clicking random switch
combinations, partial sizes, and the bytes of a first page load.

    python benchmarks/bench_web.py [--requests 200] [--class-seconds 60] [--model-processes 0 1 2]

`--model-processes` runs everything once per value (ADDNORM_MODEL_PROCESSES: 0 = model work on a thread of
the web process; N = a pool of N worker processes), so the ways of serving a class are compared in one run.

Starts the app under uvicorn on a free loopback port. A "switch change" is a playground HTMX
request for a (switches, input) the server has not traced yet (a cache miss: the model really
runs) — each client keeps its own input and flips one switch per request, as a learner does — and
then the same clicks again (cache hits, as when a class flips the same switches on the same
example). A static file's latency is measured in the same run as the baseline.

Four loads:
- 1 client clicking back to back;
- a classroom: 20 learners at once, each reading the new plots for 1–3 s before the next click
  (the load the targets are set for);
- saturation: 20 clients clicking back to back with no pause, which no class does; it shows the
  server's throughput and how the queue grows once the cores are busy;
- a class of 50: each learner keeps an input of its own and clicks a random combination of every switch
  (so nearly every click is a state nobody traced yet), 1-3 s apart, for `--class-seconds`; once per model of
  `--class-models` (the default model's random digits; a text model's learners each keep a held-out line of its
  text, as they would type one).

And the load a lecture hall makes, measured twice: `--hall-seconds` from the moment a freshly started server
first answers `/` (the teacher starts it and the hall clicks at once), and again on the now warm server. 50
learners, half of them reading Chinese pages, each opens the whole page on any of the four reverse-task zoo
models (2+2 and 4+4 layers, Post-LN and Pre-LN) with a random 4-10 digit input, then clicks random switch
combinations 1-3 s apart; one click in five also picks another model and input.

    python benchmarks/bench_web.py --hall-only     just the hall, on the default worker pool
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from loopback import free_port, pct  # benchmarks/loopback.py: a script's folder is on the path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a text model's held-out lines come from its task
HX = {"HX-Request": "true", "Accept-Encoding": "gzip"}
SWITCHES = {
    "residual": ["on", "off"], "norm": ["layer", "rms", "batch", "none"], "norm_position": ["post", "pre"],
    "pos_encoding": ["sinusoidal", "learned", "none"], "causal_mask": ["on", "off"], "memory": ["final", "same_depth"],
}



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


def random_combination(rng: random.Random) -> str:
    return "&".join(f"{name}={rng.choice(values)}" for name, values in SWITCHES.items())


async def checked_click(client: httpx.AsyncClient, query: str, times: list[float], errors: list[str],
                        headers=HX) -> None:
    """One playground request, timed into `times`; a failed one (not 200, or no step view) noted in `errors`."""
    start = time.perf_counter()
    try:
        response = await client.get(f"/playground?{query}", headers=headers)
        if response.status_code != 200 or 'id="step-view"' not in response.text:
            errors.append(f"{response.status_code}")
    except httpx.HTTPError as error:
        errors.append(type(error).__name__)
    times.append((time.perf_counter() - start) * 1000)


def own_input(model: str | None, rng: random.Random) -> str:
    """What a learner types: 6-10 random digits, or for a model reading a text a held-out line of it."""
    if model is not None:
        from model.tasks import get_task
        from model.zoo import get_entry

        task = get_task(get_entry(model).task)
        if task.reads_text:
            return f"model={quote(model)}&input={quote(task.line(rng, masked=get_entry(model).arch == 'encoder_only'))}"
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10)))
    return (f"model={quote(model)}&" if model else "") + f"input={digits}"


async def class_of(base: str, learners: int, seconds: float, seed: int = 7, model: str | None = None) -> dict:
    """`learners` learners for `seconds`: each opens the page on an input of its own (not timed), then
    clicks random switch combinations, reading each result for 1-3 s. Every response is checked."""
    rng = random.Random(seed)
    times: list[float] = []
    errors: list[str] = []
    seen: set[str] = set()
    misses = 0
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=learners)) as client:
        async def learner(own: random.Random):
            nonlocal misses
            mine = own_input(model, own)
            await asyncio.sleep(own.uniform(0, 3))
            await client.get(f"/playground?{mine}", headers=HX)
            while True:
                await asyncio.sleep(own.uniform(1.0, 3.0))
                if time.perf_counter() > deadline:
                    return
                query = f"{random_combination(own)}&{mine}"
                misses += query not in seen
                seen.add(query)
                await checked_click(client, query, times, errors)
        await asyncio.gather(*(learner(random.Random(rng.random())) for _ in range(learners)))
    return {"times": times, "errors": errors, "misses": misses}


HALL_MODELS = ("reverse-post-2x2", "reverse-pre-2x2", "reverse-post-4x4", "reverse-pre-4x4")


async def hall(base: str, learners: int, seconds: float, seed: int = 11) -> dict:
    """A lecture hall (the module's docstring): every learner starts within the first 2 s and opens the page (timed:
    a first page must be fast too). Every response is checked."""
    rng = random.Random(seed)
    times: list[float] = []
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=learners)) as client:
        async def click(query: str, headers=HX) -> None:
            await checked_click(client, query, times, errors, headers)

        async def learner(own: random.Random):
            def new_example() -> str:
                digits = "".join(own.choice("0123456789") for _ in range(own.randint(4, 10)))
                return f"model={own.choice(HALL_MODELS)}&input={digits}"
            lang = own.choice(("en", "zh"))
            example = new_example()
            await asyncio.sleep(own.uniform(0, 2))
            await click(f"{example}&lang={lang}", {"Accept-Encoding": "gzip"})  # the whole page, as a browser opens it
            while True:
                await asyncio.sleep(own.uniform(1.0, 3.0))
                if time.perf_counter() > deadline:
                    return
                if own.random() < 0.2:
                    example = new_example()
                await click(f"{random_combination(own)}&{example}&lang={lang}")
        await asyncio.gather(*(learner(random.Random(rng.random())) for _ in range(learners)))
    return {"times": times, "errors": errors}


def hall_line(name: str, result: dict, seconds: float, idle_ms: float) -> str:
    times = result["times"]
    return (f"{name}: {len(times)} requests ({len(times) / seconds:.1f}/s), {len(result['errors'])} errors "
            f"{sorted(set(result['errors']))[:3] if result['errors'] else ''}\n"
            f"    p50 {pct(times, 50):.0f} ms, p95 {pct(times, 95):.0f} ms, max {max(times):.0f} ms "
            f"(static file idle p50 {idle_ms:.1f} ms; p50 = {pct(times, 50) / idle_ms:.0f}x, "
            f"p95 = {pct(times, 95) / idle_ms:.0f}x static)")


async def measure_hall(seconds: float, model_processes: int | None) -> None:
    """The hall from a cold start (timed from the first answer on `/`, as a teacher sees the server up), then warm."""
    port = free_port()
    data_dir = tempfile.TemporaryDirectory(prefix="addnorm-bench-")
    started = time.perf_counter()
    server = start_server(port, model_processes, data_dir.name)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if httpx.get(base + "/", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        else:
            raise SystemExit("the server did not start")
        up = time.perf_counter() - started
        where = "the default worker pool" if model_processes is None else f"ADDNORM_MODEL_PROCESSES={model_processes}"
        print(f"\n== a hall of 50 on {where}; the server answered / {up:.1f} s after start")
        cold = await hall(base, 50, seconds)
        idle_t, _ = await run_load(base, ["/static/css/app.css"] * 50, 1)
        print(hall_line(f"first {seconds:.0f} s after start", cold, seconds, pct(idle_t, 50)))
        warm = await hall(base, 50, seconds, seed=12)
        print(hall_line("warm server", warm, seconds, pct(idle_t, 50)))
    finally:
        server.terminate()
        server.wait(20)
        data_dir.cleanup()


def start_server(port: int, model_processes: int | None, data_dir: str) -> subprocess.Popen:
    env = {**os.environ, "ADDNORM_DATA_DIR": data_dir}
    if model_processes is not None:
        env["ADDNORM_MODEL_PROCESSES"] = str(model_processes)
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env=env)


def wait_until_up(base: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(base + "/playground?input=123", headers=HX).status_code == 200:  # models warm
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not start")


async def measure(requests: int, class_seconds: float, model_processes: int,
                  class_models: list[str | None] = (None,)) -> None:
    port = free_port()
    data_dir = tempfile.TemporaryDirectory(prefix="addnorm-bench-")  # the server's run store, not the project's
    server = start_server(port, model_processes, data_dir.name)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base)
        static_path = "/static/css/app.css"
        where = "a thread of the web process" if model_processes == 0 else f"{model_processes} worker process(es)"
        print(f"\n== model work on {where}; {requests} requests per measurement")
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
        for class_model in class_models if class_seconds > 0 else ():
            idle_t, _ = await run_load(base, [static_path] * 50, 1)
            result = await class_of(base, 50, class_seconds, model=class_model)
            times = result["times"]
            print(f"class of 50 on {class_model or 'the default model'}, random switch combinations, 1-3 s between "
                  f"clicks, {class_seconds:.0f} s: "
                  f"{len(times)} clicks ({len(times) / class_seconds:.1f}/s), "
                  f"{result['misses'] / max(1, len(times)):.0%} new states, {len(result['errors'])} errors\n"
                  f"    p50 {pct(times, 50):.0f} ms, p95 {pct(times, 95):.0f} ms, max {max(times):.0f} ms "
                  f"(static file idle p50 {pct(idle_t, 50):.1f} ms; "
                  f"class p50 = {pct(times, 50) / pct(idle_t, 50):.0f}x)")
        raw, zipped = first_load_bytes(base)
        print(f"first page load (/playground + scripts + styles): {raw / 1e6:.2f} MB raw, "
              f"{zipped / 1e6:.2f} MB gzipped")
    finally:
        server.terminate()
        server.wait(20)
        data_dir.cleanup()


async def main(requests: int, class_seconds: float, model_processes: list[int], hall_seconds: float,
               hall_only: bool, class_models: list[str | None]) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if hall_seconds > 0:
        await measure_hall(hall_seconds, None)
    if hall_only:
        return
    for processes in model_processes:
        await measure(requests, class_seconds, processes, class_models)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--class-seconds", type=float, default=60, help="length of the class-of-50 load (0: skip)")
    parser.add_argument("--model-processes", type=int, nargs="+", default=[0, 2],
                        help="ADDNORM_MODEL_PROCESSES values to compare (0: a thread of the web process)")
    parser.add_argument("--hall-seconds", type=float, default=40, help="length of each hall load (0: skip)")
    parser.add_argument("--hall-only", action="store_true", help="only the hall, cold and warm")
    parser.add_argument("--class-models", nargs="+", default=["default"],
                        help="zoo models the class of 50 works on, one load each ('default': the default model)")
    args = parser.parse_args()
    models = [None if name == "default" else name for name in args.class_models]
    asyncio.run(main(args.requests, args.class_seconds, args.model_processes, args.hall_seconds, args.hall_only,
                     models))
