"""Lesson 1 end to end in a real browser, in Chinese: predict, run, read; progress survives a reload."""

import pytest
from helpers import CLIPPED_TITLES
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_lesson_one_in_chinese_predict_run_read(page: Page, live_server):
    page.goto(f"{live_server}/lessons/residual?lang=zh")
    expect(page.locator("h1")).to_contain_text("残差")
    steps = page.locator(".lesson-step:has(.predict)")
    assert steps.count() >= 2
    for i in range(steps.count()):
        step = steps.nth(i)
        run = step.locator(".run-step")
        expect(run).to_be_disabled()  # predict first
        step.locator(".predict input[type=radio]").first.check()
        expect(run).to_be_enabled()
        run.click()
        expect(step.locator(".widget .widget-body")).to_be_visible(timeout=30_000)
        expect(step.locator(".explain")).to_be_visible()
        expect(step.locator(".predict input").first).to_be_disabled()
        for plot in step.locator(".widget .plot").all():  # drawn when seen
            plot.scroll_into_view_if_needed()
            expect(plot).to_have_attribute("data-rendered", "true")
    assert page.evaluate(CLIPPED_TITLES) == []  # side-by-side figures are half as wide: their titles wrap
    page.screenshot(path="test-results/lesson-residual-zh.png", full_page=True)
    # resumed after a reload: the predictions stay chosen and the widgets run again
    page.reload()
    first = steps.first
    expect(first.locator(".predict input[type=radio]").first).to_be_checked()
    expect(first.locator(".widget .widget-body")).to_be_visible(timeout=30_000)
    assert page.locator(".lesson-toc a.done").count() >= steps.count()


def test_the_outcome_line_says_whether_the_prediction_matched(page: Page, live_server):
    page.goto(f"{live_server}/lessons/positional-encoding?lang=en")
    step = page.locator("#word-order")
    step.locator(".predict input[value=c]").check()
    step.locator(".run-step").click()
    line = step.locator(".widget .outcome")
    expect(line).to_contain_text("You predicted: Wrong on almost every input: the order is lost", timeout=30_000)
    expect(line).to_contain_text("✓ Your prediction matched.")
    expect(line).to_have_attribute("data-outcome", "match")
