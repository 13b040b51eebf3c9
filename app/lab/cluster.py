"""The Ray instance training runs on: an embedded one on this machine, or a cluster the server joins.

    with ray_instance(settings):  # ADDNORM_RAY_ADDRESS set: join that cluster; else start one here
        ...

An embedded instance lives exactly as long as the server. If the server is killed, Ray's own
processes die with it, except two helper agents that outlive it; their ids are written to the data
directory, and the next start ends whatever of them is still there.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

OBJECT_STORE_MB = 256  # checkpoints pass through it; Ray's default (30% of RAM) is far more than a laptop spares
PROCESSES_FILE = "ray-processes.json"


def _ray():
    import ray  # imported on first use: the playground alone never needs it

    return ray


@contextmanager
def ray_instance(settings) -> Iterator[bool]:
    """Ray ready for training tasks; yields whether this server started (and so owns) the instance.
    An instance that is already up in this process (a test session's) is used as it is."""
    ray = _ray()
    if ray.is_initialized():
        yield False
        return
    with _server_signal_handlers():
        if settings.ray_address:
            ray.init(address=settings.ray_address, namespace="addnorm", log_to_driver=False,
                     logging_level=logging.WARNING)
        else:
            end_leftovers(settings.data_dir)
            # "local": a new instance even if `ray start` left one running on this machine
            ray.init(address="local", num_cpus=settings.workers, include_dashboard=False, namespace="addnorm",
                     log_to_driver=False, logging_level=logging.WARNING, object_store_memory=OBJECT_STORE_MB << 20)
            _record_processes(settings.data_dir)
    warm_workers()
    try:
        yield True
    finally:
        ray.shutdown()
        (Path(settings.data_dir) / PROCESSES_FILE).unlink(missing_ok=True)


@contextmanager
def _server_signal_handlers() -> Iterator[None]:
    """Keep the web server's own SIGTERM/SIGINT handlers: Ray's would exit mid-response instead of letting
    the server shut down (and stop Ray) in order."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in kept.items():
            signal.signal(sig, handler)


def warm_workers() -> None:
    """Start one worker per training slot now and train a tiny model there for two steps (imports, first
    kernels, first optimizer step), so a learner's first run starts at once. The tasks overlap (each waits
    a moment), so each lands in a worker of its own; nothing waits for them."""
    warm = _ray().remote(num_cpus=1)(_train_a_tiny_model)
    for _ in range(training_slots()):
        warm.remote()


def _train_a_tiny_model() -> None:
    import time

    from app.lab.training_task import train_seeds
    from model.config import Switches, TrainConfig
    from model.tasks import get_task
    from model.train import model_config_for

    config = model_config_for(get_task("copy"), d_model=8, n_heads=1, d_ff=8, n_encoder_layers=1, n_decoder_layers=1)
    for _ in train_seeds(config, Switches(), TrainConfig(task="copy", steps=2, eval_every=2, eval_size=2), [0]):
        pass
    time.sleep(1)


def _record_processes(data_dir: Path) -> None:
    """Note the processes the embedded instance started (pid and start time, so a reused pid is not taken)."""
    children = psutil.Process(os.getpid()).children(recursive=True)
    known = [{"pid": p.pid, "started": p.create_time()} for p in children]
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    (Path(data_dir) / PROCESSES_FILE).write_text(json.dumps(known))


def end_leftovers(data_dir: Path) -> int:
    """End the processes a killed server's instance left behind; returns how many were still running."""
    path = Path(data_dir) / PROCESSES_FILE
    if not path.exists():
        return 0
    ended = 0
    for entry in json.loads(path.read_text() or "[]"):
        try:
            process = psutil.Process(entry["pid"])
            if abs(process.create_time() - entry["started"]) < 1:
                process.kill()
                ended += 1
        except psutil.Error:
            pass  # gone already
    path.unlink()
    return ended


def training_slots() -> int:
    """How many runs may train at once: one per CPU in the instance (a cluster grows as machines join)."""
    return max(1, int(_ray().cluster_resources().get("CPU", 1)))
