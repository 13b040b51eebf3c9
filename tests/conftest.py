"""Shared fixtures: a live server for browser tests, and Debian's chromium for Playwright."""

import atexit
import os
import shutil
import tempfile

import pytest

# Apps a test makes without settings of its own keep their state in a temporary directory, never in the
# checkout's ./data (which `make run` uses).
TEST_DATA_DIR = tempfile.mkdtemp(prefix="addnorm-tests-")
atexit.register(shutil.rmtree, TEST_DATA_DIR, ignore_errors=True)
os.environ.setdefault("ADDNORM_DATA_DIR", TEST_DATA_DIR)
# Tests start from an empty store and say so; the ones about the shipped results turn them on.
os.environ.setdefault("ADDNORM_SHIPPED_RESULTS", "0")
# Apps made in tests run the playground's model on a thread (no worker processes to start for each app); the
# live server and tests/test_model_processes.py use worker processes.
os.environ.setdefault("ADDNORM_MODEL_PROCESSES", "0")
# The test client asks for the host "testserver"; live servers listen on 127.0.0.1.
os.environ.setdefault("ADDNORM_ALLOWED_HOSTS", "testserver,127.0.0.1,localhost")

# The suite passes on one thread and on two (CI runs the numerical tests both ways, .ci/run): another thread count
# changes the order of float sums, so only a figure's last digits, never a verdict or a comparison at its tolerance.
TEST_THREADS = int(os.environ.get("ADDNORM_TEST_THREADS", "1"))
os.environ.setdefault("ADDNORM_TORCH_THREADS", str(TEST_THREADS))

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pytest_collection_modifyitems(config, items):
    """Browser tests are required in CI; elsewhere they skip when there is no chromium."""
    if os.path.exists(CHROMIUM) or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="no chromium (apt-get install -y chromium)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def torch_threads():
    """Every test starts on TEST_THREADS threads, whatever the one before it set."""
    import torch

    torch.set_num_threads(TEST_THREADS)
    yield


@pytest.fixture(scope="session", autouse=True)
def ray_for_the_session(tmp_path_factory):
    """One embedded Ray instance for every test (starting one takes seconds); apps made in tests use it."""
    from app.lab.cluster import ray_instance
    from app.web.settings import Settings

    with ray_instance(Settings(data_dir=tmp_path_factory.mktemp("ray"), workers=2)):
        yield


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """The real app under uvicorn on a free loopback port, for the whole session, with a data directory of its own
    (another app's startup would otherwise take the runs it is training for abandoned)."""
    from helpers import serving

    from app.web.settings import Settings

    # as a server runs: the playground's model on a worker process
    with serving(Settings(data_dir=tmp_path_factory.mktemp("data"), model_processes=1)) as url:
        yield url
