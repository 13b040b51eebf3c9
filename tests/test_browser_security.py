"""The pages under their real Content-Security-Policy in a real browser, and a form on another site that posts to
the server (Playwright + Debian chromium)."""

import httpx
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PAGES = ["/", "/playground?input=31415", "/train", "/train/sweeps", "/lessons/residual", "/claims"]


def watch_the_console(page: Page) -> list[str]:
    """Every CSP violation the browser reports and every uncaught error, as they happen."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


def test_the_pages_work_under_their_content_security_policy(page: Page, live_server):
    problems = watch_the_console(page)
    for lang in ("en", "zh"):
        for path in PAGES:
            url = f"{live_server}{path}{'&' if '?' in path else '?'}lang={lang}"
            response = page.goto(url)
            assert response.status == 200, url
            assert "script-src 'self';" in response.headers["content-security-policy"]
            expect(page.locator("header.topbar")).to_be_visible()  # the scripts ran up to the end of the page
            if path.startswith("/playground"):
                expect(page.locator("#step-view .js-plotly-plot").first).to_be_visible()
            if path.startswith("/lessons/"):
                expect(page.locator(".katex").first).to_be_attached()  # formulas typeset with KaTeX's fonts
    assert problems == []

    # an HTMX request still works: flipping a switch re-runs the model and redraws the figures
    page.goto(f"{live_server}/playground?input=31415&lang=en")
    plot = page.locator("#step-view .js-plotly-plot").first
    expect(plot).to_be_visible()
    plot.evaluate("el => { el.dataset.before = 'yes'; }")  # gone once the view is swapped for a new one
    page.locator("#switch-residual label", has_text="off").click()
    expect(page.locator(".banner.ablated")).to_be_visible()
    expect(page.locator("#step-view .js-plotly-plot").first).to_be_visible()
    expect(page.locator("#step-view .js-plotly-plot[data-before]")).to_have_count(0)
    page.screenshot(path="test-results/playground-under-csp.png", full_page=True)
    assert problems == []


def test_a_form_on_another_site_cannot_start_a_run(page: Page, live_server):
    """evil.example's page (served here by Playwright) posts the lab's form to the server: refused, nothing made."""
    runs = len(httpx.get(f"{live_server}/api/runs").json())
    evil = (f'<form method="post" action="{live_server}/train/runs">'
            '<input name="task" value="copy"><input name="layers" value="1"><input name="steps" value="20">'
            '<button>Win a prize</button></form>')
    page.route("http://evil.example/**", lambda route: route.fulfill(content_type="text/html", body=evil))
    page.goto("http://evil.example/prize")
    with page.expect_navigation():
        page.get_by_role("button", name="Win a prize").click()
    expect(page.locator("#error")).to_contain_text("refused: a page of http://evil.example may not start")
    assert len(httpx.get(f"{live_server}/api/runs").json()) == runs


def test_the_api_docs_render_offline_under_the_strict_policy(page: Page, live_server):
    """Swagger UI comes from the server itself: every request stays on it, and nothing is refused or fails."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    elsewhere: list[str] = []

    def only_this_server(route):  # as if there were no network: anything for another host fails
        if route.request.url.startswith(live_server):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    response = page.goto(f"{live_server}/docs")
    assert "script-src 'self';" in response.headers["content-security-policy"]
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    expect(page.locator(".opblock-summary-path", has_text="/api/runs").first).to_be_visible()
    assert page.locator(".opblock").count() > 10
    page.locator(".opblock-summary", has_text="/api/runs").first.click()  # an operation opens
    expect(page.locator(".opblock-body").first).to_be_visible()
    page.goto(f"{live_server}/redoc")
    assert page.url == f"{live_server}/docs"
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    assert elsewhere == [] and problems == []
