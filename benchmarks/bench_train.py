"""Training figures: what the job runner costs a run, and what a run costs the playground.

    python benchmarks/bench_train.py [--steps 300] [--repeats 3] [--requests 60]

Prints:
1. Training throughput of one spec (reverse, 2+2 layers, d_model 64, batch 64, Pre-LN) through
   LocalJobRunner (a worker process, metrics streamed to a temporary RunStore and to a subscriber,
   as a page watches) vs a TrainingRun iterated in this process on one thread (the worker uses one
   too): steps/s from the metrics' elapsed_s, leaving out the first 10 steps (start-up) and the
   last (its final evaluation); the runner's wall-clock from submit to done (process start, the
   checkpoint and the store included); and the runner's overhead ratio against the direct run.
2. Playground latency (sequential HTMX requests from one client, each for a new input, so the
   model really runs) while the server is idle vs while it trains a run started through its own
   API and watched over SSE, under uvicorn on a free loopback port; p50, p95 and the p95 ratio.

Every measurement uses a fresh seed, so no run is replayed from the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.lab.jobs import LocalJobRunner  # noqa: E402
from app.lab.store import RunSpec, RunStore  # noqa: E402
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
    return RunSpec("reverse", model_config.to_dict(), Switches(norm_position="pre").to_dict(), train_config.to_dict())


def steps_per_s(elapsed: dict[int, float], steps: int) -> float:
    """From step SKIP_STEPS to step steps - 1: neither start-up nor the final evaluation."""
    first, last = SKIP_STEPS, steps - 1
    return (last - first) / (elapsed[last] - elapsed[first])


def train_direct(spec: RunSpec) -> float:
    from model.config import ModelConfig

    run = TrainingRun(ModelConfig.from_dict(spec.model_config), Switches.from_dict(spec.switches),
                      TrainConfig.from_dict(spec.train_config))
    elapsed = {m.step: m.elapsed_s for m in run}
    return steps_per_s(elapsed, spec.train_config["steps"])


async def train_via_runner(runner: LocalJobRunner, spec: RunSpec) -> tuple[float, float]:
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
    return steps_per_s(elapsed, spec.train_config["steps"]), wall


def bench_runner(steps: int, repeats: int, rng: random.Random) -> None:
    direct, via_runner, walls = [], [], []
    with tempfile.TemporaryDirectory(prefix="addnorm-bench-") as tmp, RunStore(Path(tmp) / "runs.sqlite3") as store:
        runner = LocalJobRunner(store, workers=1)
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
    print(f"  LocalJobRunner (worker process, events streamed and stored, watched): {r:.1f} steps/s "
          f"({', '.join(f'{x:.1f}' for x in via_runner)}); wall-clock submit to done "
          f"{', '.join(f'{w:.1f}' for w in walls)} s (first starts the forkserver; {steps} steps at the direct "
          f"rate take {ideal:.1f} s)")
    print(f"  runner throughput = {r / d:.3f}x direct, overhead {(1 - r / d) * 100:+.1f}% (target <= 10%)")


# ---- 2. playground latency while a run trains --------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


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
    """Keeps the run's SSE stream open (as its page does) and notes the last step and status."""

    def __init__(self, base: str, run_id: int):
        super().__init__(daemon=True, name=f"watch-run-{run_id}")
        self.url = f"{base}/train/runs/{run_id}/events"
        self.last_step = 0
        self.status = "connecting"
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


def bench_playground(requests: int, rng: random.Random) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="addnorm-bench-") as tmp:
        env = {**os.environ, "ADDNORM_DATA_DIR": tmp}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
                                   "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env)
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                for _ in range(300):
                    try:
                        client.get("/api/models")
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                else:
                    raise RuntimeError("the server did not start within 30 s")
                seen: set[str] = set()
                playground_times(client, new_inputs(5, rng, seen))  # warm-up, not timed
                idle = playground_times(client, new_inputs(requests, rng, seen))

                form = {"task": "reverse", "layers": SIZES["layers"], "d_model": SIZES["d_model"],
                        "n_heads": SIZES["n_heads"], "d_ff": SIZES["d_ff"], "steps": RUN_FORM_STEPS,
                        "seed": rng.randrange(1_000_000), "norm_position": "pre"}
                response = client.post("/train/runs", data={k: str(v) for k, v in form.items()}, headers=HX)
                response.raise_for_status()
                match = re.search(r'data-run-id="(\d+)"', response.text)
                if match is None:
                    raise RuntimeError("no data-run-id in the response to POST /train/runs")
                run_id = int(match.group(1))
                watcher = RunWatcher(base, run_id)
                watcher.start()
                try:
                    if not watcher.training.wait(60) or watcher.error or watcher.status != "running":
                        raise RuntimeError(f"run {run_id} did not start training: {watcher.status}, {watcher.error}")
                    step_before, start = watcher.last_step, time.perf_counter()
                    busy = playground_times(client, new_inputs(requests, rng, seen))
                    seconds, step_after = time.perf_counter() - start, watcher.last_step
                    status_during = watcher.status
                finally:
                    client.post(f"/train/runs/{run_id}/cancel")
                    watcher.join(15)
        finally:
            server.terminate()
            server.wait(10)
    if status_during != "running":
        print(f"warning: run {run_id} was {status_during} by the end of the measurement, not running")
    print(f"playground, {requests} sequential HTMX requests from 1 client, each a new input (the model runs):")
    print(f"  idle: p50 {pct(idle, 50):.1f} ms, p95 {pct(idle, 95):.1f} ms")
    print(f"  while run {run_id} trains ({form['layers']}+{form['layers']} layers, watched over SSE; it went "
          f"from step {step_before} to {step_after} in {seconds:.1f} s, "
          f"{(step_after - step_before) / seconds:.1f} steps/s): "
          f"p50 {pct(busy, 50):.1f} ms, p95 {pct(busy, 95):.1f} ms")
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
