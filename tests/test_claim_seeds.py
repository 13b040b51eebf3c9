"""Claims read the precomputed sweeps on every seed: a verdict stands only when each seed, measured alone,
gives it; otherwise it is "mixed" and says how the seeds split. Cells are the means over their seeds."""

from helpers import GOOD, depth_cells, fill_sweep

from app.lab.store import RunStore
from app.teaching.claims import measure
from app.teaching.claims.common import SEED_VIEW, load_sweep
from app.teaching.claims.render import number_label, render_text
from app.web.i18n import Translator

SEEDS = (0, 1, 2)
FAILS = {"acc": 0.1, "reach": None}
PLAN = "depth-residual-norm"


def measured(tmp_path, cells, claim="R3"):
    with RunStore(tmp_path / "runs.sqlite3") as store:
        fill_sweep(store, PLAN, cells, SEEDS)
        return measure(claim, store)


def test_a_verdict_the_seeds_agree_on_stands_and_says_so(tmp_path):
    v = measured(tmp_path, depth_cells(no_residual_keep_cross_6=FAILS))
    assert v.verdict == "holds" and v.numbers["seeds"] == 3 and v.numbers["seeds_holds"] == 3
    assert "Each of the 3 seeds, measured alone, gives the same verdict: holds." in render_text(v.summary,
                                                                                                 Translator("en"))


def test_seeds_that_disagree_make_the_verdict_mixed_with_the_split_shown(tmp_path):
    v = measured(tmp_path, depth_cells(no_residual_keep_cross_6=[FAILS, FAILS, dict(GOOD)]))
    assert v.verdict == "mixed"
    assert v.numbers["seeds_holds"] == 2 and v.numbers["seeds_does_not_hold"] == 1
    assert v.numbers["no_residual_keep_cross_depth6_heldout_accuracy"] == 0.4  # the mean of 0.1, 0.1 and 1.0
    summary = render_text(v.summary, Translator("en"))
    assert "The 3 seeds, each measured alone, disagree: holds on 2; does not hold here on 1." in summary
    assert "不一致" in render_text(v.summary, Translator("zh"))
    for lang in ("en", "zh"):
        assert all(number_label(key, Translator(lang)) != key for key in v.numbers), lang


def test_a_cell_is_the_mean_of_its_seeds_and_reached_only_if_every_seed_reached(tmp_path):
    with RunStore(tmp_path / "runs.sqlite3") as store:
        fill_sweep(store, PLAN, {("no_norm", 4): [{"acc": 1.0, "reach": 100}, {"acc": 0.5, "reach": None},
                                                  {"acc": 1.0, "reach": 300}]}, SEEDS)
        cell = load_sweep(store, PLAN).get("no_norm", 4)
        assert cell["heldout_seq_accuracy"] == 2.5 / 3 and cell["heldout_range"] == (0.5, 1.0)
        assert cell["steps_to_target"] is None and cell["reached"] == 2 and cell["seeds"] == [0, 1, 2]
        token = SEED_VIEW.set(2)
        try:
            alone = load_sweep(store, PLAN).get("no_norm", 4)
        finally:
            SEED_VIEW.reset(token)
        assert alone["heldout_seq_accuracy"] == 1.0 and alone["steps_to_target"] == 300 and alone["seeds"] == [2]


def test_a_seed_not_trained_yet_is_left_out_of_the_split(tmp_path):
    cells = {key: [dict(value), dict(value), None]
             for key, value in depth_cells(no_residual_keep_cross_6=FAILS).items()}
    v = measured(tmp_path, cells)
    assert v.verdict == "holds" and v.numbers["seeds"] == 2


def test_every_verdict_names_what_it_was_measured_on(tmp_path):
    from app.teaching.claims.render import api_verdict, verdict_view

    v = measured(tmp_path, depth_cells(no_residual_keep_cross_6=FAILS))
    [sweep] = v.conditions
    assert sweep["source"] == "sweep:depth-residual-norm" and sweep["seeds"] == [0, 1, 2]
    assert sweep["depths"] == [2, 4, 6] and sweep["task"] == "reverse" and sweep["init"] == "default"
    shown = verdict_view(v, Translator("en"))["conditions"]
    assert "depth-residual-norm" in shown and "2/4/6 layers" in shown and "3 seeds" in shown
    api = api_verdict(v)
    assert api["id"] == "R3" and api["seeds"] == 3 and api["source"] == "measured here"
    assert api["kind"] == "measurement" and api["conditions"]["data"] == v.conditions and api["conditions"]["zh"]
    zoo = measure("P3")  # the zoo model it read, and that it is a check by construction
    assert zoo.conditions[0]["source"].startswith("zoo:") and zoo.conditions[0]["seeds"] == [0]
    assert api_verdict(zoo)["kind"] == "construction" and verdict_view(zoo, Translator("zh"))["by_construction"]


def test_attention_distance_claims_say_this_task_cannot_test_them():
    for claim in ("E2", "D4"):
        v = measure(claim)
        assert v.verdict != "holds"  # a proxy on a task without local-to-global structure never fully confirms
        assert "This task cannot test the claim as stated" in render_text(v.summary, Translator("en"))
