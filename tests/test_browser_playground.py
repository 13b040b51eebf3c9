"""The playground in a real browser (Playwright + Debian chromium)."""

import json
import re
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def wait_for_plots(page: Page, root: str = "#step-view") -> None:
    """Wait until every visible figure under root has finished Plotly.newPlot."""
    page.wait_for_function(
        """root => {
            const plots = [...document.querySelectorAll(root + ' .plot')].filter(p => p.offsetParent !== null);
            return plots.length > 0 && plots.every(p => p.dataset.rendered === 'true');
        }""",
        arg=root,
    )


def residual_panel_data(page: Page) -> list:
    raw = page.locator("#panel-residual .plot").first.get_attribute("data-figure")
    return json.loads(raw)["data"]


def current_step(page: Page) -> int:
    return int(page.locator("#step-view .step-layout").get_attribute("data-step"))


def test_flipping_residual_off_changes_the_residual_panel(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415")
    wait_for_plots(page)
    expect(page.locator(".banner.intact")).to_be_visible()
    before = residual_panel_data(page)
    page.locator("#switch-residual label", has_text="off").click()
    expect(page.locator(".banner.ablated")).to_be_visible()
    assert residual_panel_data(page) != before
    assert parse_qs(urlparse(page.url).query)["residual"] == ["off"]
    page.get_by_role("tab", name="Residual stream").click()
    wait_for_plots(page, "#panel-residual")
    page.screenshot(path="test-results/playground-residual-off.png", full_page=True)


def test_the_gradients_tab_loads_its_figure_when_opened(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415&residual=off")
    wait_for_plots(page)
    panel = page.locator("#panel-gradients")
    expect(panel.locator(".loading-note")).to_have_count(1)  # not computed with the page
    page.get_by_role("tab", name="Gradients").click()
    expect(panel.locator(".plot .main-svg").first).to_be_visible()
    expect(panel.locator(".loading-note")).to_have_count(0)


def test_stepping_reaches_the_first_decoder_token(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415&step=0")
    wait_for_plots(page)
    for expected in range(1, 40):
        page.locator("#btn-step").click()
        expect(page.locator("#step-view .step-layout")).to_have_attribute("data-step", str(expected))
        wait_for_plots(page)  # as a learner does: the next click lands where the button now is
        if "Output token 1" in page.locator(".step-title").inner_text():
            break
    else:
        pytest.fail("never reached the first decoder token")
    assert page.locator(".arch-box.is-current").count() == 1
    reached = current_step(page)
    assert f"step={reached}" in page.url
    page.locator("#btn-back").click()
    expect(page.locator("#step-view .step-layout")).to_have_attribute("data-step", str(reached - 1))


def test_play_streams_to_the_end_over_sse(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415")
    total = int(page.locator("#player").get_attribute("data-total"))
    page.goto(f"{live_server}/playground?input=31415&step={total - 8}")
    wait_for_plots(page)
    page.select_option("#speed", "120")
    page.locator("#btn-play").click()
    expect(page.locator("#btn-pause")).to_be_visible()
    expect(page.locator("#step-view .step-layout")).to_have_attribute("data-step", str(total - 1), timeout=15_000)
    expect(page.locator("#btn-play")).to_be_visible()
    assert f"step={total - 1}" in page.url


def test_the_url_restores_the_same_state(page: Page, live_server, browser):
    page.goto(f"{live_server}/playground?model=reverse-pre-2x2&input=2718&step=0")
    page.select_option("select[name=norm]", "rms")
    expect(page.locator(".banner.ablated")).to_be_visible()
    page.locator("#switch-causal_mask label", has_text="off").click()
    expect(page.locator("#switch-causal_mask")).to_have_class("switch kind-toggle is-changed")
    page.locator("#btn-step").click()
    page.locator("#btn-step").click()
    expect(page.locator("#step-view .step-layout")).to_have_attribute("data-step", "2")
    url = page.url
    other = browser.new_page()
    other.goto(url)
    assert other.locator("select[name=model]").input_value() == "reverse-pre-2x2"
    assert other.locator("#input").input_value() == "2718"
    assert other.locator("select[name=norm]").input_value() == "rms"
    assert other.locator("#switch-causal_mask input[value=off]").is_checked()
    assert other.locator("#step-view .step-layout").get_attribute("data-step") == "2"
    other.close()


def test_bad_input_is_shown_inline(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415")
    page.locator("#input").fill("12x4")
    expect(page.locator("#results [role=alert]")).to_contain_text("unknown token 'x'")
    expect(page.locator("#state-form")).to_be_visible()


def test_sublayer_residual_switches_dim_while_every_residual_is_off(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415")
    sub = page.locator("#switch-residual_ffn")
    expect(sub).not_to_have_class(re.compile("is-overridden"))
    page.locator("#switch-residual label", has_text="off").click()
    expect(sub).to_have_class(re.compile("is-overridden"))
    expect(page).to_have_url(re.compile("residual=off"))
    page.reload()  # the server renders the same from the URL
    expect(sub).to_have_class(re.compile("is-overridden"))
    page.locator("#switch-residual label", has_text="on").click()
    expect(sub).not_to_have_class(re.compile("is-overridden"))
