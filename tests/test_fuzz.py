"""Every route fuzzed from the app's own OpenAPI document (schemathesis, in-process over ASGI, a fixed seed): no
request gets a 5xx or takes more than a few seconds, and every response is one the document declares (status
code, content type, body schema).

A tiny run and a tiny sweep are started first, so that the fuzzed ids also find a run and a sweep that exist.
The routes that start training or measure the claims get a few examples only, on a server whose limits keep
any run tiny (20 steps, 2 layers), and whatever was started is stopped before the test ends."""

import time
from contextlib import suppress

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.factory import create_app
from app.web.settings import Settings

EXAMPLES = 50  # per operation, positive (schema-valid) requests and then as many negative ones
FEW = {"POST /train/runs": 4, "POST /train/sweeps": 4, "POST /claims/recompute": 1, "POST /claims/measure-here": 2,
       "POST /train/runs/{run_id}/cancel": 8, "POST /train/sweeps/{sweep_id}/cancel": 8}
SLOW_S = 5.0  # a response later than this fails (an event stream is cut here, and what it sent is checked)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MIN_REQUESTS = 1000
BUDGET_S = 120
FORM = "application/x-www-form-urlencoded"
TINY = {"task": "copy", "d_model": "16", "n_heads": "2", "d_ff": "32", "steps": "10", "seeds": "1"}
# A few requests that succeed: a run and a sweep (both tiny), so that fuzzed ids meet some that exist.
STARTS = [("POST", "/train/runs", {**TINY, "layers": "1"}),
          ("POST", "/train/sweeps", {**TINY, "depths": ["1"], "variants": ["pre_ln"]})]


@pytest.fixture
def app(tmp_path):
    """Limits that keep any run tiny; schemathesis starts the app's lifespan and ends it with the test."""
    return create_app(Settings(data_dir=tmp_path, max_steps=20, max_layers=2, max_queue=2, max_queue_per_learner=2,
                               max_checkpoint_mb=1, max_store_mb=20))


def _call(case, requests: list[float]):
    started = time.perf_counter()
    response = case.call(timeout=SLOW_S)
    took = time.perf_counter() - started
    requests.append(took)
    case.validate_response(response, checks=CHECKS)
    streamed = response.headers.get("content-type", [""])[0].startswith("text/event-stream")
    assert streamed or took < SLOW_S, f"{case.operation.label} took {took:.1f} s"
    return response


def _fuzz(operation, mode: GenerationMode, examples: int, requests: list[float]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case):
        _call(case, requests)

    run()


def _stop_what_was_started(app) -> int:
    """Stop every sweep and every waiting or training run, and wait until none is left; how many runs there were."""
    state = app.state
    for sweep in state.store.sweeps(limit=1000):
        state.sweeps.cancel(sweep["id"])
    deadline = time.time() + 30
    while unfinished := [run for run in state.store.list(limit=1000) if run.status in ("queued", "running")]:
        assert time.time() < deadline, f"runs still training: {[run.id for run in unfinished]}"
        for run in unfinished:
            state.runner.cancel(run.id)
        time.sleep(0.2)
    return len(state.store.list(limit=1000))


def test_fuzzing_every_route_finds_no_server_error_and_no_undeclared_response(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    requests: list[float] = []
    started = time.perf_counter()
    try:
        for method, path, form in STARTS:
            response = _call(schema[path][method].Case(body=form, media_type=FORM), requests)
            assert response.status_code in (200, 303), response.text  # the sweep answers with its page
        for result in schema.get_all_operations():
            operation = result.ok()
            examples = FEW.get(operation.label, EXAMPLES)
            _fuzz(operation, GenerationMode.POSITIVE, examples, requests)
            with suppress(Unsatisfiable):  # every value its schema allows is a string: nothing can violate it
                _fuzz(operation, GenerationMode.NEGATIVE, examples, requests)
    finally:
        runs = _stop_what_was_started(app)
    took = time.perf_counter() - started
    print(f"\nfuzzing made {len(requests)} requests in {took:.0f} s (slowest {max(requests):.2f} s); "
          f"{runs} runs were started and none is left training")
    assert len(requests) >= MIN_REQUESTS
    assert took < BUDGET_S
    assert runs >= 2  # the tiny run and the sweep's run
