"""Every page at a phone's width (390 × 844), and the attention maps' hover, in a real browser."""

import json

import pytest
from helpers import CLIPPED_TITLES
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

PAGES = ["/", "/playground", "/lessons/residual", "/train", "/claims", "/playground?model=poems-gpt-4",
         "/playground?model=poems-bert-2", "/playground?model=reverse-gpt-4", "/lessons/three-families"]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_page_is_wider_than_a_phone(page: Page, live_server, lang):
    page.set_viewport_size({"width": 390, "height": 844})
    for path in PAGES:
        page.goto(f"{live_server}{path}{'&' if '?' in path else '?'}lang={lang}")
        page.wait_for_load_state("load")
        page.wait_for_function("() => [...document.querySelectorAll('.plot[data-figure]')]"
                               ".filter(p => p.offsetParent !== null && !p.dataset.live)"
                               ".every(p => p.dataset.rendered === 'true')")
        width, viewport = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width <= viewport, f"{path}?lang={lang} is {width} px wide at {viewport} px"
        assert page.evaluate(CLIPPED_TITLES) == [], f"{path}?lang={lang}: titles cut off at the figure's edge"
        nav = page.locator(".topbar nav a").first
        assert nav.bounding_box()["width"] > 30  # the header's links keep their words on one line


def test_hovering_an_attention_cell_outlines_its_row_and_column(page: Page, live_server):
    page.goto(f"{live_server}/playground?input=31415&step=2")  # the encoder's first self-attention
    plot = page.locator(".head-view:not([hidden]) .plot")
    expect(plot).to_have_attribute("data-rendered", "true")
    figure = json.loads(plot.get_attribute("data-figure"))
    n_queries, n_keys = len(figure["data"][0]["z"]), len(figure["data"][0]["z"][0])
    plot.scroll_into_view_if_needed()
    box = plot.locator(".nsewdrag").first.bounding_box()
    # the cell of the second query and the third key (rows from the top: the y axis is reversed)
    page.mouse.move(box["x"] + box["width"] * 2.5 / n_keys, box["y"] + box["height"] * 1.5 / n_queries)
    page.wait_for_function("el => (el.layout.shapes || []).length === 2", arg=plot.element_handle())
    shapes = plot.evaluate("el => el.layout.shapes.map(s => [s.xref, s.yref, s.x0, s.x1, s.y0, s.y1])")
    assert ["x domain", "y", 0, 1, 0.5, 1.5] in shapes  # the query's row
    assert ["x", "y domain", 1.5, 2.5, 0, 1] in shapes  # the key's column
    page.mouse.move(box["x"] + box["width"] * 2.5 / n_keys, box["y"] + box["height"] + 60)  # away: the outline goes
    page.wait_for_function("el => (el.layout.shapes || []).length === 0", arg=plot.element_handle())
