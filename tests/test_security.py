"""Cross-site requests are refused, only allowed host names are answered, and every response carries the
security headers (app/web/security.py)."""

import re

import pytest
from fastapi.testclient import TestClient

from app.factory import create_app
from app.teaching.verdicts import report_path
from app.web.settings import Settings

# Long enough to be still training when the test has finished refusing requests to stop it.
LONG_RUN = {"task": "copy", "layers": "2", "d_model": "32", "n_heads": "2", "d_ff": "64", "steps": "5000",
            "seeds": "1", "seed": "11"}
SMALL_RUN = {"task": "copy", "layers": "1", "d_model": "16", "n_heads": "2", "d_ff": "32", "steps": "20",
             "seeds": "1", "seed": "7"}
SWEEP = {"task": "copy", "depths": ["1", "2"], "variants": ["pre_ln"], "steps": "20", "seeds": "1"}

EVIL = {"origin": "http://evil.example"}
CROSS_SITE = [
    pytest.param(EVIL, id="origin-of-another-site"),
    pytest.param({"sec-fetch-site": "cross-site"}, id="sec-fetch-site-cross-site"),
    pytest.param({"origin": "http://testserver:8888"}, id="origin-of-another-port"),  # e.g. a local notebook
    pytest.param({"origin": "null"}, id="opaque-origin"),
    pytest.param({"sec-fetch-site": "same-site"}, id="sec-fetch-site-same-site"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("data")))) as c:
        yield c


def as_learner(client, name: str):
    """Each test is a learner of its own, so runs left by another test do not fill its share of the queue."""
    client.cookies.set("learner", name)
    return client


def started_run(response) -> int:
    assert response.status_code == 200, response.text
    return int(re.search(r'data-run-id="(\d+)"', response.text).group(1))


def test_a_same_origin_post_starts_a_run(client):
    as_learner(client, "same-origin")
    run_id = started_run(client.post("/train/runs", data=SMALL_RUN, headers={"origin": "http://testserver"}))
    assert client.app.state.store.get(run_id).spec.train.seed == 7
    # Sec-Fetch-Site alone (no Origin) says the same
    again = started_run(client.post("/train/runs", data={**SMALL_RUN, "seed": "8"},
                                    headers={"sec-fetch-site": "same-origin"}))
    assert client.app.state.store.get(again).spec.train.seed == 8


def test_a_cross_site_post_starts_stops_and_measures_nothing(client):
    as_learner(client, "cross-site")
    store = client.app.state.store
    run_id = started_run(client.post("/train/runs", data=LONG_RUN))  # a script: neither header, allowed
    runs, sweeps = [run.id for run in store.list(limit=1000)], store.sweeps(limit=1000)

    attempts = [("/train/runs", SMALL_RUN), ("/train/runs", {**SMALL_RUN, "ab": "residual=off"}),
                ("/train/sweeps", SWEEP), ("/train/sweeps", {"plan": "depth-residual-norm"}),
                (f"/train/runs/{run_id}/cancel", None), ("/claims/recompute", None),
                ("/claims/measure-here", None)]
    for headers in CROSS_SITE:
        for path, form in attempts:
            r = client.post(path, data=form, headers=headers.values[0])
            assert r.status_code == 403, (headers.id, path, r.status_code, r.text)
            assert "refused" in r.text and "origin" in r.text, (headers.id, path)

    assert [run.id for run in store.list(limit=1000)] == runs  # no run created
    assert store.sweeps(limit=1000) == sweeps  # no sweep created
    assert not report_path(client.app.state.settings).exists()  # the claims were not measured and saved
    assert store.get(run_id).status in ("queued", "running")
    # the run was not stopped: a request without browser headers (a script, curl) stops it now
    assert client.post(f"/train/runs/{run_id}/cancel").json() == {"run": run_id, "status": "cancelling"}


def test_a_cross_site_post_does_not_stop_a_sweep(client):
    as_learner(client, "sweep")
    store = client.app.state.store
    r = client.post("/train/sweeps", data=SWEEP, follow_redirects=False)
    assert r.status_code == 303, r.text
    sweep_id = int(r.headers["location"].rsplit("/", 1)[1])
    for headers in CROSS_SITE:
        r = client.post(f"/train/sweeps/{sweep_id}/cancel", headers=headers.values[0], follow_redirects=False)
        assert r.status_code == 403, (headers.id, r.text)
    assert store.sweep(sweep_id)["stopped_at"] is None
    r = client.post(f"/train/sweeps/{sweep_id}/cancel", headers={"origin": "http://testserver"},
                    follow_redirects=False)
    assert r.status_code == 303 and store.sweep(sweep_id)["stopped_at"] is not None


def test_a_refusal_is_the_apps_error_page_fragment_or_json(client):
    page = client.post("/claims/recompute", headers=EVIL)
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert '<span class="error-field">origin</span>' in page.text and "<html" in page.text
    assert "http://evil.example may not start, stop or change anything here" in page.text
    fragment = client.post("/claims/recompute", headers={**EVIL, "hx-request": "true"})
    assert fragment.status_code == 403 and "<html" not in fragment.text and 'id="error"' in fragment.text
    api = client.post("/api/runs", headers={"sec-fetch-site": "cross-site"})
    assert api.status_code == 403
    [detail] = api.json()["detail"]
    assert detail["field"] == "origin" and detail["message"].startswith("refused: a page of another site")


def test_reading_is_allowed_from_anywhere(client):
    """A link from another site opens a page (GET is never state-changing)."""
    assert client.get("/train", headers={**EVIL, "sec-fetch-site": "cross-site"}).status_code == 200
    assert client.get("/api/runs", headers=EVIL).status_code == 200


def test_measuring_here_is_refused_cross_site_and_starts_no_sweep(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path, shipped_results=True))) as client:
        for headers in (EVIL, {"sec-fetch-site": "cross-site"}):
            r = client.post("/claims/measure-here", headers={**headers, "hx-request": "true"})
            assert r.status_code == 403, r.text
        assert client.app.state.store.sweeps(limit=1000) == []
        assert client.app.state.store.list(limit=1000) == []
        assert client.app.state.results.progress_here()["started"] is False


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""])
def test_a_host_not_allowed_gets_400_naming_the_setting(client, host):
    page = client.get("/", headers={"host": host})
    assert page.status_code == 400 and "ADDNORM_ALLOWED_HOSTS" in page.text
    api = client.get("/api/runs", headers={"host": host})
    assert api.status_code == 400
    [detail] = api.json()["detail"]
    assert detail["field"] == "host" and "ADDNORM_ALLOWED_HOSTS" in detail["message"]
    # the same origin under that name (DNS rebinding) changes nothing either
    runs = len(client.app.state.store.list(limit=1000))
    post = client.post("/train/runs", data=SMALL_RUN, headers={"host": host, "origin": f"http://{host}"})
    assert post.status_code == 400 and len(client.app.state.store.list(limit=1000)) == runs


@pytest.mark.parametrize("host", ["localhost:8000", "LOCALHOST", "127.0.0.1:8000", "[::1]:8000", "127.0.0.1"])
def test_the_default_hosts_are_the_loopback_names(tmp_path, host):
    client = TestClient(create_app(Settings(data_dir=tmp_path, allowed_hosts=())))  # the default
    assert client.get("/", headers={"host": host}).status_code == 200
    assert client.get("/", headers={"host": "testserver"}).status_code == 400
    # the same origin under an allowed name is a same-origin request
    r = client.post("/nowhere", headers={"host": host, "origin": f"http://{host.lower()}"})
    assert r.status_code == 404  # past the checks, to the router


def test_star_allows_any_host(tmp_path):
    client = TestClient(create_app(Settings(data_dir=tmp_path, allowed_hosts="*")))
    assert client.get("/", headers={"host": "addnorm.school.example"}).status_code == 200
    assert client.get("/api/models", headers={"host": "10.0.0.7:8000"}).status_code == 200


def test_the_setting_reads_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("ADDNORM_ALLOWED_HOSTS", "addnorm.school.example, 10.0.0.7 ,[::1]")
    assert Settings().allowed_hosts == ("addnorm.school.example", "10.0.0.7", "::1")
    monkeypatch.delenv("ADDNORM_ALLOWED_HOSTS")
    assert Settings(host="0.0.0.0").allowed_hosts == ("localhost", "127.0.0.1", "::1")
    assert Settings(host="192.168.1.20").allowed_hosts == ("localhost", "127.0.0.1", "::1", "192.168.1.20")
    assert "testserver" not in Settings().allowed_hosts


@pytest.mark.parametrize("path", ["/", "/playground?input=123", "/static/js/app.js",
                                  "/static/vendor/htmx-2.0.11.min.js", "/api/models", "/api/runs", "/nowhere",
                                  "/api/runs/999/metrics", "/lessons/nothing"])
def test_every_response_carries_the_security_headers(client, path):
    r = client.get(path)
    policy = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"  # no inline script, no eval
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert directives["connect-src"] == "'self'" and directives["form-action"] == "'self'"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"


def test_refusals_carry_the_security_headers_too(client):
    for r in (client.post("/claims/recompute", headers=EVIL), client.get("/", headers={"host": "evil.example"})):
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"


def test_the_api_docs_are_under_the_strict_policy(client):
    """/docs is Swagger UI from static/vendor/, started from a script file: the pages' policy, no CDN."""
    r = client.get("/docs")
    assert r.status_code == 200 and "<script>" not in r.text and "cdn" not in r.text
    assert r.headers["content-security-policy"] == client.get("/documents").headers["content-security-policy"]
    assert "script-src 'self';" in r.headers["content-security-policy"]
    for asset in ("/static/vendor/swagger-ui-5.33.1/swagger-ui-bundle.js", "/static/js/docs.js"):
        assert asset in r.text and client.get(asset).status_code == 200
    assert client.get("/redoc", follow_redirects=False).headers["location"] == "/docs"
