"""Bad input always gets a clear 4xx naming what was wrong: never a 500, a hang, a dropped connection or a
silently different action. One test (or one parametrised group) per cause."""

import html
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from app.factory import create_app
from app.web.errors import ErrorBody
from app.web.params import MAX_ID
from app.web.settings import Settings

HX = {"HX-Request": "true"}
HUGE = "99999999999999999999999"  # beyond SQLite's INTEGER
TINY = {"task": "copy", "layers": "2", "d_model": "16", "n_heads": "2", "d_ff": "32", "steps": "10", "seeds": "1"}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("bad-input"), max_steps=200)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def two_layer_run(client) -> int:
    """A finished run of a 2-layer model (trained in a second or two)."""
    r = client.post("/train/runs", data=TINY)
    assert r.status_code == 200, r.text
    run_id = int(re.search(r'data-run-id="(\d+)"', r.text).group(1))
    with client.stream("GET", f"/train/runs/{run_id}/events") as events:
        assert '"status": "done"' in "".join(events.iter_text())
    return run_id


def runs(client) -> int:
    return len(client.get("/api/runs?limit=500").json())


def refusal(r) -> tuple[str, str]:
    """The field and message of a refusal, from the JSON body or the HTML error message."""
    if r.headers["content-type"].startswith("application/json"):
        first = ErrorBody.model_validate(r.json()).detail[0]
        return first.field, first.message
    match = re.search(r'<span class="error-field">(.*?)</span>: (.*?)\s*</div>', r.text, re.S)
    assert match, r.text[:500]
    return html.unescape(match.group(1)), html.unescape(match.group(2))


# ---- 1. ids beyond what SQLite stores ------------------------------------------------------------------

ID_ROUTES = [("GET", "/api/runs/{}/metrics", "run_id"), ("GET", "/train/runs/{}", "run_id"),
             ("GET", "/train/runs/{}/events", "run_id"), ("POST", "/train/runs/{}/cancel", "run_id"),
             ("GET", "/train/sweeps/{}", "sweep_id"), ("POST", "/train/sweeps/{}/cancel", "sweep_id")]


@pytest.mark.parametrize(("method", "path", "field"), ID_ROUTES)
@pytest.mark.parametrize("run_id", [HUGE, str(MAX_ID + 1), "0", "-1"])
def test_an_id_outside_what_the_store_holds_is_refused_naming_it(client, method, path, field, run_id):
    r = client.request(method, path.format(run_id))
    assert r.status_code == 422
    assert refusal(r)[0] == field and run_id in refusal(r)[1]


@pytest.mark.parametrize(("method", "path", "field"), ID_ROUTES)
def test_the_largest_id_is_one_that_does_not_exist(client, method, path, field):
    r = client.request(method, path.format(MAX_ID))
    assert r.status_code == 404 and str(MAX_ID) in refusal(r)[1]


MODEL_ROUTES = ["/playground?model={}", "/playground/step?model={}", "/playground/stream?model={}",
                "/api/trace?model={}", "/api/models/{}/example"]


@pytest.mark.parametrize("route", MODEL_ROUTES)
@pytest.mark.parametrize("name", [f"run-{HUGE}", f"run-{MAX_ID + 1}", "run-0", "run-²", "run-１"])
def test_a_run_name_whose_id_the_store_cannot_hold_is_refused(client, route, name):
    r = client.get(route.format(name))
    assert r.status_code == 422
    field, message = refusal(r)
    assert field == "model" and repr(name) in message and f"1..{MAX_ID}" in message


@pytest.mark.parametrize("route", MODEL_ROUTES)
def test_a_run_that_does_not_exist_is_a_404(client, route):
    r = client.get(route.format(f"run-{MAX_ID}"))
    assert r.status_code == 404 and f"no finished run {MAX_ID}" in refusal(r)[1]


def test_the_openapi_document_shows_the_id_bounds(client):
    spec = client.get("/openapi.json").json()
    for _, path, field in ID_ROUTES:
        for operation in spec["paths"][path.format("{" + field + "}")].values():
            [param] = [p for p in operation["parameters"] if p["name"] == field]
            assert (param["schema"]["minimum"], param["schema"]["maximum"]) == (1, MAX_ID)
    model = next(p for p in spec["paths"]["/api/trace"]["get"]["parameters"] if p["name"] == "model")
    assert f"1..{MAX_ID}" in model["description"]


def test_play_refuses_an_interval_that_would_hang(client):
    r = client.get(f"/playground/stream?input=12&interval_ms={HUGE}")
    assert r.status_code == 422 and refusal(r)[0] == "interval_ms"


# ---- 2. digits that are not ASCII ----------------------------------------------------------------------

@pytest.mark.parametrize(("route", "field"), [
    ("/playground?step=²", "step"), ("/api/trace?step=²", "step"), ("/playground/step?step=٣", "step"),
    ("/api/trace?model=run-²", "model"), ("/playground?residual_off=encoder.².ffn", "residual_off"),
    ("/api/trace?residual_off=decoder.١.ffn", "residual_off"), ("/api/trace?step=" + "9" * 5000, "step"),
])
def test_digits_other_than_ascii_are_refused_in_the_playground(client, route, field):
    r = client.get(route)
    assert r.status_code == 422 and refusal(r)[0] == field


@pytest.mark.parametrize(("path", "data", "field"), [
    ("/train/runs", {**TINY, "steps": "²"}, "steps"), ("/train/runs", {**TINY, "layers": "١"}, "layers"),
    ("/train/runs", {**TINY, "steps": "9" * 5000}, "steps"),
    ("/train/runs", {**TINY, "residual_off": "encoder.².ffn"}, "residual_off"),
    ("/train/sweeps", {**TINY, "depths": "²", "variants": "pre_ln"}, "depths"),
    ("/train/sweeps", {**TINY, "depths": ["2", "٤"], "variants": "pre_ln"}, "depths"),
])
def test_digits_other_than_ascii_are_refused_in_the_lab(client, path, data, field):
    before = runs(client)
    data = {k: v for k, v in data.items() if not (path == "/train/sweeps" and k == "layers")}
    r = client.post(path, data=data, headers=HX)
    assert r.status_code == 422 and refusal(r)[0] == field
    assert runs(client) == before


# ---- 3. a file where text is expected ------------------------------------------------------------------

@pytest.mark.parametrize(("path", "data", "file_field"), [
    ("/train/runs", TINY, "residual_off"), ("/train/runs", TINY, "steps"), ("/train/runs", TINY, "label"),
    ("/train/sweeps", {"variants": "pre_ln"}, "depths"), ("/train/sweeps", {"depths": "2"}, "variants"),
    ("/train/sweeps", {"depths": "2", "variants": "pre_ln"}, "name"),
])
def test_a_file_in_a_text_field_is_refused(client, path, data, file_field):
    before = runs(client)
    r = client.post(path, data=data, files={file_field: ("x.txt", b"encoder.0.ffn", "text/plain")}, headers=HX)
    assert r.status_code == 422
    assert refusal(r) == (file_field, "is a file; this form takes text only")
    assert runs(client) == before


# ---- 4. control characters and unknown languages never reach a header ----------------------------------

BAD_LANGS = ["%0d%0aX-Injected:%201", "zh%01", "%E4%B8%AD", "zh%00", "en%0a"]


@pytest.mark.parametrize("lang", BAD_LANGS)
@pytest.mark.parametrize("route", ["/playground?input=1234&lang={}", "/playground/step?input=1234&step=2&lang={}",
                                   "/train?lang={}", "/?lang={}"])
def test_a_bad_lang_is_ignored_and_never_echoed_into_a_header(client, route, lang):
    r = client.get(route.format(lang), headers=HX)
    assert r.status_code == 200
    assert "x-injected" not in r.headers
    for name, value in r.headers.multi_items():
        assert value.isprintable() and value.isascii(), (name, value)
        assert name != "set-cookie" or not value.startswith("lang=")
    for name in ("hx-push-url", "hx-replace-url"):
        if name in r.headers:
            assert "lang" not in r.headers[name]


def test_a_known_lang_is_kept_in_the_pushed_url_and_the_cookie(client):
    assert client.get("/playground?input=1234&lang=zh", headers=HX).headers["hx-push-url"].endswith("&lang=zh")
    assert any(c.startswith("lang=zh;") for c in client.get("/train?lang=zh").headers.get_list("set-cookie"))


def test_a_bad_lang_cookie_is_ignored(client):
    r = client.get("/", cookies={"lang": "zh\x01"})
    assert r.status_code == 200 and '<html lang="en">' in r.text


# ---- 5. per-layer switches must name layers the model has ----------------------------------------------

def test_the_training_form_refuses_a_layer_the_run_will_not_have(client):
    before = runs(client)
    for data in ({**TINY, "residual_off": "encoder.9.ffn"}, {**TINY, "residual_off": "decoder.2.cross_attn"},
                 {**TINY, "residual_off": "encoder.9.ffn", "ab": "norm=rms"}):
        r = client.post("/train/runs", data=data, headers=HX)
        assert r.status_code == 422 and refusal(r)[0] == "residual_off"
        assert "has layers 0..1" in refusal(r)[1]
    assert runs(client) == before


def test_a_sweep_refuses_a_layer_one_of_its_depths_will_not_have(client):
    data = {k: v for k, v in TINY.items() if k != "layers"}
    r = client.post("/train/sweeps", data={**data, "depths": ["2", "4"], "variants": "pre_ln",
                                           "residual_off": "encoder.3.ffn"}, headers=HX)
    assert r.status_code == 422 and refusal(r)[0] == "residual_off"
    assert "has layers 0..1 at depth 2" in refusal(r)[1]
    assert client.get("/train/sweeps").text.count('href="/train/sweeps/') == 0


@pytest.mark.parametrize("route", ["/playground", "/api/trace", "/playground/step"])
def test_the_playground_refuses_a_layer_a_stored_run_does_not_have(client, two_layer_run, route):
    r = client.get(f"{route}?model=run-{two_layer_run}&input=123&residual_off=encoder.9.ffn")
    assert r.status_code == 422 and refusal(r)[0] == "residual_off" and "has layers 0..1" in refusal(r)[1]
    assert client.get(f"{route}?model=run-{two_layer_run}&input=123&residual_off=encoder.1.ffn").status_code == 200


# ---- 6. a body that is not a small form ----------------------------------------------------------------

FORM_ROUTES = ["/train/runs", "/train/sweeps", "/train/runs/1/cancel", "/train/sweeps/1/cancel",
               "/claims/recompute", "/claims/measure-here"]


@pytest.mark.parametrize("path", FORM_ROUTES)
@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"steps": 10}', "application/json"), (b"steps=10", "text/plain"), (b"steps=10", None),
    (b'{"steps": 10}', "application/merge-patch+json"),
])
def test_a_body_that_is_not_a_form_is_refused_with_415(client, path, body, content_type):
    before = runs(client)
    headers = {**HX, **({"content-type": content_type} if content_type else {})}
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == 415
    field, message = refusal(r)
    assert field == "body" and "this route takes a form" in message
    assert runs(client) == before


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"\x00\xff not multipart", "multipart/form-data; boundary=zz", "is not a valid form"),
    (b"--zz\r\nContent-Disposition: form-data\r\n\r\nsteps\r\n--zz--\r\n", "multipart/form-data; boundary=zz",
     "is not a valid form"),
    (b'{"steps": 10}', FORM, "is not a form of named fields"),
])
def test_a_form_that_cannot_be_read_is_refused_with_422(client, body, content_type, message):
    before = runs(client)
    r = client.post("/train/runs", content=body, headers={**HX, "content-type": content_type})
    assert r.status_code == 422 and message in refusal(r)[1]
    assert runs(client) == before


def test_a_field_the_form_does_not_have_is_refused_not_ignored(client):
    before = runs(client)
    r = client.post("/train/runs", data={**TINY, "step": "20"}, headers=HX)  # steps, misspelt
    assert r.status_code == 422 and refusal(r)[0] == "step" and "not a field of this form" in refusal(r)[1]
    r = client.post("/train/sweeps", data={"depths": "2", "variants": "pre_ln", "layers": "2"}, headers=HX)
    assert r.status_code == 422 and refusal(r)[0] == "layers"
    assert runs(client) == before


def test_an_empty_body_still_starts_nothing_by_accident(client):
    before = runs(client)
    r = client.post("/train/runs", headers=HX)  # every field missing: the lab's defaults, 600 steps
    assert r.status_code == 422 and refusal(r)[0] == "steps"  # more than this server allows (200)
    assert runs(client) == before


@pytest.mark.parametrize("path", FORM_ROUTES)
def test_a_body_over_the_limit_is_refused_with_413(client, path):
    before = runs(client)
    r = client.post(path, data={"label": "x" * 70_000}, headers=HX)
    assert r.status_code == 413 and refusal(r)[0] == "body" and "64 KB" in refusal(r)[1]

    def chunks():  # no Content-Length: the limit holds while the body is read
        for _ in range(100):
            yield b"label=" + b"x" * 1000 + b"&"

    r = client.post(path, content=chunks(), headers={**HX, "content-type": FORM})
    assert r.status_code == 413
    r = client.post(path, content=b"steps=10", headers={**HX, "content-type": FORM, "content-length": "99999999"})
    assert r.status_code == 413
    assert runs(client) == before


# ---- 7. a long value is never echoed back whole --------------------------------------------------------

LONG = "Z" * 100_000


@pytest.fixture
def long_urls(monkeypatch):
    monkeypatch.setattr(httpx._urlparse, "MAX_URL_LENGTH", 1_000_000)  # the test client's own limit


@pytest.mark.parametrize("route", [
    "/api/trace?norm={}", "/api/trace?causal_mask={}", "/api/trace?residual_off={}", "/api/trace?model={}",
    "/api/trace?step={}", "/api/trace?input={}", "/playground?memory={}", "/playground?model=run-{}",
    "/api/models/{}/example", "/lessons/{}", "/lessons/residual/steps/{}/widget", "/api/runs/{}/metrics",
    "/api/runs?limit={}", "/train/runs/{}", "/train?norm={}", "/playground/stream?interval_ms={}", "/{}",
])
def test_a_100_kb_query_value_is_quoted_short(client, long_urls, route):
    r = client.get(route.format(LONG))
    assert 400 <= r.status_code < 500
    assert "Z" * 41 not in r.text and len(r.content) < 20_000


@pytest.mark.parametrize("field", ["steps", "lr", "task", "norm", "ab", "residual_off", "causal_mask", "init",
                                   "label", "Z" * 5000])
def test_a_long_form_value_is_quoted_short(client, field):
    value = LONG[:60_000]  # under the body limit, so the value itself is refused
    r = client.post("/train/runs", data={**TINY, field: value}, headers=HX)
    assert r.status_code in (200, 422) and "Z" * 41 not in r.text
    if r.status_code == 200:  # a label is cut to 60 characters, and the run starts
        assert field == "label"


@pytest.mark.parametrize("data", [{"depths": LONG[:60_000], "variants": "pre_ln"},
                                  {"depths": "2", "variants": LONG[:60_000]}, {"plan": LONG[:60_000]}])
def test_a_long_sweep_value_is_quoted_short(client, data):
    r = client.post("/train/sweeps", data=data, headers=HX)
    assert r.status_code == 422 and "Z" * 41 not in r.text


# ---- 8. Accept-Language and its q-values ---------------------------------------------------------------

@pytest.mark.parametrize(("header", "lang"), [
    ("zh;q=0, en", "en"), ("en;q=0.5, zh", "zh"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("fr, zh;q=0.1", "zh"),
    ("en;q=0, *", "zh"), ("*", "en"), ("zh;q=0", "en"), ("de", "en"), ("", "en"),
    (";;;q=abc,zh;q=x", "en"), ("zh;q=2", "en"), ("zh;q=0.5;x", "en"), ("zh\x7f", "en"), ("," * 1000 + "zh", "en"),
])
def test_accept_language_q_values_are_honoured(client, header, lang):
    client.cookies.clear()  # a language chosen before would win
    r = client.get("/", headers={"Accept-Language": header})
    assert r.status_code == 200
    assert ('<html lang="zh-Hans">' in r.text) == (lang == "zh")


# ---- 9. the OpenAPI document tells the truth -----------------------------------------------------------

def test_every_refusal_in_the_openapi_document_is_the_error_body_or_an_html_page(client):
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in str(spec)
    assert spec["components"]["schemas"]["ErrorBody"]["properties"]["detail"]["items"]["$ref"].endswith("ErrorItem")
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if status.startswith("4"):
                    expected = {"application/json"} if path.startswith("/api") else {"text/html"}
                    assert set(content) == expected, (method, path, status)
                    if path.startswith("/api"):
                        assert content["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
                elif status == "200" and not path.startswith("/api") and not path.endswith("/cancel") \
                        and method == "get":
                    pages = {"text/csv"} if path.endswith(".csv") else {"text/html", "text/event-stream"}
                    assert set(content) <= pages, (method, path)


# every route can answer 400 (a Host not allowed), every POST 403 (another site's page: app/web/security.py),
# and the routes that read the run store 503 (app/lab/store_errors.py)
@pytest.mark.parametrize(("method", "path", "statuses"), [
    ("post", "/train/runs", {"200", "400", "403", "413", "415", "422", "429", "503", "507"}),
    ("post", "/train/sweeps", {"200", "204", "303", "400", "403", "413", "415", "422", "503"}),
    ("post", "/train/runs/{run_id}/cancel", {"200", "400", "403", "404", "413", "415", "422", "503"}),
    ("get", "/api/runs/{run_id}/metrics", {"200", "400", "404", "422", "503"}),
    ("get", "/api/trace", {"200", "400", "404", "413", "422", "503"}),
    ("get", "/playground", {"200", "400", "404", "413", "422", "503"}),
    ("get", "/train/runs/{run_id}/events", {"200", "400", "404", "422", "503"}),
    ("post", "/claims/measure-here", {"200", "303", "400", "403", "409", "413", "415", "422", "503"}),
    ("get", "/lessons", {"200", "400"}),
])
def test_the_openapi_document_declares_every_status_a_route_answers_with(client, method, path, statuses):
    assert set(client.get("/openapi.json").json()["paths"][path][method]["responses"]) == statuses


def test_a_full_queue_is_a_declared_429(tmp_path):
    settings = Settings(data_dir=tmp_path, max_queue=0, max_queue_per_learner=0)
    with TestClient(create_app(settings)) as client:
        r = client.post("/train/runs", data=TINY, headers=HX)
        assert r.status_code == 429 and refusal(r)[0] == "queue"


def test_starlettes_own_refusals_have_the_same_shape(client):
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and ErrorBody.model_validate(r.json()).detail[0].field == "request"
    r = client.delete("/train/runs/1/cancel")
    assert r.status_code == 405 and "DELETE is not allowed here; use POST" in refusal(r)[1]


# Last: the live server's app becomes the playground's model registry (one per process), and runs of this
# module's client would no longer open in the playground.
def test_a_real_server_answers_a_bad_lang_instead_of_dropping_the_connection(live_server):
    for lang in BAD_LANGS:
        r = httpx.get(f"{live_server}/playground?input=1234&lang={lang}", headers=HX, timeout=30)
        assert r.status_code == 200 and "x-injected" not in r.headers


def test_a_huge_unknown_value_is_not_copied_into_the_language_links(client):
    r = client.get("/lessons", params={"foo": "x" * 60_000})
    assert r.status_code == 200 and "x" * 400 not in r.text
