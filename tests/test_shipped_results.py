"""The results shipped with the app (model/zoo/results/): written from a run store, read back into a store in
memory that the claims read exactly as they read this server's own, and used until this server has its own."""


import pytest
import torch
from fastapi.testclient import TestClient
from helpers import GOOD, batch_norm_cells, depth_cells, fill_sweep, position_cells

from app.factory import create_app
from app.lab.precompute import PLANS
from app.lab.results import (
    RESULTS_DIR,
    RUNS_FILE,
    ResultSource,
    export_results,
    read_shipped,
    shipped_report,
)
from app.lab.store import RunStore
from app.teaching.claims import measure
from app.teaching.claims.common import is_noise
from app.web.settings import Settings

SEEDS = (0, 1)
FAKE = {"depth-residual-norm": depth_cells(no_norm_6={**GOOD, "drift": 2.0}, no_residual_6={"acc": 0.1, "reach": None}),
        "batch-vs-layer-norm": batch_norm_cells(1.0, 0.1), "position-encodings": position_cells(0.3, 0.1)}
PLANS_USED = {name: PLANS[name] for name in FAKE}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A store with fake runs of three plans on two seeds, and what it exports read back (the shipped store)."""
    path = tmp_path_factory.mktemp("results")
    local = RunStore(path / "runs.sqlite3")
    for plan, cells in FAKE.items():
        fill_sweep(local, plan, cells, seeds=SEEDS)
    written = export_results(local, PLANS_USED, SEEDS, Settings(data_dir=path), path / "out")
    yield local, read_shipped(written)
    local.close()


@pytest.mark.parametrize("claim", ["R3", "R4", "N2", "N3", "N4", "N5", "P4"])
def test_claims_read_the_shipped_runs_as_they_read_the_store_they_came_from(stores, claim):
    local, shipped = stores
    here, there = measure(claim, local), measure(claim, shipped)
    assert here.verdict == there.verdict != "not_measured"
    assert here.numbers.keys() == there.numbers.keys()
    for key, value in here.numbers.items():  # figures rounded to 6 digits in the file; run ids differ
        if "run_id" not in key:
            assert there.numbers[key] == (pytest.approx(value, rel=1e-4) if isinstance(value, float) else value), key


def test_the_shipped_store_holds_every_run_once_without_checkpoints(stores):
    local, shipped = stores
    runs = shipped.list(limit=1000)
    assert len(runs) == len({r.key for r in local.list(limit=1000)})  # pre_ln × 2 is in two plans, shipped once
    assert not any(r.has_checkpoint for r in runs) and all(r.status == "done" for r in runs)
    assert shipped.about["seeds"] == list(SEEDS) and shipped.about["command"] == "python -m app.lab.results"
    assert shipped.about["plans"] == list(PLANS_USED)
    assert shipped.fingerprint() == f"shipped:{shipped.digest}"  # fixed: the shipped report stays fresh


def test_an_incomplete_store_cannot_be_exported(tmp_path):
    with RunStore(tmp_path / "runs.sqlite3") as store:
        fill_sweep(store, "batch-vs-layer-norm", {("pre_ln", 2): dict(GOOD)})
        with pytest.raises(RuntimeError, match="batch_norm × 2 seed 0 has no finished run"):
            export_results(store, {"batch-vs-layer-norm": PLANS["batch-vs-layer-norm"]}, (0,), Settings(), tmp_path)


def test_claims_read_the_shipped_results_until_this_server_has_every_run(stores, tmp_path):
    local, shipped = stores
    with RunStore(tmp_path / "mine.sqlite3") as mine:
        source = ResultSource(mine, Settings(), shipped, PLANS_USED, SEEDS)
        assert source.current() == (shipped, "shipped")
        total = len({r.key for r in local.list(limit=1000)})
        assert source.progress_here() == {"done": 0, "total": total, "started": False, "eta_s": None}
        fill_sweep(mine, "batch-vs-layer-norm", FAKE["batch-vs-layer-norm"], seeds=SEEDS)
        assert source.current() == (shipped, "shipped")  # one plan of three: still the shipped results
        for plan in ("depth-residual-norm", "position-encodings"):
            fill_sweep(mine, plan, FAKE[plan], seeds=(0,))  # one seed of two
        assert source.current() == (shipped, "shipped")
        for plan, cells in FAKE.items():
            fill_sweep(mine, plan, cells, seeds=SEEDS)
        assert source.current() == (mine, "measured here") and source.progress_here()["done"] == total
        assert ResultSource(mine, Settings(), None).current() == (mine, "measured here")


def test_measure_again_here_starts_each_plan_once_and_again_when_the_plan_changed(stores, tmp_path):
    _, shipped = stores
    with RunStore(tmp_path / "mine.sqlite3") as mine:
        source, sweeps = ResultSource(mine, Settings(), shipped, PLANS_USED, SEEDS), RecordingSweeps(mine)
        assert len(source.measure_here(sweeps)) == len(PLANS_USED)
        assert source.progress_here()["started"] and source.progress_here()["eta_s"] is None  # nothing done yet
        assert source.measure_here(sweeps) == []  # a second click: every plan is already under way
        base, depths, variants = PLANS_USED["position-encodings"]
        changed = {**PLANS_USED, "position-encodings": (base, depths, variants[:2])}
        assert [name for name, _ in sweeps.created[len(PLANS_USED):]] == []
        ResultSource(mine, Settings(), shipped, changed, SEEDS).measure_here(sweeps)
        assert [name for name, _ in sweeps.created[len(PLANS_USED):]] == ["position-encodings"]


class RecordingSweeps:
    """Stands in for the lab's SweepScheduler: records each sweep in the store without training it."""

    def __init__(self, store=None):
        self.store, self.created = store, []

    def create(self, name, items):
        self.created.append((name, items))
        return self.store.create_sweep(name, items) if self.store else len(self.created)


# ---- the results in the repository -----------------------------------------------------------------


@pytest.fixture(scope="module")
def real():
    shipped = read_shipped(RESULTS_DIR / RUNS_FILE)
    assert shipped is not None, f"{RESULTS_DIR / RUNS_FILE} is missing: python -m app.lab.results"
    return shipped


def test_the_repository_ships_every_plan_on_five_seeds_in_a_few_mb(real):
    assert (RESULTS_DIR / RUNS_FILE).stat().st_size < 8e6
    assert real.about["plans"] == list(PLANS) and real.about["seeds"] == [0, 1, 2, 3, 4]
    assert ResultSource(real, Settings(), None).local_complete()  # every cell × seed finished
    assert {"host", "system", "cpus", "torch"} <= set(real.about["machine"]) and real.about["created"]


def test_the_shipped_verdicts_are_what_this_code_measures_from_the_shipped_runs(real):
    """Guards against shipping a report the code no longer gives: `python -m app.lab.results --no-train`
    writes it again."""
    from app.teaching.claims import measure_all

    report = shipped_report()
    assert report["source"] == "shipped" and report["fingerprint"] == real.fingerprint()
    measured = measure_all(real)
    assert {c: v.verdict for c, v in measured.items()} == {c: v["verdict"] for c, v in report["verdicts"].items()}
    for claim, verdict in measured.items():
        shipped = report["verdicts"][claim]
        assert verdict.floors == shipped.get("floors", {}) and verdict.numbers.keys() == shipped["numbers"].keys()
        for key, value in verdict.numbers.items():
            assert same_figure(value, shipped["numbers"][key], verdict.floors.get(key)), (claim, key)


def same_figure(here, shipped, floor: float | None) -> bool:
    """What another CPU or thread count may change: the last digits (4 are saved), and which side of its noise
    floor a figure lands on when it lies within twice the floor. Everything else must be equal."""
    if floor is not None and (is_noise(here) or is_noise(shipped)):
        other = shipped if is_noise(here) else here
        return is_noise(other) or abs(other) < 2 * floor
    if isinstance(here, float) and isinstance(shipped, float | int):
        return here == pytest.approx(shipped, rel=2e-3, abs=floor or 0.0)
    return here == shipped


def test_same_figure_tells_rounding_from_a_change():
    assert same_figure(0.1235, 0.1234, None) and not same_figure(0.124, 0.1234, None)
    assert same_figure("<1e-07", "<1e-07", 1e-7) and same_figure(1.5e-7, "<1e-07", 1e-7)
    assert not same_figure(3e-7, "<1e-07", 1e-7) and not same_figure("a", "b", None)


def test_a_fresh_install_shows_every_verdict_at_once_from_the_shipped_results(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, shipped_results=True))) as client:
        report = client.get("/api/claims").json()
        assert report["fresh"] and report["source"] == "shipped" and not report["measuring"]
        assert len(report["verdicts"]) == 21 and all(v["source"] == "shipped" and v["verdict"] != "not_measured"
                                                     for v in report["verdicts"].values())
        r3 = report["verdicts"]["R3"]
        assert r3["seeds"] == 5 and r3["measured"]["results"]["seeds"] == [0, 1, 2, 3, 4]
        assert len(r3["runs"]) == 5 * 29 and r3["conditions"]["data"]  # 24 + 5 cells of two plans, by run key
        page = client.get("/claims?lang=en").text
        assert "results shipped with addnorm" in page and "Measure again here" in page
        assert "http-equiv=\"refresh\"" not in page  # nothing left to wait for
        widget = client.get("/lessons/normalization/steps/batch-or-layer/widget?lang=en&choice=a").text
        assert "The result shipped with addnorm (5 seeds" in widget and 'data-outcome="not_measured"' not in widget
        train = client.get("/lessons/residual/steps/training-speed/widget?lang=en").text
        assert "the same settings on 5 seeds" in train and "No residual connections (Pre-LN)" in train
        assert "not reached in 600 steps" in train and 'hx-post="/train/runs"' in train  # and it can train live
        lab, recording = client.app.state.sweeps, RecordingSweeps(client.app.state.store)
        client.app.state.sweeps = recording  # records the sweeps without training them
        try:
            r = client.post("/claims/measure-here", follow_redirects=False)
            assert r.status_code == 303 and [name for name, _ in recording.created] == list(PLANS)
            page = client.get("/claims?lang=zh").text
            assert "正在本机重新测量" in page and 'id="here-progress"' in page and "0 次" in page
        finally:
            client.app.state.sweeps = lab


def test_measure_again_here_is_refused_where_nothing_is_shipped(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, shipped_results=False))) as client:
        r = client.post("/claims/measure-here")
        assert r.status_code == 409 and "ships no results" in r.text


def test_a_shipped_cell_trained_again_here_falls_inside_the_shipped_band(real):
    """One cell (Post-LN, 2+2 layers) trained again here on two of its seeds: each lands inside the range of
    held-out accuracy and of steps to 99% that the five shipped seeds span (on another machine or torch build
    the figures may move a little; they must not leave the band)."""
    from app.lab.sweeps import TARGET
    from app.teaching.claims.common import load_sweep
    from model.train import MultiSeedRun, steps_to_reach

    torch.set_num_threads(1)  # as the training workers run
    shipped = load_sweep(real, "depth-residual-norm").get("post_ln", 2)
    sweep = next(s for s in real.sweeps(limit=100) if s["name"] == "depth-residual-norm")
    item = next(i for i in sweep["items"] if (i["variant"], i["depth"]) == ("post_ln", 2))
    spec = item["spec"].with_seed(0)
    run = MultiSeedRun(spec.model, spec.switches, spec.train, [0, 1])
    for _ in run:
        pass
    low, high = shipped["heldout_range"]
    first, last = shipped["steps_range"]
    for seed in (0, 1):
        history = run.history[seed]
        accuracy = next(m.heldout_seq_accuracy for m in reversed(history) if m.heldout_seq_accuracy is not None)
        assert low <= accuracy <= high and first <= steps_to_reach(history, TARGET) <= last, seed
