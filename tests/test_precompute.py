"""The precompute command trains what the lessons need once; a second call replays everything."""

import pytest

from app.lab.form import build_spec
from app.lab.precompute import PLANS, precompute
from app.lab.store import RunStore
from app.web.settings import Settings
from model.config import Switches

TINY = {"tiny": (build_spec({"task": "copy", "d_model": 16, "n_heads": 2, "d_ff": 32, "steps": 15, "seed": 2},
                            Switches()), [1, 2], ["pre_ln", "no_norm"])}


def test_precompute_fills_the_store_with_every_seed_and_is_idempotent(tmp_path):
    settings = Settings(data_dir=tmp_path)
    quiet = {"log": lambda *a, **k: None, "settings": settings, "seeds": (0, 1, 2)}
    with RunStore(tmp_path / "runs.sqlite3") as store:
        first = precompute(store, TINY, workers=2, **quiet)
        assert len(first["tiny"]) == 4 * 3
        records = [store.get(i) for i in first["tiny"]]
        assert all(r.status == "done" and r.has_checkpoint and r.steps_done == 15 for r in records)
        assert sorted(r.spec.train.seed for r in records) == [0] * 4 + [1] * 4 + [2] * 4
        # each trained model was probed when its run ended (model.train.probes)
        assert all(0 <= r.probes["long_inputs"]["seq_accuracy"] <= 1 for r in records)
        assert [s["name"] for s in store.sweeps()] == ["tiny"]
        again = precompute(store, TINY, workers=2, **quiet)
        assert again == first and len(store.list(limit=100)) == 12


def test_seeds_trained_together_store_what_a_lone_run_of_that_seed_gives(tmp_path):
    """Each stored seed is the run a one-seed job of the same spec would have made."""
    from app.lab.sweeps import sweep_items
    from app.lab.training_task import train_seeds
    from model.train import TrainingRun

    spec = sweep_items(*TINY["tiny"][:1], [1], ["pre_ln"], Settings())[0]["spec"]
    configs = (spec.model, spec.switches, spec.train)
    rows = [row for item in train_seeds(*configs, [0, 1]) if item[0] == "metrics" for row in item[1]]
    alone = spec.with_seed(1)
    lone = list(TrainingRun(alone.model, alone.switches, alone.train))
    assert [row["loss"] for row in rows if row["seed"] == 1] == pytest.approx([m.loss for m in lone], rel=1e-4)


def test_the_lesson_plans_are_valid_sweeps():
    from app.lab.sweeps import sweep_items

    for base, depths, variants in PLANS.values():
        assert len(sweep_items(base, depths, variants, Settings())) == len(depths) * len(variants)


def test_a_changed_plan_is_recorded_as_a_new_sweep_and_only_its_new_runs_train(tmp_path):
    settings = Settings(data_dir=tmp_path)
    quiet = {"log": lambda *a, **k: None, "settings": settings, "seeds": (0,)}
    base, depths, _ = TINY["tiny"]
    with RunStore(tmp_path / "runs.sqlite3") as store:
        precompute(store, {"tiny": (base, depths, ["pre_ln"])}, workers=2, **quiet)
        before = len(store.list(limit=100))
        precompute(store, {"tiny": (base, depths, ["pre_ln", "no_norm"])}, workers=2, **quiet)
        newest = store.sweeps()[0]
        assert newest["name"] == "tiny" and {i["variant"] for i in newest["items"]} == {"pre_ln", "no_norm"}
        assert len(store.list(limit=100)) == before + len(depths)  # the pre_ln runs were kept, not trained again
        precompute(store, {"tiny": (base, depths, ["pre_ln", "no_norm"])}, workers=2, **quiet)
        assert len(store.sweeps()) == 2  # unchanged: no new sweep


def test_runs_trained_before_runs_were_probed_are_probed_from_their_checkpoints(tmp_path):
    from app.lab.precompute import probe_missing

    settings = Settings(data_dir=tmp_path)
    with RunStore(tmp_path / "runs.sqlite3") as store:
        ids = precompute(store, TINY, workers=2, log=lambda *a, **k: None, settings=settings, seeds=(0,))["tiny"]
        probed = store.get(ids[0]).probes
        store._conn.execute("UPDATE runs SET probes = NULL")  # as a store from before probes were kept
        assert probe_missing(store, ids, log=lambda *a, **k: None) == len(ids)
        assert store.get(ids[0]).probes == probed  # the same model on the same inputs: the same figures
