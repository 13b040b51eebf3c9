"""The training lab in a real browser: start a run, watch the curves grow over SSE, stop it."""

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def curve_points(page: Page) -> int:
    return page.evaluate("""() => {
        const el = document.querySelector('.run-card .live-curves');
        return el && el.data ? el.data[0].x.length : 0;
    }""")


def test_start_watch_the_curve_grow_then_stop(page: Page, live_server):
    page.goto(f"{live_server}/train")
    page.select_option("select[name=task]", "copy")
    page.fill("input[name=layers]", "1")
    page.fill("input[name=d_model]", "16")
    page.fill("input[name=n_heads]", "2")
    page.fill("input[name=steps]", "5000")
    page.fill("input[name=seed]", "7")
    page.get_by_role("button", name="Train").click()
    card = page.locator(".run-card").first
    expect(card).to_be_visible()
    page.wait_for_function("() => { const el = document.querySelector('.run-card .live-curves');"
                           " return el && el.data && el.data[0].x.length > 5; }", timeout=30_000)
    first = curve_points(page)
    page.wait_for_function(f"() => document.querySelector('.run-card .live-curves').data[0].x.length > {first}",
                           timeout=15_000)
    expect(card.locator(".run-rate")).to_contain_text("steps/s")
    card.get_by_role("button", name="Stop").click()
    expect(card.locator(".run-status")).to_have_text("stopped: by the learner", timeout=15_000)
    stopped_at = curve_points(page)
    assert 5 < stopped_at < 5000
    expect(card.get_by_role("button", name="Stop")).to_have_count(0)
    page.screenshot(path="test-results/training-lab.png", full_page=True)


def test_bad_settings_are_refused_with_the_field_named(page: Page, live_server):
    page.goto(f"{live_server}/train")
    page.fill("input[name=d_model]", "24")
    page.fill("input[name=n_heads]", "5")
    page.get_by_role("button", name="Train").click()
    expect(page.locator("#runs [role=alert]")).to_contain_text("not divisible by 5 heads")
