"""Lessons close the loop: every prediction has a rule that lets the measurement decide it, the rules decide the
real measurements (zoo claims) and fake sweeps (run-store claims), and the Run request says in the page's
language whether the prediction matched."""

import re

import pytest
from fastapi.testclient import TestClient
from helpers import GOOD, batch_norm_cells, depth_cells, fill_sweep, position_cells, rows, spec_with
from pydantic import ValidationError

from app.factory import create_app
from app.lab.store import RunStore
from app.teaching.claims import measure
from app.teaching.lesson_schema import Resolve, Step, load_lessons
from app.teaching.outcomes import number_of, outcome, resolve
from app.web.i18n import Translator
from app.web.settings import Settings

PREDICT = [(lesson.slug, step) for lesson in load_lessons() for step in lesson.steps if step.predict]
FAILING = {"acc": 0.2, "reach": None}


_MEASURED: dict = {}


def _measure(claim: str, store=None):
    """measure(), once per claim and store in this module (several steps test the same claim)."""
    key = (claim, id(store))
    if key not in _MEASURED:
        _MEASURED[key] = measure(claim, store)
    return _MEASURED[key]


def _id(item):
    return f"{item[0]}/{item[1].id}"


def test_every_prediction_has_a_rule_naming_its_own_choices():
    assert len(PREDICT) == 25
    for _, step in PREDICT:
        ids = {c.id for c in step.predict.choices}
        assert step.resolve.figure or (set(step.resolve.choices) <= ids and step.resolve.choices)
    assert [step.id for _, step in PREDICT if step.resolve.figure] == ["train-same-depth", "gpt-without-mask",
                                                                       "gpt-trained-without-mask"]


def _step(**resolve) -> dict:
    return {"id": "s", "title": {"en": "t", "zh": "题"}, "text": {"en": "t", "zh": "文"}, "claim": "P1",
            "predict": {"question": {"en": "q", "zh": "问"}, "choices": [{"id": "a", "en": "A", "zh": "甲"},
                                                                         {"id": "b", "en": "B", "zh": "乙"}]},
            "widget": {"kind": "measure", "claim": "P1"}, **({"resolve": resolve} if resolve else {})}


@pytest.mark.parametrize(("rule", "problem"), [
    (None, "needs a resolve rule"),
    ({"number": "x", "choices": {"a": [None, 1], "z": [1, None]}}, "names choices"),
    ({"number": "x", "choices": {"a": [None, 1], "b": [0.5, None]}}, "overlap"),
    ({"number": "x", "choices": {"a": [[None, 0], [2, 3]], "b": [2.5, None]}}, "overlap"),
    ({"choices": {"a": {"x": [0, 1], "y": [0, 1]}, "b": {"x": [0.5, 2]}}}, "overlap"),
    ({"number": "x", "choices": {"a": [1, 1]}}, "empty"),
    ({"number": "x", "choices": {"a": {"x": [0, 1]}}}, "interval"),
    ({"figure": True, "number": "x"}, "no number"),
])
def test_the_schema_refuses_a_rule_that_cannot_decide(rule, problem):
    with pytest.raises(ValidationError, match=problem):
        Step.model_validate(_step(**(rule or {})))


def test_boxes_that_differ_in_one_number_do_not_overlap():
    rule = Resolve.model_validate({"choices": {"a": {"x": [0, 1], "y": [0, 1]}, "b": {"x": [0, 1], "y": [1, None]}}})
    assert rule.numbers() == ["x", "y"]
    assert number_of({"s_steps_to_99pct": None, "t_steps_to_99pct": 50}, "t_steps_to_99pct / s_steps_to_99pct") == 0
    assert number_of({"s_steps_to_99pct": None, "t_steps_to_99pct": None},
                     "t_steps_to_99pct / s_steps_to_99pct") == 1  # neither reached: a tie
    assert number_of({"acc": None}, "acc") is None  # not measured


# what the real measurements of the shipped models are (each rule must single out exactly one choice)
ZOO_EXPECTED = {"gradient-highway": "c", "keep-the-input": "c", "identity-layers": "b", "what-layernorm-does": "b",
                "layer-to-layer": "a", "local-or-global": "b", "added-once": "b", "relative-positions": "a",
                "word-order": "c", "decoder-chain": "a", "shared-memory": "a",
                "mask-at-inference": "b", "decoder-distance": "c"}


ZOO_STEPS = [(s, step) for s, step in PREDICT if step.id in ZOO_EXPECTED]


@pytest.mark.parametrize("item", ZOO_STEPS, ids=_id)
def test_zoo_steps_resolve_to_one_choice_with_the_real_measurement(item):
    _, step = item
    verdict = _measure(step.claim)
    assert set(step.resolve.claim_keys()) <= set(verdict.numbers)
    res = resolve(step.resolve, verdict)
    assert res.status == "resolved" and res.choice == ZOO_EXPECTED[step.id]


def test_no_rule_tells_apart_what_lies_below_a_noise_floor():
    """A number below its noise floor counts as 0 (outcomes.py): a rule's bound above 0 but below the floor would
    decide on rounding noise. The floors are the shipped verdicts'."""
    from app.lab.results import shipped_report

    floors = {claim: v.get("floors", {}) for claim, v in shipped_report()["verdicts"].items()}
    checked = 0
    for _, step in PREDICT:
        if step.resolve is None or step.resolve.figure:
            continue
        for boxes in step.resolve.boxes().values():
            for box in boxes:
                for key, bounds in box.items():
                    for part in key.split("/"):
                        floor = floors.get(step.claim, {}).get(part.strip())
                        if floor is not None and "/" not in key:
                            checked += 1
                            assert all(b is None or b <= 0 or b >= floor for b in bounds), (step.id, key, bounds)
    assert checked >= 3  # the layer-to-layer, decoder-chain and relative-positions rules at least


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Fake sweeps: every variant trains well ("good"), or some break down or train slowly ("failing"), or the
    seeds disagree ("mixed")."""
    path = tmp_path_factory.mktemp("stores")
    plans = {
        "good": {"depth-residual-norm": depth_cells(no_norm_6={**GOOD, "drift": 2.0}),
                 "pe-every-layer": {(v, d): dict(GOOD) for v in ("pre_ln", "pe_every_layer") for d in (2, 4)},
                 "batch-vs-layer-norm": batch_norm_cells(1.0, 0.1), "position-encodings": position_cells(0.95, 0.5)},
        "failing": {"depth-residual-norm": depth_cells(no_residual_4=FAILING, no_residual_6=FAILING,
                                                       post_ln_6={"acc": 1.0, "reach": 400}, no_norm_6=FAILING),
                    "pe-every-layer": {**{("pre_ln", d): dict(GOOD) for d in (2, 4)},
                                       **{("pe_every_layer", d): {"acc": 0.5, "reach": None} for d in (2, 4)}},
                    "batch-vs-layer-norm": batch_norm_cells(0.7, 0.1),
                    "position-encodings": position_cells(0.05, 0.02)},
    }
    out = {}
    for name, cells in plans.items():
        store = RunStore(path / f"{name}.sqlite3")
        for plan, plan_cells in cells.items():
            fill_sweep(store, plan, plan_cells)
        run = store.create(spec_with(causal_mask=False))
        store.add_metrics(run.id, [{**row, "heldout_seq_accuracy": 0.04 if name == "failing" else 0.97}
                                   for row in rows(2)])
        store.finish(run.id, "done")
        out[name] = store
    mixed = RunStore(path / "mixed.sqlite3")
    fill_sweep(mixed, "depth-residual-norm", depth_cells(no_residual_keep_cross_6=[dict(GOOD), FAILING]), seeds=(0, 1))
    out["mixed"] = mixed
    yield out
    for store in out.values():
        store.close()


STORE_EXPECTED = {  # step: (with the good store, with the failing one)
    "depth-sweep": ("d", "b"), "training-speed": ("c", "b"), "post-or-pre": ("a", "b"), "covariate-shift": ("a", None),
    "without-norm": ("c", "a"), "batch-or-layer": ("a", "b"), "every-layer": ("c", "a"), "mask-in-training": ("a", "c"),
    "longer-inputs": ("a", "c"),
}


STORE_STEPS = [(s, step) for s, step in PREDICT if step.id in STORE_EXPECTED]


def test_every_rule_is_tested():
    figure = {step.id for _, step in PREDICT if step.resolve.figure}
    assert ZOO_EXPECTED.keys() | STORE_EXPECTED.keys() | figure == {step.id for _, step in PREDICT}


@pytest.mark.parametrize("item", STORE_STEPS, ids=_id)
def test_run_store_steps_resolve_with_fake_sweeps_and_are_not_measured_without(item, stores):
    _, step = item
    good, failing = STORE_EXPECTED[step.id]
    verdict = _measure(step.claim, stores["good"])
    assert set(step.resolve.claim_keys()) <= set(verdict.numbers)
    assert resolve(step.resolve, verdict).choice == good
    if failing:
        assert resolve(step.resolve, _measure(step.claim, stores["failing"])).choice == failing
    view = outcome(step, "a", _measure(step.claim), Translator("zh"))
    assert view["status"] == "not_measured" and view["why"] and not view["measured"]


def test_seeds_that_disagree_are_never_called_a_match(stores):
    step = next(step for _, step in PREDICT if step.id == "depth-sweep")
    verdict = measure("R3", stores["mixed"])
    assert verdict.verdict == "mixed"
    for choice in "abcd":
        view = outcome(step, choice, verdict, Translator("en"))
        assert view["status"] == "mixed" and view["measured"]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("data")))) as c:
        yield c


def _outcome(html: str) -> str:
    found = re.search(r'(?s)<div class="outcome.*?</div>', html)
    assert found, "no outcome line"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(0)))


@pytest.mark.parametrize(("lang", "choice", "said"), [
    ("en", "c", "✓ Your prediction matched."), ("en", "a", "✗ It did not match."),
    ("zh", "c", "✓ 你的预测对了。"), ("zh", "b", "✗ 与你的预测不符。"),
])
def test_the_run_request_says_whether_the_prediction_matched(client, lang, choice, said):
    step = next(step for _, step in PREDICT if step.id == "word-order")
    r = client.get(f"/lessons/positional-encoding/steps/word-order/widget?lang={lang}&choice={choice}")
    assert r.status_code == 200 and 'class="widget-body"' in r.text
    line = _outcome(r.text)
    chosen, measured = step.choice(choice), step.choice("c")
    assert (chosen.zh if lang == "zh" else chosen.en) in line
    assert said in line and (measured.zh if lang == "zh" else measured.en) in line
    assert "0 ÷ 1 = 0" in line and ("消融位置编码" if lang == "zh" else "PE ablated") in line


def test_without_the_runs_the_outcome_says_not_measured_yet(client):
    r = client.get("/lessons/residual/steps/depth-sweep/widget?lang=en&choice=a")
    assert r.status_code == 200
    assert 'data-outcome="not_measured"' in r.text and "Not measured yet" in _outcome(r.text)
    r = client.get("/lessons/decoder-stack/steps/train-same-depth/widget?lang=zh&choice=a")
    assert "无法靠测量判定" in _outcome(r.text)


def test_a_bad_choice_is_a_clear_4xx(client):
    r = client.get("/lessons/positional-encoding/steps/longer-inputs/widget?choice=z")
    assert r.status_code == 422 and "not a choice" in r.text and "a, b, c" in r.text
    r = client.get("/lessons/residual/steps/question/widget?choice=a")  # a step that asks for no prediction
    assert r.status_code == 422 and "asks for no prediction" in r.text
    r = client.get("/lessons/positional-encoding/steps/longer-inputs/widget")  # no prediction sent: no outcome
    assert r.status_code == 200 and 'class="outcome' not in r.text
