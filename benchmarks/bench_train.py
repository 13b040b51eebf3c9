"""Training figures: what the job system (Ray) costs a run, and what training costs the playground.

    python benchmarks/bench_train.py [--steps 300] [--repeats 3] [--requests 60]

Prints:
1. Training throughput of one spec (reverse, 2+2 layers, d_model 64, batch 64, Pre-LN) through
   RayJobRunner (a Ray task on an embedded instance, metrics streamed to a temporary RunStore and
   to a subscriber, as a page watches) vs a TrainingRun iterated in this process on one thread (the
   task uses one too): steps/s from the metrics' elapsed_s, leaving out the first 10 steps
   (start-up) and the last (its final evaluation); the runner's wall-clock from submit to done (the
   checkpoint and the store included); and the runner's throughput ratio against the direct run.
2. Under uvicorn on a free loopback port, with two training slots (ADDNORM_WORKERS=2): the memory
   of the idle embedded Ray instance (its processes' unique memory), the time from POST
   /train/runs to the first metrics event on the run's SSE stream (warm: the second run), and the
   playground's latency (sequential HTMX requests from one client, each for a new input, so the
   model really runs) idle vs while two runs train, watched over SSE; p50, p95 and the p95 ratio.

Every measurement uses a fresh seed, so no run is replayed from the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loopback import free_port, pct  # noqa: E402 - benchmarks/loopback.py: a script's folder is on the path

from app.lab.cluster import ray_instance  # noqa: E402
from app.lab.jobs import RayJobRunner  # noqa: E402
from app.lab.runs import RunSpec  # noqa: E402
from app.lab.store import RunStore  # noqa: E402
from app.web.settings import Settings  # noqa: E402
from model.config import Switches  # noqa: E402
from model.tasks import get_task  # noqa: E402
from model.train import TrainConfig, TrainingRun, model_config_for  # noqa: E402

SKIP_STEPS = 10  # start-up steps left out of steps/s
SIZES = {"d_model": 64, "n_heads": 4, "d_ff": 128, "layers": 2}
HX = {"HX-Request": "true"}
RUN_FORM_STEPS = 3000  # long enough to outlast the playground measurement


# ---- 1. job runner vs direct ------------------------------------------------------------------


def make_spec(steps: int, seed: int) -> RunSpec:
    task = get_task("reverse")
    model_config = model_config_for(task, d_model=SIZES["d_model"], n_heads=SIZES["n_heads"], d_ff=SIZES["d_ff"],
                                    n_encoder_layers=SIZES["layers"], n_decoder_layers=SIZES["layers"])
    train_config = TrainConfig(task="reverse", steps=steps, batch_size=64, seed=seed, eval_every=100_000)
    return RunSpec(model_config, Switches(norm_position="pre"), train_config)


def steps_per_s(elapsed: dict[int, float], steps: int) -> float:
    """From step SKIP_STEPS to step steps - 1: neither start-up nor the final evaluation."""
    first, last = SKIP_STEPS, steps - 1
    return (last - first) / (elapsed[last] - elapsed[first])


def train_direct(spec: RunSpec) -> float:

    run = TrainingRun(spec.model, spec.switches, spec.train)
    elapsed = {m.step: m.elapsed_s for m in run}
    return steps_per_s(elapsed, spec.train.steps)


async def train_via_runner(runner: RayJobRunner, spec: RunSpec) -> tuple[float, float]:
    """(steps/s, wall-clock seconds from submit to done), watching the events as a page does."""
    start = time.perf_counter()
    record, replayed = runner.submit(spec, "bench")
    if replayed:
        raise RuntimeError(f"run {record.id} was replayed from the store; the seed must be new")
    elapsed: dict[int, float] = {}
    final = None
    async for event in runner.events(record.id):
        if event.kind == "metrics":
            elapsed.update((row["step"], row["elapsed_s"]) for row in event.data)
        elif event.kind in ("done", "failed", "cancelled"):
            final = event
            break
    wall = time.perf_counter() - start
    if final is None or final.kind != "done":
        raise RuntimeError(f"run {record.id} ended as {final and final.kind}: {final and final.data}")
    return steps_per_s(elapsed, spec.train.steps), wall


def bench_runner(steps: int, repeats: int, rng: random.Random) -> None:
    direct, via_runner, walls = [], [], []
    with (tempfile.TemporaryDirectory(prefix="addnorm-bench-") as tmp, RunStore(Path(tmp) / "runs.sqlite3") as store,
          ray_instance(Settings(data_dir=tmp, workers=1))):
        runner = RayJobRunner(store, max_running=1)
        runner.start()
        try:
            for _ in range(repeats):  # interleaved, so drift in the machine's speed hits both alike
                direct.append(train_direct(make_spec(steps, rng.randrange(2**31))))
                rate, wall = asyncio.run(train_via_runner(runner, make_spec(steps, rng.randrange(2**31))))
                via_runner.append(rate)
                walls.append(wall)
        finally:
            runner.stop()
    d, r = statistics.median(direct), statistics.median(via_runner)
    ideal = steps / d  # the whole run at the direct rate
    print(f"training {steps} steps (reverse, {SIZES['layers']}+{SIZES['layers']} layers, d_model "
          f"{SIZES['d_model']}, batch 64, Pre-LN, 1 thread), median of {repeats}:")
    print(f"  direct TrainingRun: {d:.1f} steps/s ({', '.join(f'{x:.1f}' for x in direct)})")
    print(f"  RayJobRunner (Ray task, events streamed and stored, watched): {r:.1f} steps/s "
          f"({', '.join(f'{x:.1f}' for x in via_runner)}); wall-clock submit to done "
          f"{', '.join(f'{w:.1f}' for w in walls)} s (the first starts a Ray worker; {steps} steps at the direct "
          f"rate take {ideal:.1f} s)")
    print(f"  steps/s through the job system = {r / d:.3f}x the engine called directly (target >= 0.90x)")


# ---- 2. playground latency while a run trains --------------------------------------------------




def new_inputs(count: int, rng: random.Random, seen: set[str]) -> list[str]:
    """Digit strings the server has not traced yet (each request is a cache miss)."""
    inputs = []
    while len(inputs) < count:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10)))
        if digits not in seen:
            seen.add(digits)
            inputs.append(digits)
    return inputs


def playground_times(client: httpx.Client, inputs: list[str]) -> list[float]:
    times = []
    for digits in inputs:
        start = time.perf_counter()
        response = client.get(f"/playground?input={digits}", headers=HX)
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return times


class RunWatcher(threading.Thread):
    """Keeps the run's SSE stream open (as its page does) and notes the last step, the status and when the
    first metrics arrived."""

    def __init__(self, base: str, run_id: int):
        super().__init__(daemon=True, name=f"watch-run-{run_id}")
        self.url = f"{base}/train/runs/{run_id}/events"
        self.last_step = 0
        self.status = "connecting"
        self.first_metrics_at: float | None = None
        self.training = threading.Event()  # the first metrics have arrived
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10, read=60)) as client, client.stream("GET", self.url) as resp:
                resp.raise_for_status()
                kind = None
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        kind = line.split(":", 1)[1].strip()
                    elif line.startswith("data:"):
                        data = json.loads(line.split(":", 1)[1])
                        if kind == "metrics" and data:
                            self.first_metrics_at = self.first_metrics_at or time.perf_counter()
                            self.last_step = data[-1]["step"]
                            self.status = "running"
                            self.training.set()
                        elif kind == "status":
                            self.status = data["status"]
                            if self.status in ("done", "failed", "cancelled"):
                                return
        except BaseException as error:  # reported by the main thread
            self.error = error
        finally:
            self.training.set()  # never leave the main thread waiting


def start_watched_run(client: httpx.Client, base: str, steps: int, rng: random.Random) -> tuple[int, RunWatcher, float]:
    """(run id, its watcher, seconds from POST to the first metrics event)."""
    form = {"task": "reverse", "layers": SIZES["layers"], "d_model": SIZES["d_model"], "n_heads": SIZES["n_heads"],
            "d_ff": SIZES["d_ff"], "steps": steps, "seed": rng.randrange(1_000_000), "norm_position": "pre"}
    posted = time.perf_counter()
    response = client.post("/train/runs", data={k: str(v) for k, v in form.items()}, headers=HX)
    response.raise_for_status()
    match = re.search(r'data-run-id="(\d+)"', response.text)
    if match is None:
        raise RuntimeError("no data-run-id in the response to POST /train/runs")
    run_id = int(match.group(1))
    watcher = RunWatcher(base, run_id)
    watcher.start()
    if not watcher.training.wait(60) or watcher.error or watcher.status != "running":
        raise RuntimeError(f"run {run_id} did not start training: {watcher.status}, {watcher.error}")
    return run_id, watcher, watcher.first_metrics_at - posted


def ray_memory_mb(server_pid: int) -> float:
    """Unique memory of every process the server started (the embedded Ray instance and its idle workers)."""
    total = 0
    for process in psutil.Process(server_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
            total += process.memory_full_info().uss
    return total / (1 << 20)


def bench_playground(requests: int, rng: random.Random) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="addnorm-bench-") as tmp:
        env = {**os.environ, "ADDNORM_DATA_DIR": tmp, "ADDNORM_WORKERS": "2"}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                                   "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env)
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                for _ in range(600):
                    try:
                        client.get("/api/models")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                else:
                    raise RuntimeError("the server did not start within 60 s")
                time.sleep(3)  # let Ray's start-up settle
                idle_memory = ray_memory_mb(server.pid)
                seen: set[str] = set()
                playground_times(client, new_inputs(5, rng, seen))  # warm-up, not timed
                idle = playground_times(client, new_inputs(requests, rng, seen))

                _, warmup, cold_start = start_watched_run(client, base, 30, rng)  # starts the Ray workers
                warmup.join(60)
                runs = [start_watched_run(client, base, RUN_FORM_STEPS, rng) for _ in range(2)]
                try:
                    steps_before, start = [w.last_step for _, w, _ in runs], time.perf_counter()
                    busy = playground_times(client, new_inputs(requests, rng, seen))
                    seconds = time.perf_counter() - start
                    rates = [(w.last_step - b) / seconds for (_, w, _), b in zip(runs, steps_before, strict=True)]
                    statuses = [w.status for _, w, _ in runs]
                finally:
                    for run_id, watcher, _ in runs:
                        client.post(f"/train/runs/{run_id}/cancel")
                        watcher.join(15)
        finally:
            server.terminate()
            server.wait(30)
    if any(status != "running" for status in statuses):
        print(f"warning: the runs were {statuses} by the end of the measurement, not both running")
    print(f"server with two training slots (ADDNORM_WORKERS=2), {requests} sequential HTMX playground requests "
          f"from 1 client, each a new input (the model runs):")
    print(f"  memory of the idle embedded Ray instance: {idle_memory:.0f} MB (unique memory of its processes)")
    warm = ", ".join(f"{s:.2f}" for _, _, s in runs)
    print(f"  POST /train/runs to the first metrics event: cold {cold_start:.2f} s (first run starts a worker); "
          f"warm {warm} s (target <= 1 s)")
    print(f"  idle: p50 {pct(idle, 50):.1f} ms, p95 {pct(idle, 95):.1f} ms")
    print(f"  while two runs train ({SIZES['layers']}+{SIZES['layers']} layers, the lab's default of 3 seeds each, "
          "watched over SSE, "
          f"{', '.join(f'{r:.0f}' for r in rates)} steps/s): p50 {pct(busy, 50):.1f} ms, p95 {pct(busy, 95):.1f} ms")
    print(f"  p95 during training / idle = {pct(busy, 95) / pct(idle, 95):.2f}x (target <= 2x); "
          f"p50 ratio {pct(busy, 50) / pct(idle, 50):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300, help="steps per training run in part 1")
    parser.add_argument("--repeats", type=int, default=3, help="direct and runner runs each, interleaved")
    parser.add_argument("--requests", type=int, default=60, help="playground requests per measurement")
    args = parser.parse_args()
    if args.steps < SKIP_STEPS + 10:
        parser.error(f"--steps must be at least {SKIP_STEPS + 10}")
    torch.set_num_threads(1)  # as the worker does
    rng = random.Random()  # fresh seeds every time: a stored run with the same spec would be replayed
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU(s)")
    bench_runner(args.steps, args.repeats, rng)
    bench_playground(args.requests, rng)


if __name__ == "__main__":
    main()
