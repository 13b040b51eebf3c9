"""The precompute command trains what the lessons need once; a second call replays everything."""

from app.precompute import PLANS, precompute
from app.settings import Settings
from app.store import RunStore

TINY = {"tiny": ({"task": "copy", "d_model": "16", "n_heads": "2", "d_ff": "32", "steps": "15", "seed": "2"},
                 [1, 2], ["pre_ln", "no_norm"])}


def test_precompute_fills_the_store_and_is_idempotent(tmp_path):
    settings = Settings(data_dir=tmp_path)
    with RunStore(tmp_path / "runs.sqlite3") as store:
        first = precompute(store, TINY, workers=2, settings=settings, log=lambda *a, **k: None)
        assert len(first["tiny"]) == 4
        assert all(store.get(i).status == "done" for i in first["tiny"])
        assert [s["name"] for s in store.sweeps()] == ["tiny"]
        again = precompute(store, TINY, workers=2, settings=settings, log=lambda *a, **k: None)
        assert again == first and len(store.list(limit=100)) == 4


def test_the_lesson_plans_are_valid_sweeps():
    from app.sweeps import sweep_items

    for form, depths, variants in PLANS.values():
        assert len(sweep_items(form, depths, variants, Settings())) == len(depths) * len(variants)
