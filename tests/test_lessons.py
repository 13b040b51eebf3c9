"""Lessons: every lesson renders in both languages with no missing text, every preset is a valid
configuration, every widget runs, and the claim-check page lists every claim with a verdict."""

import json
import re

import pytest
from fastapi.testclient import TestClient
from helpers import fresh_claims

from app.factory import create_app
from app.teaching.claims import CLAIMS
from app.teaching.lesson_schema import load_lessons, preset_problems
from app.web.i18n import labels
from app.web.settings import Settings

LESSONS = load_lessons()
STEPS = [(lesson.slug, step.id) for lesson in LESSONS for step in lesson.steps if step.widget is not None]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("data")))) as c:
        yield c


def test_seven_lessons_cover_every_claim():
    assert [lesson.order for lesson in LESSONS] == [1, 2, 3, 4, 5, 6, 7]
    covered = {claim for lesson in LESSONS for claim in lesson.claims}
    assert covered == set(CLAIMS)


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.slug for lesson in LESSONS])
def test_every_preset_is_a_configuration_the_app_runs(lesson):
    assert preset_problems(lesson, Settings()) == []


def test_a_preset_the_app_cannot_run_is_named_with_what_is_wrong():
    lesson = LESSONS[0]
    step = next(s for s in lesson.steps if s.widget is not None and s.widget.kind == "compare")
    wrong = [({"ablate": {"residual": "off"}}, "residual: 'off' is not a boolean"),  # a URL value, not a typed one
             ({"ablate": {"memory": "everywhere"}}, "memory: 'everywhere' is not allowed"),
             ({"ablate": {"residual_off": ["encoder.9.ffn"]}}, "residual_off"),
             ({"model": "no-such-model"}, "no-such-model"),
             ({"input": "12a"}, "input")]
    for change, said in wrong:
        broken = step.model_copy(update={"widget": step.widget.model_copy(update=change)})
        problems = preset_problems(lesson.model_copy(update={"steps": [broken]}), Settings())
        assert len(problems) == 1 and said in problems[0], (change, problems)


@pytest.mark.parametrize(("model", "switches", "stack", "title", "causal"), [
    ("reverse-post-2x2", {}, "encoder", "fig.pattern.encoder.self_attn", False),
    ("reverse-bert-2", {}, "encoder", "fig.pattern.encoder.self_attn", False),
    ("reverse-gpt-4", {}, "decoder", "fig.pattern.decoder.self_attn", True),
    ("reverse-gpt-4", {"causal_mask": False}, "decoder", "fig.pattern.encoder.self_attn", False),
])
def test_self_attention_is_layer_1_of_the_model_s_first_stack(model, switches, stack, title, causal):
    """A GPT has no encoder: its self_attention figure is its one stack's (a decoder's) layer 1, a triangle, and
    called masked only while the mask is on."""
    from app.playground.state import state_of
    from app.playground.traces import full_trace_for
    from app.teaching.widgets import figures_for
    from app.web.i18n import Translator

    t = Translator("en")
    trace = full_trace_for(state_of(model, "31415", switches, Settings().max_input_chars))
    [figure] = figures_for("self_attention", trace, model, t)
    heads = trace[stack][0]["sublayers"]["self_attn"]["pattern"]
    assert [data["z"] for data in figure["data"]] == heads
    assert figure["layout"]["title"]["text"] == t(title)
    above_diagonal = [row[j] for head in heads for i, row in enumerate(head) for j in range(i + 1, len(row))]
    assert (max(above_diagonal) == 0) is causal


def test_ui_labels_exist_in_both_languages():
    assert labels("en").keys() == labels("zh").keys()
    assert all(value.strip() for value in labels("zh").values())


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.slug for lesson in LESSONS])
def test_each_lesson_renders_in_both_languages_with_no_missing_keys(client, lesson, lang):
    r = client.get(f"/lessons/{lesson.slug}?lang={lang}")
    assert r.status_code == 200
    text = re.sub(r"<[^>]+>", " ", r.text)
    # an untranslated key would show as itself, e.g. "ls.predict" or "step.sublayer.ffn"
    assert not re.search(r"\b(ls|pg|tr|sw|cl|nav|verdict|status)\.[a-z_]+\b", text)
    for step in lesson.steps:
        assert f'id="{step.id}"' in r.text
        title = step.title.zh if lang == "zh" else step.title.en
        assert title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;") \
            .replace("'", "&#39;") in r.text
    if lang == "zh":
        assert re.search(r"[\u4e00-\u9fff]", text)


@pytest.mark.parametrize(("slug", "step_id"), STEPS, ids=[f"{s}/{i}" for s, i in STEPS])
def test_every_widget_runs(client, slug, step_id):
    r = client.get(f"/lessons/{slug}/steps/{step_id}/widget?lang=zh")
    assert r.status_code == 200
    assert 'class="widget-body"' in r.text and 'role="alert"' not in r.text


def test_unknown_lesson_and_step_are_404(client):
    assert client.get("/lessons/magic").status_code == 404
    assert client.get("/lessons/residual/steps/nope/widget").status_code == 404


def test_claim_check_lists_every_claim_with_a_verdict_and_when(client):
    report = fresh_claims(client)
    r = client.get("/claims")
    assert r.status_code == 200 and 'http-equiv="refresh"' not in r.text
    for claim in CLAIMS:
        assert f'id="claim-{claim}"' in r.text
    assert set(report["verdicts"]) == set(CLAIMS)
    allowed = {"holds", "holds_with_caveats", "does_not_hold", "mixed", "not_measured"}
    assert {v["verdict"] for v in report["verdicts"].values()} <= allowed
    assert report["computed_at"] > 0 and "runs_in_store" in report
    assert report["machine"]["cpus"] >= 1 and report["machine"]["torch"].startswith("2.")  # where it was measured
    # zoo-based claims are measured even with an empty store
    assert report["verdicts"]["P3"]["verdict"] == "holds" and report["verdicts"]["R1"]["numbers"]
    json.dumps(report)


def test_claim_pages_never_measure_on_the_request_nor_write_and_follow_the_runs(tmp_path):
    from app.lab.precompute import PLANS
    from app.lab.sweeps import sweep_items

    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        first = fresh_claims(client)
        assert not (tmp_path / "verdicts.json").exists()  # GETs never write
        r = client.get("/claims")
        assert r.status_code == 200 and 'http-equiv="refresh"' not in r.text
        store = client.app.state.store
        base, depths, variants = PLANS["causal-mask-off"]
        run = store.create(sweep_items(base, depths, variants, settings)[0]["spec"])
        store.finish(run.id, "done")  # a run finished: the verdicts may depend on it
        stale = client.get("/api/claims").json()
        assert not stale["fresh"] and stale["computed_at"] == first["computed_at"]  # the older report, at once
        assert 'http-equiv="refresh"' in client.get("/claims").text
        again = fresh_claims(client)
        assert again["computed_at"] > first["computed_at"] and again["runs_in_store"] == 1
        assert not (tmp_path / "verdicts.json").exists()
