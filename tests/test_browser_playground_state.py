"""The playground's state in a real browser: what the page shows, links to and sends always matches the URL."""

import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlparse(url).query)


def test_choosing_another_model_starts_from_its_own_defaults(page: Page, live_server):
    page.goto(f"{live_server}/playground?model=reverse-post-2x2&input=2718&residual=off")
    expect(page.locator(".banner.ablated")).to_be_visible()
    page.select_option("#model-select", "reverse-pre-2x2")
    expect(page.locator(".banner.intact")).to_be_visible()
    expect(page.locator("#input")).to_have_value("31415926")
    expect(page.locator("#switch-residual input[value=on]")).to_be_checked()
    expect(page.locator("select[name=norm_position]")).to_have_value("pre")
    expect(page.locator("#reset-link")).to_have_attribute("href", re.compile("model=reverse-pre-2x2"))
    expect(page).to_have_url(re.compile("model=reverse-pre-2x2"))
    assert query(page.url)["residual"] == ["on"] and query(page.url)["input"] == ["31415926"]

    page.select_option("#model-select", "en-numbers-2x2")
    expect(page.locator("#input")).to_have_value("three hundred twelve")
    expect(page.locator("#task-hint")).to_have_text(re.compile("number", re.I))
    expect(page.locator("#results [role=alert]")).to_have_count(0)
    expect(page.locator(".banner.intact")).to_be_visible()
    expect(page.locator("#train-link")).to_have_attribute("href", re.compile("task=en_numbers"))


def test_a_shared_url_still_opens_what_it_names(page: Page, live_server):
    page.goto(f"{live_server}/playground?model=reverse-pre-2x2&input=2718&norm_position=post")
    expect(page.locator("#model-select")).to_have_value("reverse-pre-2x2")
    expect(page.locator("#input")).to_have_value("2718")
    expect(page.locator("select[name=norm_position]")).to_have_value("post")
    expect(page.locator(".banner.ablated")).to_be_visible()


def test_the_train_link_carries_the_switches_after_a_flip(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415")
    assert query(page.locator("#train-link").get_attribute("href"))["residual"] == ["on"]
    page.locator("#switch-residual label", has_text="off").click()
    expect(page.locator(".banner.ablated")).to_be_visible()
    expect(page.locator("#train-link")).to_have_attribute("href", re.compile("residual=off"))
    # the header's language links follow the state too
    expect(page.locator(".lang-switch a", has_text="简体中文")).to_have_attribute("href", re.compile("residual=off"))


def test_the_step_text_follows_the_residual_switch(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415&step=3")
    expect(page.locator(".step-title")).to_contain_text("add & norm after self-attention")
    expect(page.locator(".step-explain")).to_contain_text("residual connection")
    expect(page.locator(".step-api code")).to_have_text("encoder.0.self_attn")
    page.locator("#switch-residual label", has_text="off").click()
    expect(page.locator(".step-title")).to_contain_text("add off")
    expect(page.locator(".step-explain")).to_contain_text("nothing is added")
    expect(page.locator(".step-explain")).not_to_contain_text("is added to its input")


def test_no_console_error_after_a_refused_input(page: Page, live_server):
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{live_server}/playground?input=31415")
    page.locator("#input").fill("12x4")
    expect(page.locator("#results [role=alert]")).to_contain_text("unknown token 'x'")
    page.locator("#input").fill("1234")
    expect(page.locator(".output-strip")).to_be_visible()
    page.locator("#switch-causal_mask label", has_text="off").click()
    expect(page.locator(".banner.ablated")).to_be_visible()
    assert not [e for e in errors if "hx-indicator" in e or "busy" in e], errors


def test_home_start_here_opens_the_ablated_experiment(page: Page, live_server):
    page.goto(f"{live_server}/")
    start = page.locator("#start-here")
    expect(start).to_be_visible()
    cards = page.locator(".cards").bounding_box()
    assert start.bounding_box()["y"] < cards["y"]  # above the other cards
    start.click()
    expect(page).to_have_url(re.compile(r"/playground\?.*residual=off"))
    expect(page.locator(".banner.ablated")).to_be_visible()
    expect(page.locator(".verdict.bad")).to_be_visible()


def test_the_playground_opens_on_the_output_and_the_residual_stream(page: Page, live_server):
    page.goto(f"{live_server}/playground")
    layout = page.locator("#step-view .step-layout")
    assert layout.get_attribute("data-step") == str(int(layout.get_attribute("data-total")) - 1)
    expect(page.locator(".step-title")).to_contain_text("prediction")
    expect(page.get_by_role("tab", name="Residual stream")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-residual")).to_be_visible()
    # the step-through is still there, from the start
    page.locator("#step-slider").fill("0")
    expect(layout).to_have_attribute("data-step", "0")
