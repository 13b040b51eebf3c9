"""The claim check's charts in a real browser, on the shipped results: each training claim's card draws its chart
first, with the table folded away, in both languages and at a phone's width."""

import pytest
from helpers import serving
from playwright.sync_api import Page, expect

from app.web.settings import Settings

pytestmark = pytest.mark.browser

CHARTED = ["R3", "R4", "R5", "N2", "N3", "N4", "N5", "P2", "P4"]  # claims measured on the precomputed sweeps


@pytest.fixture(scope="module")
def shipped_server(tmp_path_factory):
    with serving(Settings(data_dir=tmp_path_factory.mktemp("shipped"), shipped_results=True, model_processes=0),
                 "the server with the shipped results") as url:
        yield url


@pytest.mark.parametrize(("lang", "width"), [("en", 1280), ("zh", 390)])
def test_each_training_claim_leads_with_its_drawn_chart(page: Page, shipped_server, lang, width):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{shipped_server}/claims?lang={lang}")
    for claim in CHARTED:
        card = page.locator(f"#claim-{claim}")
        plot = card.locator(".plot[data-figure]").first
        plot.scroll_into_view_if_needed()
        expect(plot).to_have_attribute("data-rendered", "true")
        assert plot.locator(".scatterlayer .trace").count() >= 2, claim  # the measured lines or dots, drawn
        box, card_box = plot.bounding_box(), card.bounding_box()
        assert box["x"] >= card_box["x"] and box["x"] + box["width"] <= card_box["x"] + card_box["width"] + 1, claim
        table = card.locator("details table")
        assert table.count() == 1 and not table.is_visible(), claim  # one click away
        verdict_y = card.locator("details").bounding_box()["y"]
        assert box["y"] < verdict_y, claim  # the picture first, the numbers after
    width_now, viewport = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width_now <= viewport
    card = page.locator("#claim-R4")
    card.locator("details summary").click()
    expect(card.locator("details table")).to_be_visible()
