"""Depth sweeps: validated up front, run in the background one after another, results per cell."""

import time

import pytest
from fastapi.testclient import TestClient

from app.factory import create_app
from app.web.settings import Settings

FORM = {"task": "copy", "d_model": "16", "n_heads": "2", "d_ff": "32", "steps": "20", "seed": "5"}


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        yield c


def test_a_sweep_trains_every_cell_in_the_background(client):
    r = client.post("/train/sweeps", data={**FORM, "seeds": "2", "depths": ["1", "2"],
                                           "variants": ["pre_ln", "no_residual"]}, follow_redirects=False)
    assert r.status_code == 303
    url = r.headers["location"]
    deadline = time.time() + 120
    while time.time() < deadline:
        page = client.get(url, headers={"HX-Request": "true"}).text
        if "Every run of this sweep has finished" in page:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the sweep did not finish")
    runs = client.get("/api/runs").json()  # every cell on two seeds, each seed a run of its own
    assert len(runs) == 8 and {r["status"] for r in runs} == {"done"}
    cells = sorted((r["spec"]["model_config"]["n_encoder_layers"], r["spec"]["switches"]["residual"],
                    r["spec"]["train_config"]["seed"]) for r in runs)
    assert cells == [(depth, residual, seed) for depth in (1, 2) for residual in (False, True) for seed in (5, 6)]
    assert page.count(" of 2 seeds") == 4  # how many seeds of each cell reached the target
    assert page.count("<tr>") == 5  # header + 4 cells
    assert "hx-trigger=\"every 3s\"" not in page  # finished: the page stops polling


@pytest.mark.parametrize(("data", "message"), [
    ({"depths": [], "variants": ["pre_ln"]}, "choose at least one depth"),
    ({"depths": ["5"], "variants": ["pre_ln"]}, "5 is not allowed"),
    ({"depths": ["2"], "variants": ["magic"]}, "magic&#39; is not allowed"),
    ({"depths": ["1", "2", "3", "4", "6"], "variants": ["pre_ln", "post_ln", "no_residual", "no_norm", "batch_norm",
                                                        "pe_every_layer", "post_ln_warmup"]}, "more than a sweep"),
])
def test_bad_sweeps_are_refused_before_anything_trains(client, data, message):
    r = client.post("/train/sweeps", data={**FORM, **data}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and message in r.text
    assert client.get("/api/runs").json() == []


def test_a_variant_changes_exactly_what_it_names():
    from app.lab.form import parse_run_request
    from app.lab.sweeps import VARIANTS, variant_spec
    from app.web.settings import Settings

    base, _ = parse_run_request({"task": "copy", "steps": "100", "seed": "3"}, Settings())
    spec = variant_spec(base, VARIANTS["post_ln_warmup"], 4)
    changed = {f for k, v in base.to_dict().items() if k != "task" for f in v if v[f] != spec.to_dict()[k][f]}
    assert base.switches.norm_position == "post"  # so Post-LN + warm-up changes only the warm-up and the depth
    assert changed == {"warmup_steps", "n_encoder_layers", "n_decoder_layers"}
    assert spec.train.warmup_steps == 200 and spec.model.n_decoder_layers == 4
    assert variant_spec(base, VARIANTS["no_residual"], 2).switches.residual is False


def test_a_whole_sweep_can_be_stopped_and_stays_stopped_after_a_restart(tmp_path):
    settings = Settings(data_dir=tmp_path)
    # reverse, not copy: a first run that reached its target before the stop came would end done, not cancelled
    form = {**FORM, "task": "reverse", "steps": "5000", "seeds": "1", "depths": ["1", "2"],
            "variants": ["pre_ln", "no_residual"]}
    with TestClient(create_app(settings)) as client:
        url = client.post("/train/sweeps", data=form, follow_redirects=False).headers["location"]
        deadline = time.time() + 60
        while not any(r["status"] == "running" for r in client.get("/api/runs").json()):
            assert time.time() < deadline, "the sweep's first run did not start"
            time.sleep(0.2)
        page = client.post(url + "/cancel", headers={"HX-Request": "true"}).text
        assert "Stopped:" in page and "Stop the sweep" not in page and "every 3s" not in page
        deadline = time.time() + 30
        while any(r["status"] in ("queued", "running") for r in client.get("/api/runs").json()):
            assert time.time() < deadline, "a run of the stopped sweep is still training"
            time.sleep(0.2)
        runs = client.get("/api/runs").json()
        assert 1 <= len(runs) < 4  # the sweep had started some of its runs, not all
        assert all(r["status"] == "cancelled" and r["error"] == "the sweep was stopped" for r in runs), \
            [(r["status"], r["error"]) for r in runs]
    with TestClient(create_app(settings)) as client:  # a restart does not resume it
        time.sleep(1)
        assert len(client.get("/api/runs").json()) == len(runs)
        assert client.get(url, headers={"HX-Request": "true"}).text.count("status-cancelled") == 4
