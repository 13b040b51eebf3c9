"""A line of text in a real browser: a GPT writes on and samples with a temperature, a BERT fills in what is
masked, in both languages at a phone's width."""

import re

import pytest
from playwright.sync_api import Page, expect

from model.trace import TOP_K

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("lang, sample", [("en", "Sample"), ("zh", "采样")])
def test_a_gpt_on_the_poems_writes_on_from_a_typed_line_and_samples_it(page: Page, live_server, lang, sample):
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/playground?model=poems-gpt-4&lang={lang}")
    page.fill("#input", "白日依山尽，")
    page.wait_for_url(re.compile(r"input=%E7%99%BD"))  # the typed line is the page's state
    tokens = page.locator(".output-strip .tok")
    expect(tokens.first).to_have_text("白")
    page.get_by_role("button", name=sample, exact=True).click()
    expect(page.locator("#samples li")).to_have_count(3)
    assert all(line.startswith("白日依山尽，") for line in page.locator("#samples li").all_inner_texts())
    page.fill("#input", "床前明月光，")  # another line: the samples of the old one go
    expect(page.locator("#samples li")).to_have_count(0)
    page.screenshot(path=f"test-results/text-gpt-{lang}-390.png", full_page=True)
    assert not errors, errors


def test_a_bert_on_the_poems_fills_in_a_masked_character_with_its_top_guesses(page: Page, live_server):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server}/playground?model=poems-bert-2&lang=zh")
    page.fill("#input", "白日_山尽，")
    expect(page.locator(".top-guesses")).to_contain_text("第 3 位")
    expect(page.locator(".top-guesses .tok")).to_have_count(TOP_K)  # as many as the trace keeps
    expect(page.locator(".output-strip .tok.guess").first).not_to_have_text("_")
    page.screenshot(path="test-results/text-bert-zh-390.png", full_page=True)
