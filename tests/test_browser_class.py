"""A class in real browsers: a teacher's screen and three phones (one in Chinese), each in its own browser
context. The phones join and answer, the teacher's count rises live, the reveal draws the bar chart, the run marks
the measured answer on every screen."""

import re

import pytest
from helpers import CLIPPED_TITLES
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def no_wider_than_the_screen(page: Page) -> None:
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= viewport, f"{page.url} is {width} px wide at {viewport} px"


def test_a_class_with_a_teacher_and_three_phones(browser: Browser, live_server):
    contexts = [browser.new_context(viewport={"width": 1366, "height": 900})]
    try:
        teacher = contexts[0].new_page()
        teacher.goto(f"{live_server}/lessons/residual?lang=en")
        teacher.click(".teach-link")
        expect(teacher.locator("#class-lesson")).to_have_value("residual")
        teacher.click("text=Start a class")
        # the teacher's key leaves the address bar (the room sees it on the projector)
        expect(teacher).to_have_url(re.compile(r"/class/\w{8}\?present=1$"))
        code = re.search(r"/class/(\w{8})", teacher.url).group(1)
        expect(teacher.locator("#join-code")).to_have_text(f"{code[:4]} {code[4:]}")
        expect(teacher.locator(".join-qr svg")).to_be_visible()

        phones = []
        for nickname, lang in ((r"$\Huge Ada$", "en"), ("<b>Bob</b>", "en"), ("小明", "zh")):
            contexts.append(browser.new_context(**PHONE, locale="zh-CN" if lang == "zh" else "en-US"))
            phone = contexts[-1].new_page()
            phone.goto(f"{live_server}/join/{code}")  # the QR code's address; the language is the phone's own
            phone.fill("input[name=nickname]", nickname)
            phone.locator("form.join-form button").click()
            expect(phone.locator(".student-who")).to_contain_text(nickname)
            phones.append(phone)
        expect(teacher.locator("#joined-count")).to_have_text("3")
        expect(teacher.locator(".roster")).to_contain_text("<b>Bob</b>")  # escaped, shown as typed
        expect(teacher.locator(".roster")).to_contain_text(r"$\Huge Ada$")

        teacher.keyboard.press("ArrowRight")  # the next step, as a presenter's clicker sends it
        expect(teacher.locator(".class-question")).to_be_visible()
        for phone in phones:
            expect(phone.locator(".answer-form")).to_be_visible()
        expect(phones[2].locator(".class-question")).to_contain_text("剪断残差连接后")
        for n, (phone, choice) in enumerate(zip(phones, "cbc", strict=True), start=1):
            phone.locator(f".answer-choice:has(input[value={choice}])").click()
            phone.locator(".answer-send").click()
            expect(phone.locator(".answer-status")).to_be_visible()
            expect(teacher.locator("#tally-text")).to_have_text(f"{n} of 3 answered")  # live, no reload
        no_wider_than_the_screen(phones[2])

        teacher.click("#btn-reveal")
        chart = teacher.locator(".class-chart .plot")
        expect(chart).to_have_attribute("data-rendered", "true")
        assert chart.evaluate("el => el.data[0].y") == [0, 1, 2]
        for phone in phones:
            expect(phone.locator(".student-bars")).to_be_visible()
            expect(phone.locator(".answer-form")).to_have_count(0)  # locked

        teacher.click("#btn-run")
        expect(teacher.locator(".class-choices li.measured")).to_have_attribute("data-choice", "c", timeout=30_000)
        expect(teacher.locator(".class-widget .widget-body")).to_be_visible()
        expect(teacher.locator(".class-chart .plot[data-rendered=true]")).to_be_visible()
        for plot in teacher.locator(".class-widget .plot").all():  # drawn when seen
            plot.scroll_into_view_if_needed()
            expect(plot).to_have_attribute("data-rendered", "true")
        assert teacher.evaluate(CLIPPED_TITLES) == []  # presentation-sized, side by side: titles wrap
        assert chart.evaluate("el => el.data[0].marker.color[2]") != chart.evaluate("el => el.data[0].marker.color[1]")
        for phone, verdict in zip(phones, ("You predicted it.", "Not what you predicted.", "你预测对了"), strict=True):
            expect(phone.locator(".student-bars li.measured")).to_have_attribute("data-choice", "c")
            expect(phone.locator(".class-result")).to_contain_text(verdict)
            no_wider_than_the_screen(phone)
        expect(phones[1].locator(".student-bars li.mine")).to_have_attribute("data-choice", "b")

        teacher.locator("#btn-lock").click()  # no one new joins now; the class goes on
        expect(teacher.locator(".joins-locked")).to_be_visible()
        contexts.append(browser.new_context(**PHONE))  # a phone that never joined
        late = contexts[-1].new_page()
        late.goto(f"{live_server}/join/{code}")
        expect(late.locator("body")).to_contain_text("locked this class")
        teacher.locator("#btn-lock").click()
        expect(teacher.locator(".joins-locked")).to_have_count(0)
        teacher.reload()  # the key this tab kept is put back: the teacher's screen again, its key hidden again
        expect(teacher.locator("#class-screen[data-role=teacher]")).to_be_visible()
        expect(teacher).to_have_url(re.compile(r"/class/\w{8}\?present=1$"))
        expect(teacher.locator(".roster")).to_contain_text(r"$\Huge Ada$")  # a nickname is never typeset as math
        expect(teacher.locator(".roster .katex")).to_have_count(0)
        teacher.goto(f"{live_server}/class?lang=en")  # this browser's classes, to reopen
        expect(teacher.locator("#class-past-list .past-code")).to_have_text([code])
        teacher.locator(".past-link").click()
        teacher.once("dialog", lambda dialog: dialog.accept())
        teacher.get_by_role("button", name="Close the class").click()
        expect(teacher.locator(".class-ended")).to_be_visible()
        expect(phones[0].locator(".class-ended")).to_be_visible()
    finally:
        for context in contexts:
            context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_join_form_and_a_phone_fit_390_px(browser: Browser, live_server, lang):
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.goto(f"{live_server}/class?lang={lang}")
        page.locator(".class-start button").click()
        code, key = re.search(r"/class/(\w{8})\?key=([\w-]+)", page.url).groups()
        page.goto(f"{live_server}/join/{code}?lang={lang}")
        no_wider_than_the_screen(page)
        page.fill("input[name=nickname]", "W" * 24)  # the longest nickname, of the widest letter
        page.locator("form.join-form button").click()
        expect(page.locator(".class-view")).to_be_visible()
        no_wider_than_the_screen(page)
        page.request.post(f"{live_server}/class/{code}/close", form={"key": key})  # the live server is shared
    finally:
        context.close()
