"""Every page in Chinese speaks Chinese: its labels, figures, diagram, lessons and claims come from the
Chinese catalogue, so no English UI words are left (identifiers, formulas and kept terms aside)."""

import pytest
from fastapi.testclient import TestClient
from helpers import english_words_on_page, fresh_claims

from app.factory import create_app
from app.teaching.lesson_schema import load_lessons
from app.web.settings import Settings

PAGES = ["/", "/playground", "/playground?model=zh-numbers-2x2", "/lessons", "/train", "/train/sweeps", "/claims",
         *(f"/lessons/{lesson.slug}" for lesson in load_lessons())]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("data")))) as client:
        fresh_claims(client)  # the claim page in full, not its "measuring" state
        yield client


@pytest.mark.parametrize("page", PAGES)
def test_a_chinese_page_has_no_english_words(client, page):
    r = client.get(page, params={"lang": "zh"})
    assert r.status_code == 200
    assert not english_words_on_page(r.text), english_words_on_page(r.text)


def test_the_check_finds_english_words_outside_formulas_and_tags():
    page = '<p title="Layer norm">层归一化 <b>Layer inputs</b> $\\mathrm{x}$</p>'
    assert english_words_on_page(page) == ["Layer", "inputs"]
