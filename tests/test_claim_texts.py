"""Claim texts live in the catalogues: every key the claims use exists in both languages with the same
placeholders, Chinese renderings hold no English words, numbers have readable labels, and saved reports
(this format or the older one with sentences) render."""

import json
import re
import string

import pytest
from fastapi.testclient import TestClient
from helpers import english_words, fresh_claims, stored_claim_verdicts, visible_text

from app.factory import create_app
from app.teaching.claims import CLAIMS, measure_all
from app.teaching.claims.common import Text
from app.teaching.claims.render import number_label, number_parts, render_text, verdict_view
from app.teaching.verdicts import REPORT_FORMAT, report_path
from app.web.i18n import Translator, labels
from app.web.settings import Settings

EN, ZH = Translator("en"), Translator("zh")


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """Every claim measured on the zoo, and the store-based ones from stores that reach their sentences."""
    return [*measure_all(None).values(), *stored_claim_verdicts(tmp_path_factory.mktemp("stores"))]


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def _keys_of(text) -> set[str]:
    """Every catalogue key a Text (or a list of them, or values holding them) uses."""
    if isinstance(text, list):
        return set().union(*(_keys_of(part) for part in text)) if text else set()
    if isinstance(text, Text):
        return {text.key}.union(*(_keys_of(v) for v in text.values.values()))
    return set()


def test_claim_and_number_entries_have_the_same_placeholders_in_both_languages():
    en, zh = labels("en"), labels("zh")
    ours = [key for key in en if key.startswith(("claim.", "number."))]
    assert ours and [k for k in zh if k.startswith(("claim.", "number."))] == ours
    for key in ours:
        assert _placeholders(en[key]) == _placeholders(zh[key]), key


def test_every_key_the_claims_use_is_in_both_catalogues(verdicts):
    en, zh = labels("en"), labels("zh")
    used = {f"claim.{claim}.statement" for claim in CLAIMS}
    for v in verdicts:
        used |= _keys_of(v.summary) | _keys_of(v.method)
        for key in v.numbers:
            stem, _ = number_parts(key, EN)
            used.add(f"number.{stem}")
    missing = sorted(key for key in used if key not in en or key not in zh)
    assert not missing
    for v in verdicts:  # and each Text gives exactly the values its entry asks for
        for text in _texts(v.summary) + _texts(v.method):
            assert set(text.values) == _placeholders(en[text.key]), text.key


def _texts(text) -> list[Text]:
    if isinstance(text, list):
        return [t for part in text for t in _texts(part)]
    if isinstance(text, Text):
        return [text, *(t for v in text.values.values() for t in _texts(v))]
    return []


def test_the_chinese_claim_entries_hold_no_english_words():
    zh = labels("zh")
    for key, text in zh.items():
        if key.startswith(("claim.", "number.")):
            assert not english_words(re.sub(r"\{\w+\}", " ", text)), (key, text)


def test_every_verdict_reads_in_chinese_without_english_words(verdicts):
    for v in verdicts:
        view = verdict_view(v, ZH)
        shown = [view["summary"], view["method"], *(f"{label} {value}" for _, label, value in view["numbers"])]
        for text in shown:
            assert not english_words(text), (v.claim, english_words(text), text)
        assert re.search(r"[\u4e00-\u9fff]", view["summary"])


def test_every_number_has_a_label_in_both_languages(verdicts):
    for v in verdicts:
        for key in v.numbers:
            for t in (EN, ZH):
                label = number_label(key, t)
                assert label.strip() and "number." not in label and "{" not in label, (key, label)
            assert not english_words(number_label(key, ZH)), key


def test_number_labels_name_their_qualifiers():
    assert number_label("post-2x2_decoder_grad_first_residual_on", EN) == \
        "gradient norm at the first layer's input · reverse-post-2x2 · decoder · with residual connections"
    assert number_label("no_residual_depth6_heldout_accuracy", ZH) == \
        "最终留出集整句正确率 · 无残差连接（Pre-LN） · 6 层"
    assert number_label("F_over_x_encoder.0.self_attn", ZH) == "‖F(x)‖/‖x‖ · 编码器第 1 层的自注意力"


def test_optional_sentences_are_joined_per_language():
    parts = [Text("claim.R3.fails_early", {"depth": "2"}), Text("claim.short_of_six", {"depth": "4"})]
    assert render_text(parts, EN) == ("Training already fails at 2 layers, below the note's threshold of 6. "
                                      "The deepest finished run has 4 layers, short of 6.")
    assert render_text(parts, ZH) == ("早在 2 层时训练就已失败，低于笔记所说的 6 层门槛。"
                                      "已完成的最深运行只有 4 层，不到 6 层。")


def test_a_saved_verdict_renders_like_the_live_one(verdicts):
    from dataclasses import asdict

    for v in verdicts[:5]:
        saved = json.loads(json.dumps(asdict(v), ensure_ascii=False))
        assert verdict_view(saved, ZH) == verdict_view(v, ZH) and verdict_view(saved, EN) == verdict_view(v, EN)


def test_an_old_sentence_report_still_renders_and_is_measured_again(tmp_path):
    old = {"computed_at": 1.0, "seconds": 1.0, "runs_in_store": 0, "verdicts": {"P3": {
        "claim": "P3", "verdict": "holds", "numbers": {"positions": 256}, "sources": ["zoo:reverse-post-2x2"],
        "summary": {"en": "Old sentence.", "zh": "旧的句子。"}, "method": {"en": "Old method.", "zh": "旧的方法。"}}}}
    assert verdict_view(old["verdicts"]["P3"], ZH)["summary"] == "旧的句子。"
    settings = Settings(data_dir=tmp_path)
    report_path(settings).write_text(json.dumps(old, ensure_ascii=False), encoding="utf-8")
    with TestClient(create_app(settings)) as client:
        report = fresh_claims(client)
    assert report["format"] == REPORT_FORMAT and set(report["verdicts"]) == set(CLAIMS)
    p3 = report["verdicts"]["P3"]
    assert p3["summary"]["en"].startswith("For offsets k =") and p3["summary"]["zh"].startswith("对偏移 k =")
    assert p3["method"]["zh"] and p3["summary_text"][0]["key"] == "claim.P3.summary"
    assert p3["number_labels"]["positions"] == {"en": "positions", "zh": "位置数"}
    assert json.loads(report_path(settings).read_text(encoding="utf-8")) == old  # a GET never writes


def test_the_chinese_claim_page_shows_no_english_words(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        fresh_claims(client)
        r = client.get("/claims?lang=zh")
    assert r.status_code == 200
    text = visible_text(r.text)
    assert not english_words(text), english_words(text)
    assert "post-2x2_decoder_grad_first_residual_on" not in text  # raw keys only as titles
    assert 'title="post-2x2_decoder_grad_first_residual_on"' in r.text
    for claim in CLAIMS:
        assert labels("zh")[f"claim.{claim}.statement"] in text
