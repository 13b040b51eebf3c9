"""The training lab in a real browser: start a run, watch the curves grow over SSE, stop it."""

import re

import pytest
from helpers import serving
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
    expect(card).to_be_visible(timeout=15_000)
    page.wait_for_function("() => { const el = document.querySelector('.run-card .live-curves');"
                           " return el && el.data && el.data[0].x.length > 5; }", timeout=30_000)
    first = curve_points(page)
    page.wait_for_function(f"() => document.querySelector('.run-card .live-curves').data[0].x.length > {first}",
                           timeout=15_000)
    expect(card.locator(".run-rate")).to_contain_text("steps/s")
    expect(card.locator(".run-rate")).to_contain_text(re.compile(r"about \d+ (s|min) left"))  # the time left
    expect(card.locator(".run-status")).to_have_text("training")
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


def test_a_chinese_run_page_says_every_status_in_chinese(page: Page, live_server):
    page.goto(f"{live_server}/train?lang=zh")
    page.select_option("select[name=task]", "copy")
    for name, value in (("layers", "1"), ("d_model", "16"), ("n_heads", "2"), ("steps", "3000"), ("seed", "11")):
        page.fill(f"input[name={name}]", value)
    page.get_by_role("button", name="开始训练").click()
    card = page.locator(".run-card").first
    expect(card.locator(".run-status")).to_have_text("训练中", timeout=30_000)  # never "started" or "running"
    expect(card.locator(".run-rate")).to_contain_text(re.compile(r"步/秒 · 预计还需 \d+ (秒|分钟)"), timeout=15_000)
    page.screenshot(path="test-results/training-lab-zh.png")
    card.get_by_role("button", name="停止").click()
    expect(card.locator(".run-status")).to_have_text(re.compile(r"^已停止"), timeout=15_000)
    page.goto(f"{live_server}/train?lang=zh")
    statuses = page.locator("#runs .status").all_inner_texts()
    assert statuses and all(re.fullmatch(r"[\u4e00-\u9fff]+", word) for word in statuses), statuses


def test_the_train_button_is_in_view_without_scrolling(page: Page, live_server):
    page.set_viewport_size({"width": 1280, "height": 900})
    for lang, name in (("en", "Train"), ("zh", "开始训练")):
        page.goto(f"{live_server}/train?lang={lang}")
        button = page.get_by_role("button", name=name, exact=True)
        expect(button).to_be_in_viewport(ratio=1)
        box = button.bounding_box()
        assert box["y"] + box["height"] <= 900
        assert page.evaluate("window.scrollY") == 0


def test_a_running_sweep_says_how_long_it_has_left(page: Page, live_server):
    page.goto(f"{live_server}/train/sweeps")
    # no early stop, a model big enough to take a minute, and a seed no other test trains: the run cannot be
    # finished, or replayed, by the time the page looks (a tiny one trains 3,000 steps in seconds)
    response = page.request.post(f"{live_server}/train/sweeps", max_redirects=0, form={
        "task": "reverse", "d_model": "64", "n_heads": "4", "steps": "5000", "seeds": "1", "seed": "71",
        "stop_at": "0", "depths": "2", "variants": "pre_ln"})
    assert response.status == 303
    page.goto(live_server + response.headers["location"])
    progress = page.locator(".sweep-progress")
    expect(progress).to_contain_text("0 of 1 runs finished")
    expect(progress).to_contain_text(re.compile(r"about \d+ (s|min) left"), timeout=30_000)
    page.goto(page.url + "?lang=zh")
    expect(page.locator(".sweep-progress")).to_contain_text(re.compile(r"预计还需 \d+ (秒|分钟)|已完成 1 个"))
    stop = page.get_by_role("button", name="停止整个扫描")
    if stop.count():  # do not leave it training for the tests after this one
        stop.click()


def test_a_gpt_trains_in_the_lab_draws_its_one_stack_and_opens_in_the_playground(page: Page, live_server):
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server}/train")
    page.select_option("select[name=task]", "copy")
    cross = page.locator("#train-switch-residual_cross_attn")
    expect(cross).not_to_have_class(re.compile("is-not-applicable"))
    page.select_option("select[name=arch]", "encoder_only")
    expect(page.locator("#train-switch-causal_mask .switch-note")).to_contain_text("Does nothing here")
    page.select_option("select[name=arch]", "decoder_only")  # the switches a GPT lacks are greyed, saying why
    expect(cross).to_have_class(re.compile("is-not-applicable"))
    expect(cross.locator(".switch-note")).to_contain_text("no encoder")
    expect(page.locator("#train-switch-causal_mask")).not_to_have_class(re.compile("is-not-applicable"))
    for name, value in (("layers", "2"), ("d_model", "16"), ("n_heads", "2"), ("steps", "40"), ("seeds", "2"),
                        ("seed", "21")):
        page.fill(f"input[name={name}]", value)
    page.get_by_role("button", name="Train").click()
    card = page.locator(".run-card").first
    expect(card.locator(".run-config")).to_contain_text("2 layers")
    expect(card.locator(".run-status")).to_have_text("done", timeout=60_000)
    rows = page.evaluate("() => document.querySelector('.run-card .live-heatmap').layout.yaxis.ticktext")
    assert rows == ["Dec 1", "Dec 2"]  # the GPT's one stack, every layer's gradient
    assert not errors, errors
    page.screenshot(path="test-results/training-lab-gpt.png", full_page=True)
    card.locator(".inspect-link a").first.click()
    page.wait_for_url(re.compile(r"/playground\?model=run-\d+"))
    title = page.locator("#arch-title")
    expect(title).to_contain_text("GPT (decoder only): 2 layers")


@pytest.fixture(scope="module")
def empty_lab(tmp_path_factory):
    """A second server with a run store of its own, still empty."""
    from app.web.settings import Settings

    with serving(Settings(data_dir=tmp_path_factory.mktemp("empty"), shipped_results=False),
                 "the second server") as url:
        yield url


def test_the_empty_lab_says_what_it_does_and_what_to_try(page: Page, empty_lab):
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{empty_lab}/train")
    empty = page.locator(".empty-state")
    expect(empty).to_contain_text("No runs yet")
    expect(empty).to_contain_text("Try first: press Train")
    page.screenshot(path="test-results/training-lab-empty.png")
    page.goto(f"{empty_lab}/train?lang=zh")
    expect(page.locator(".empty-state")).to_contain_text("还没有训练运行")
    page.screenshot(path="test-results/training-lab-empty-zh.png")

