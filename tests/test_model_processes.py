"""The playground's model work on worker processes (ADDNORM_MODEL_PROCESSES): the same pages as on threads,
runs trained after the workers started, bad input still a clear 4xx, and a killed worker replaced."""

import os
import pickle
import re
import signal

import pytest
from fastapi.testclient import TestClient

from app.factory import create_app
from app.web.errors import BadInput
from app.web.settings import Settings

HX = {"HX-Request": "true"}
TINY = {"task": "copy", "layers": "2", "d_model": "16", "n_heads": "2", "d_ff": "32", "steps": "10", "seeds": "1"}
STATES = ["input=31415&residual=off", "input=2718&norm=rms&norm_position=pre", "input=161803&causal_mask=off"]


def strip_ids(html: str) -> str:
    return re.sub(r'id="arch-[^"]*"|#arch-[^)"]*', "", html)  # the diagram's element ids are unique per drawing


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    with TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("pool"), model_processes=1))) as client:
        yield client


def zoo_cache_size() -> int:
    """In a worker: how many zoo models it holds loaded."""
    from model.zoo import load_zoo_model

    return load_zoo_model.cache_info().currsize


def test_the_workers_are_warm_before_the_server_is_up(pooled):
    """A hall clicking the moment the server answers waits for no model load: every zoo model is in each worker."""
    from model.zoo import load_manifest

    processes = pooled.app.state.model_processes
    assert all(future.done() for future in processes._warming)  # noqa: SLF001 - the lifespan waited for them
    loaded = pooled.portal.call(processes.run, "any", zoo_cache_size)  # on the app's event loop
    assert loaded == len(load_manifest())


def test_workers_serve_the_same_pages_as_threads(pooled):
    """The same partials as the routes' own functions give on a thread of this process."""
    from app.playground import routes
    from app.playground.state import parse_state

    assert pooled.app.state.model_processes is not None
    for query in STATES:
        params = dict(part.split("=") for part in query.split("&"))
        state = parse_state({**params, "step": "3"}, 200)
        expected = {"/playground": routes._results_html(state, "en", ""), "/playground/step": routes._step_html(
            state, "en"), "/playground/panel/gradients": routes._panel_html(state, "en", "gradients")}
        for path, html in expected.items():
            r = pooled.get(f"{path}?{query}&step=3", headers=HX)
            assert r.status_code == 200
            assert strip_ids(r.text) == strip_ids(html), f"{path}?{query}"
    full = pooled.get("/playground?input=31415&residual=off")
    assert full.status_code == 200 and 'id="state-form"' in full.text


def test_bad_input_found_by_a_worker_is_a_clear_4xx(pooled):
    r = pooled.get("/playground?input=12a45", headers=HX)
    assert r.status_code == 422 and "unknown token" in r.text
    error = pickle.loads(pickle.dumps(BadInput("input", "is empty", 413)))  # how it crosses back from a worker
    assert (error.field, error.message, error.status) == ("input", "is empty", 413)


def test_a_run_trained_after_the_workers_started_opens_on_them(pooled):
    r = pooled.post("/train/runs", data=TINY)
    assert r.status_code == 200, r.text
    run_id = int(re.search(r'data-run-id="(\d+)"', r.text).group(1))
    with pooled.stream("GET", f"/train/runs/{run_id}/events") as events:
        assert '"status": "done"' in "".join(events.iter_text())
    r = pooled.get(f"/playground?model=run-{run_id}&input=123&residual=off", headers=HX)
    assert r.status_code == 200 and "task=copy" in r.text  # the run's own model (the zoo has no copy model)


def test_a_killed_worker_is_replaced_and_the_request_still_answered(pooled):
    processes = pooled.app.state.model_processes
    (old,) = processes.worker_pids()
    os.kill(old, signal.SIGKILL)
    r = pooled.get("/playground?input=99991&residual=off", headers=HX)
    assert r.status_code == 200 and 'id="step-view"' in r.text
    (new,) = processes.worker_pids()
    assert new != old


def failing_warm_up() -> None:
    raise RuntimeError("a page that cannot be drawn")


def test_a_worker_whose_warm_up_fails_still_serves_the_other_work(tmp_path):
    from app.playground.compute import ModelProcesses

    processes = ModelProcesses(1, tmp_path, warm_up=failing_warm_up)
    processes.start()
    try:  # the pool's own futures: the worker started (a failed initializer breaks the pool) and answers
        processes._warming[0].result(timeout=120)  # noqa: SLF001
        assert processes._workers[0].submit(zoo_cache_size).result(timeout=60) >= 0  # noqa: SLF001
    finally:
        processes.stop()
