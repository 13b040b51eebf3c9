"""Routes: full pages vs HTMX partials, the JSON API, the Play stream, and every kind of bad input."""

import html
import json
import re

import pytest
from fastapi.testclient import TestClient

from app.factory import create_app
from app.web.i18n import labels
from model.stacks import FAMILIES

HX = {"HX-Request": "true"}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as c:
        yield c


def test_home_names_the_app_and_lists_the_zoo(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "Take a Transformer apart" in r.text
    assert "reverse-post-2x2" in r.text
    for area in ("/playground", "/lessons", "/train", "/claims"):  # the home page leads to every area
        assert f'class="card" href="{area}?lang=en"' in r.text


def test_home_in_chinese_by_query_and_by_accept_language(client):
    by_query = client.get("/?lang=zh").text
    assert '<html lang="zh-Hans">' in by_query and labels("zh")["home.heading"] in by_query
    assert labels("en")["home.heading"] not in by_query
    r = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-Hans">' in r.text
    assert "数字倒序 · 2+2 层" in r.text  # zoo model titles are translated, on home and in the playground
    assert "数字倒序 · 2+2 层" in client.get("/playground?lang=zh").text


def test_playground_full_page_has_controls_results_and_vendored_scripts(client):
    r = client.get("/playground")
    assert r.status_code == 200
    for needle in ['id="state-form"', 'id="results"', 'id="step-view"', "/static/vendor/htmx-2.0.11.min.js",
                   "/static/vendor/htmx-ext-sse-2.2.4.min.js", "/static/vendor/plotly-cartesian-4.1.1.min.js",
                   'name="causal_mask"', 'name="norm_position"', "<svg"]:
        assert needle in r.text
    assert "cdn" not in r.text.lower()


def test_htmx_request_gets_only_the_results_partial_and_the_canonical_url(client):
    r = client.get("/playground?residual=off&input=1234", headers=HX)
    assert r.status_code == 200
    assert "<html" not in r.text and 'id="state-form"' not in r.text
    assert 'id="step-view"' in r.text
    assert "residual=off" in r.headers["HX-Push-Url"] and "input=1234" in r.headers["HX-Push-Url"]


def test_switch_changes_the_data_in_the_residual_panel(client):
    def residual_figure(html):
        panel = html.split('id="panel-residual"')[1]
        raw = re.search(r'data-figure="([^"]+)"', panel).group(1)
        return json.loads(raw.replace("&#34;", '"').replace("&amp;", "&").replace("&#39;", "'")
                          .replace("&lt;", "<").replace("&gt;", ">"))

    on = residual_figure(client.get("/playground?input=1234", headers=HX).text)
    off = residual_figure(client.get("/playground?input=1234&residual=off", headers=HX).text)
    assert on["data"] != off["data"]


def test_random_example_swaps_the_input_field_out_of_band(client):
    r = client.get("/playground?random=1", headers=HX)
    assert 'hx-swap-oob="true"' in r.text
    pushed = r.headers["HX-Push-Url"]
    assert "input=" in pushed and "random" not in pushed


def test_step_partial_and_url(client):
    r = client.get("/playground/step?input=1234&step=3", headers=HX)
    assert r.status_code == 200 and 'data-step="3"' in r.text
    assert "step=3" in r.headers["HX-Replace-Url"]
    # a step past the end is clamped to the last step, not an error
    r = client.get("/playground/step?input=1234&step=100000", headers=HX)
    assert r.status_code == 200 and 'data-step="' in r.text


def test_play_stream_sends_every_remaining_step_then_done(client):
    full = client.get("/api/trace?input=12").json()["trace"]
    total = len(full["steps"])
    with client.stream("GET", f"/playground/stream?input=12&step={total - 3}&interval_ms=0") as r:
        body = "".join(r.iter_text())
    assert body.count("event: step") == 3
    assert "event: done" in body


def test_api_trace_matches_the_page_parameters(client):
    r = client.get("/api/trace?model=reverse-post-2x2&input=31415&causal_mask=off&intact=true")
    assert r.status_code == 200
    body = r.json()
    assert body["state"]["causal_mask"] == "off"
    assert body["trace"]["switches"]["causal_mask"] is False
    assert body["intact"]["switches"]["causal_mask"] is True
    assert body["trace"]["src_tokens"] == list("31415")


def test_api_models_and_example(client):
    models = client.get("/api/models").json()
    assert {m["name"] for m in models} >= {"reverse-post-2x2", "zh-numbers-2x2"}
    assert "encoder_decoder" in {m["arch"] for m in models} and {m["arch"] for m in models} <= set(FAMILIES)
    example = client.get("/api/models/zh-numbers-2x2/example?seed=3").json()
    assert example["input"] and example["expected"].isdigit()


def test_openapi_documents_the_trace_endpoint(client):
    spec = client.get("/openapi.json").json()
    params = {p["name"] for p in spec["paths"]["/api/trace"]["get"]["parameters"]}
    assert {"model", "input", "residual", "norm", "norm_position", "pos_encoding", "pos_every_layer",
            "causal_mask", "memory"} <= params


BAD = [
    ("model=gpt-5", 404, "model", "unknown model 'gpt-5'; available: reverse-post-2x2"),
    ("input=", 422, "input", "is empty"),
    ("input=" + "1" * 300, 413, "input", "at most 200"),
    ("input=" + "1" * 40, 413, "input", "at most 16"),
    ("input=12x4", 422, "input", "unknown token 'x'"),
    ("norm=group", 422, "norm", "choose one of layer | rms | batch | none"),
    ("causal_mask=maybe", 422, "causal_mask", "use on or off"),
    ("residual_off=encoder.9.ffn", 422, "residual_off", "the encoder has layers 0..1"),
    ("step=-1", 422, "step", "whole number"),
]


@pytest.mark.parametrize(("query", "status", "field", "message"), BAD)
def test_bad_input_is_a_clear_4xx_on_the_api(client, query, status, field, message):
    r = client.get(f"/api/trace?{query}")
    assert r.status_code == status
    detail = r.json()["detail"][0]
    assert detail["field"] == field and message in detail["message"]


@pytest.mark.parametrize(("query", "status", "field", "message"), BAD)
def test_bad_input_is_shown_inline_on_the_page(client, query, status, field, message):
    r = client.get(f"/playground?{query}", headers=HX)
    assert r.status_code == status
    assert 'role="alert"' in r.text and field in r.text
    assert "<html" not in r.text
    full = client.get(f"/playground?{query}")
    assert full.status_code == status and "<html" in full.text


def test_learner_text_is_escaped(client):
    r = client.get("/playground?input=<script>alert(1)</script>", headers=HX)
    assert r.status_code == 422
    assert "<script" not in r.text and "unknown token &#39;&lt;&#39;" in r.text


def test_token_labels_are_escaped_in_figures(client):
    r = client.get("/playground?model=en-numbers-2x2&input=three%20hundred%20twelve")
    assert r.status_code == 200
    assert "<eos>" not in r.text.replace("&lt;eos&gt;", "")  # never raw in HTML or figure JSON


def test_unknown_example_model_is_404(client):
    r = client.get("/api/models/nope/example")
    assert r.status_code == 404 and "available" in r.json()["detail"][0]["message"]


def test_a_request_resolves_its_state_language_and_trace_once(client, monkeypatch):
    import app.playground.routes as routes
    import app.playground.traces as traces
    import app.web.i18n as i18n

    calls = {"state": 0, "language": 0, "trace": 0}
    parse, language_of, trace_for = routes.parse_state, i18n._language_of, traces.trace_for

    def counting_trace(*args, **kwargs):
        calls["trace"] += 1
        return trace_for(*args, **kwargs)

    def counting_parse(*args, **kwargs):
        calls["state"] += 1
        return parse(*args, **kwargs)

    def counting_language(request):
        calls["language"] += 1
        return language_of(request)

    monkeypatch.setattr(routes, "parse_state", counting_parse)
    monkeypatch.setattr(i18n, "_language_of", counting_language)
    monkeypatch.setattr(traces, "trace_for", counting_trace)
    assert client.get("/playground?input=2718&lang=zh").status_code == 200
    assert calls == {"state": 1, "language": 1, "trace": 1}


def panel_figures(html_text: str) -> list[dict]:
    return [json.loads(html.unescape(raw)) for raw in re.findall(r'data-figure="([^"]+)"', html_text)]


def test_gradients_run_only_when_their_tab_asks(client):
    """The page carries no gradients (a backward pass); the tab's partial has exactly trace()'s."""
    import app.playground.traces as traces
    from model.trace import trace
    from model.zoo import load_zoo_model

    traces._cached_gradients.cache_clear()
    page = client.get("/playground?input=27182&residual=off")
    assert 'hx-get="/playground/panel/gradients?' in page.text and 'hx-trigger="intersect once"' in page.text
    assert traces._cached_gradients.cache_info().currsize == 0
    (figure,) = panel_figures(client.get("/playground/panel/gradients?input=27182&residual=off", headers=HX).text)
    model, task, _ = load_zoo_model("reverse-post-2x2")
    expected = trace(model, task, "27182", model.switches.replace(residual=False))["gradients"]
    assert [bar["y"] for bar in figure["data"]] == [expected["encoder"], expected["decoder"]]
    assert client.get("/playground/panel/gradients?input=27182&residual=maybe").status_code == 422


def test_only_the_first_tab_comes_with_a_click_the_others_when_opened(client):
    results = client.get("/playground?input=27182&norm=rms", headers=HX).text
    panels = dict(re.findall(r'id="panel-([a-z]+)".*?<div class="plot-grid"(.*?)</div>\s*</div>', results, re.S))
    assert list(panels) == ["residual", "attention", "norm", "position", "output", "gradients", "compare"]
    assert "data-figure" in panels["residual"]
    for name in list(panels)[1:]:
        assert f'hx-get="/playground/panel/{name}?' in panels[name] and "data-figure" not in panels[name]
        figures = panel_figures(client.get(f"/playground/panel/{name}?input=27182&norm=rms&lang=zh").text)
        assert figures and all(f["layout"]["title"]["text"] for f in figures)
    assert len(panel_figures(client.get("/playground/panel/position?input=27182").text)) == 3
    assert panel_figures(client.get("/playground/panel/compare?input=27182").text) == []  # nothing is ablated
    r = client.get("/playground/panel/everything?input=27182")
    assert r.status_code == 422 and "attention" in r.text
