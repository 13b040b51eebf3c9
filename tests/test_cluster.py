"""The server with its own Ray instance, and the server on a Ray cluster of two machines (two Ray nodes on the
loopback), each in processes of their own: a killed server leaves no training behind, a run on the second
machine streams to the page and lands in the store, and a lost machine fails its run instead of hanging."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psutil
from test_jobs import wait_for

RAY = str(Path(sys.executable).with_name("ray"))
SMALL_RUN = {"task": "copy", "layers": "1", "d_model": "16", "n_heads": "2", "d_ff": "32", "batch_size": "16"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(data_dir: Path, **env: str):
    """uvicorn app.main:app in a process of its own; yields (base url, the process)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, "ADDNORM_DATA_DIR": str(data_dir), "ADDNORM_WORKERS": "1", **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), timeout=90)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/api/models", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_run(url: str, steps: int) -> int:
    r = httpx.post(url + "/train/runs", data={**SMALL_RUN, "steps": str(steps)}, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text
    return httpx.get(url + "/api/runs").json()[0]["id"]


def run_of(url: str, run_id: int) -> dict:
    return httpx.get(f"{url}/api/runs/{run_id}/metrics").json()


def _training(process: psutil.Process) -> bool:
    """Whether a process is still a live training worker (it may turn zombie or vanish while being asked)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE and "train_seeds" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def test_a_killed_server_leaves_no_training_behind_and_its_run_is_failed_on_restart(tmp_path):
    with server(tmp_path) as (url, process):
        run_id = start_run(url, steps=5000)
        with httpx.stream("GET", f"{url}/train/runs/{run_id}/events", timeout=30) as events:  # watch it train
            next(line for line in events.iter_lines() if line.startswith("event: metrics"))
            left = psutil.Process(process.pid).children(recursive=True)
            assert any((p.cmdline() or [""])[0].startswith("ray::train_seeds") for p in left)
            os.kill(process.pid, signal.SIGKILL)
        wait_for(lambda: not any(_training(p) for p in left), timeout=10)
    with server(tmp_path) as (url, _):  # the restart ends what Ray left behind and fails the interrupted run
        assert not [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        record = run_of(url, run_id)["run"]
        assert record["status"] == "failed" and "interrupted" in record["error"]
        assert start_run(url, steps=20) != run_id


@contextmanager
def two_machines():
    """A head node with no CPUs and a second node with one (and a resource that names it): a run can only
    train on the second."""
    port = free_port()
    common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                             *common], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes = [head]
    try:
        time.sleep(4)
        second = subprocess.Popen([RAY, "start", f"--address=127.0.0.1:{port}", "--num-cpus=1",
                                   "--resources=" + json.dumps({"second_machine": 1}), *common], env=env,
                                  start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        nodes.append(second)
        yield f"127.0.0.1:{port}", second
    finally:
        for node in reversed(nodes):
            with suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)  # the node and every process it started


def test_a_run_on_a_second_machine_streams_to_the_page_and_a_lost_machine_fails_its_run(tmp_path):
    with two_machines() as (address, second), server(tmp_path, ADDNORM_RAY_ADDRESS=address,
                                                     RAY_AUTH_MODE="token") as (url, _):
        run_id = start_run(url, steps=30)
        with httpx.stream("GET", f"{url}/train/runs/{run_id}/events", timeout=120) as events:
            lines = []
            for line in events.iter_lines():
                lines.append(line)
                if line.startswith("data:") and '"status": "done"' in line:
                    break
        assert "event: metrics" in lines
        stored = run_of(url, run_id)
        assert stored["run"]["status"] == "done" and stored["run"]["has_checkpoint"]
        assert [row["step"] for row in stored["metrics"]][-1] == 30

        lost = start_run(url, steps=5000)
        with httpx.stream("GET", f"{url}/train/runs/{lost}/events", timeout=60) as events:
            next(line for line in events.iter_lines() if line.startswith("event: metrics"))
            os.killpg(second.pid, signal.SIGKILL)  # the second machine goes away mid-run
            wait_for(lambda: run_of(url, lost)["run"]["status"] == "failed", timeout=60)
        assert "stopped unexpectedly" in run_of(url, lost)["run"]["error"]
