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
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace="addnorm", log_to_driver=False, logging_level=logging.WARNING)
    else:
        end_leftovers(settings.data_dir)
        # "local": a new instance even if `ray start` left one running on this machine
        ray.init(address="local", num_cpus=settings.workers, include_dashboard=False, namespace="addnorm",
                 log_to_driver=False, logging_level=logging.WARNING, object_store_memory=OBJECT_STORE_MB << 20)
        _record_processes(settings.data_dir)
    try:
        yield True
    finally:
        ray.shutdown()
        (Path(settings.data_dir) / PROCESSES_FILE).unlink(missing_ok=True)


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
