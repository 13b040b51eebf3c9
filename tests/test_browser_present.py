"""Presentation mode for a teacher at a projector: one button, larger type and figures, fewer controls, and kept
in the address as the teacher clicks through."""

import re

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def _font_px(page: Page) -> float:
    return page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")


def test_one_button_turns_presentation_on_and_the_address_keeps_it(page: Page, live_server):
    page.goto(f"{live_server}/playground?lang=en")
    normal = _font_px(page)
    expect(page.locator("#residual-off-hint")).to_be_visible()
    page.click("text=Present")
    expect(page.locator("body")).to_have_class(re.compile(r"\bpresent\b"))
    assert "present=1" in page.url and _font_px(page) > normal * 1.15
    expect(page.locator("#residual-off-hint")).to_be_hidden()  # fewer controls
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    assert page.locator(".js-plotly-plot").first.evaluate("el => el._fullLayout.font.size") >= 15  # larger figures
    page.locator("#switch-residual label", has_text="off").click()
    # the switch's new address keeps presentation mode
    expect(page).to_have_url(re.compile(r"(?=.*residual=off)(?=.*present=1)"), timeout=30_000)
    page.click("nav >> text=Lessons")
    expect(page.locator("body")).to_have_class(re.compile(r"\bpresent\b"))
    assert "present=1" in page.url
    page.click("text=Leave presentation")
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bpresent\b"))
    assert "present=1" not in page.url


def test_presentation_mode_in_chinese(page: Page, live_server):
    page.goto(f"{live_server}/claims?lang=zh&present=1")
    expect(page.locator(".present-toggle")).to_have_text("退出演示")
    expect(page.locator(".footer")).to_be_hidden()
