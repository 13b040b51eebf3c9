"""A class session through the app's test client: start, join, answer, reveal, run, download; the teacher's
secret, the students' cookies, the limits, expiry, a restart, a data directory that cannot be used, and every
bad input answered with a clear 4xx naming the field."""

import csv
import io
import re

import pytest
from fastapi.testclient import TestClient
from helpers import english_words_on_page

from app.classroom import teacher_routes
from app.classroom.sessions import student_cookie
from app.classroom.store import ClassStore
from app.factory import create_app
from app.teaching.lesson_schema import get_lesson
from app.web.settings import Settings

HX = {"HX-Request": "true"}
QUESTION = "gradient-highway"  # lesson "residual", step 2: measured on the zoo's models, no training needed


def refusal(response) -> tuple[str, str]:
    """(field, message) of the app's error page."""
    match = re.search(r'class="error-field">([^<]*)</span>:\s*([^<]*)', response.text)
    assert match, response.text[-600:]
    return match.group(1), match.group(2).strip()


def start(client, lesson="residual") -> tuple[str, str]:
    r = client.post("/class", data={"lesson": lesson}, follow_redirects=False)
    assert r.status_code == 303, r.text
    code, key = re.fullmatch(r"/class/(\w{8})\?key=([\w-]+)&present=1", r.headers["location"]).groups()
    return code, key


def student(app, code, nickname="") -> TestClient:
    """A phone of its own (its own cookies) on the same running app."""
    phone = TestClient(app)
    r = phone.post("/join", data={"code": code, "nickname": nickname}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/join/{code}", r.text
    return phone


def teacher(client, code, key, action, **fields):
    return client.post(f"/class/{code}/{action}", data={"key": key, **fields}, headers=HX)


def answer(phone, code, choice, step=QUESTION):
    return phone.post(f"/join/{code}/answer", data={"step": step, "choice": choice}, headers=HX)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), class_max_open=100,  # a class per test
                        class_starts_per_hour=1000, class_joins_per_minute=1000)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def running(client):
    """A class at its first question, with the teacher's code and key."""
    code, key = start(client)
    assert teacher(client, code, key, "step", to="1").status_code == 200
    return code, key


def test_a_class_from_start_to_the_measured_answer(client, running):
    code, key = running
    page = client.get(f"/class/{code}", params={"key": key, "present": "1"})
    assert page.status_code == 200
    assert f"{code[:4]} {code[4:]}" in page.text and '<svg role="img"' in page.text and "/join" in page.text
    ada, anonymous = student(client.app, code, "Ada"), student(client.app, code)
    assert "You are Ada" in ada.get(f"/join/{code}").text
    assert "You are Student 2" in anonymous.get(f"/join/{code}").text
    assert answer(ada, code, "a").status_code == 200
    changed = answer(ada, code, "c")  # a change of mind before the reveal
    assert changed.status_code == 200 and "Your answer: C" in changed.text
    assert answer(anonymous, code, "b").status_code == 200
    view = client.get(f"/class/{code}/view", params={"key": key})
    assert "2 of 2 answered" in view.text and "class-chart" not in view.text  # no spread before the reveal
    revealed = teacher(client, code, key, "reveal", step=QUESTION)
    assert revealed.status_code == 200 and "class-chart" in revealed.text
    late = answer(anonymous, code, "c")
    assert late.status_code == 409 and refusal(late) == ("choice", "the teacher has revealed the answers: they are "
                                                                   "locked now")
    ran = teacher(client, code, key, "run", step=QUESTION)
    assert ran.status_code == 200
    assert re.search(r'class="measured" data-choice="c"', ran.text)  # R1: the gradient all but vanishes
    assert 'data-outcome="resolved"' in ran.text and "widget-body" in ran.text  # with the lesson's figures
    mine = ada.get(f"/join/{code}/view").text
    assert "You predicted it." in mine and re.search(r'class="mine measured" data-choice="c"', mine)
    theirs = anonymous.get(f"/join/{code}/view").text
    assert "Not what you predicted." in theirs and "1 (50%)" in theirs
    rows = list(csv.DictReader(io.StringIO(client.get(f"/class/{code}/answers.csv", params={"key": key})
                                           .content.decode("utf-8-sig"))))
    assert [(r["student"], r["nickname"], r["step"], r["choice"], r["correct"]) for r in rows] == \
        [("1", "Ada", QUESTION, "c", "yes"), ("2", "", QUESTION, "b", "no")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0]["answered_at"])
    store = client.app.state.classes
    kept = store.step_state(store.by_code(code).id, QUESTION)
    assert kept.result["choice"] == "c"
    again = teacher(client, code, key, "run", step=QUESTION)  # once: a second click keeps it
    assert again.status_code == 200 and re.search(r'class="measured" data-choice="c"', again.text)
    assert store.step_state(store.by_code(code).id, QUESTION) == kept


@pytest.mark.parametrize(("lesson", "to", "step", "outcome", "says"), [
    ("residual", 5, "depth-sweep", "not_measured", "Not measured on this server"),  # no sweep trained here
    ("decoder-stack", 5, "train-same-depth", "figure", "No single number decides this question"),
])
def test_a_measurement_that_decides_nothing_marks_no_answer_and_says_why(client, lesson, to, step, outcome, says):
    code, key = start(client, lesson)
    teacher(client, code, key, "step", to=str(to))
    phone = student(client.app, code)
    answer(phone, code, "a", step=step)
    teacher(client, code, key, "reveal", step=step)
    ran = teacher(client, code, key, "run", step=step)
    assert ran.status_code == 200 and f'data-outcome="{outcome}"' in ran.text and says in ran.text
    assert 'class="measured"' not in ran.text
    mine = phone.get(f"/join/{code}/view").text
    assert says in mine and "measured" not in re.findall(r'<li class="([^"]*)"', mine)[0]
    rows = client.get(f"/class/{code}/answers.csv", params={"key": key}).content.decode("utf-8-sig")
    assert [r["correct"] for r in csv.DictReader(io.StringIO(rows))] == [""]


def test_a_step_without_a_question_shows_its_text_on_both_screens(client):
    code, key = start(client)
    phone = student(client.app, code)
    for page in (client.get(f"/class/{code}", params={"key": key}), phone.get(f"/join/{code}")):
        assert "The note&#39;s question" in page.text and "The note&#39;s first answer makes five claims" in page.text
    assert answer(phone, code, "a", step="question").status_code == 409  # nothing to answer there


def test_only_the_teachers_link_can_act(client, running):
    code, key = running
    for wrong in ("", "not-the-key", key[:-1]):
        for action, fields in (("step", {"to": "2"}), ("reveal", {"step": QUESTION}), ("run", {"step": QUESTION}),
                               ("close", {})):
            r = teacher(client, code, wrong, action, **fields)
            assert r.status_code == 403 and refusal(r)[0] == "key", (action, wrong)
        for path in ("", "/view", "/roster", "/events", "/answers.csv"):
            assert client.get(f"/class/{code}{path}", params={"key": wrong}).status_code == 403
    view = client.get(f"/class/{code}/view", params={"key": key, "lang": "en"}).text  # nothing moved it
    assert "step 2 of 11" in view and 'data-stage="1:open:"' in view and "class-chart" not in view
    assert "has been closed" not in view


def test_a_student_answers_only_for_themselves(client, running):
    code, _ = running
    ada, bob = student(client.app, code, "Ada"), student(client.app, code, "Ada")  # the same nickname: no matter
    answer(ada, code, "a")
    answer(bob, code, "b")
    assert "Your answer: A" in ada.get(f"/join/{code}/view").text
    r = bob.post(f"/join/{code}/answer", data={"step": QUESTION, "choice": "c", "student": "1"}, headers=HX)
    assert r.status_code == 422 and refusal(r)[0] == "student"  # no field names another student
    stranger = TestClient(client.app)  # no cookie: not in the class
    r = answer(stranger, code, "c")
    assert r.status_code == 403 and refusal(r)[0] == "student"
    stranger.cookies.set(student_cookie(code), "made-up-token", path="/join")
    assert answer(stranger, code, "c").status_code == 403
    assert "Your answer: A" in ada.get(f"/join/{code}/view").text and \
        "Your answer: B" in bob.get(f"/join/{code}/view").text


def test_nicknames_are_escaped_on_the_teachers_screen_and_defused_in_the_csv(client, running):
    code, key = running
    answer(student(client.app, code, "<script>x()</script>"), code, "a")
    answer(student(client.app, code, "=HYPERLINK(1)"), code, "b")
    page = client.get(f"/class/{code}", params={"key": key}).text
    assert "<script>x()</script>" not in page and "&lt;script&gt;x()&lt;/script&gt;" in page
    text = client.get(f"/class/{code}/answers.csv", params={"key": key}).content.decode("utf-8-sig")
    nicknames = [row["nickname"] for row in csv.DictReader(io.StringIO(text))]
    assert nicknames == ["<script>x()</script>", "'=HYPERLINK(1)"]


@pytest.mark.parametrize(("send", "field", "status"), [
    ({"code": "ZZZZZZZZ"}, "code", 404),
    ({"code": "not a code at all"}, "code", 404),
    ({"code": "{code}", "nickname": "x" * 25}, "nickname", 422),
    ({"code": "{code}", "nickname": "bad\u202eone"}, "nickname", 422),
    ({"code": "{code}", "colour": "red"}, "colour", 422),
    ({}, "code", 422),
])
def test_bad_joins_name_the_field(client, running, send, field, status):
    code, _ = running
    phone = TestClient(client.app)
    r = phone.post("/join", data={k: v.format(code=code) for k, v in send.items()})
    assert r.status_code == status and refusal(r)[0] == field


@pytest.mark.parametrize(("send", "field", "status"), [
    ({"step": QUESTION, "choice": "z"}, "choice", 422),
    ({"step": QUESTION, "choice": "x" * 101}, "choice", 422),
    ({"step": "no-such-step", "choice": "a"}, "step", 422),
    ({"step": "keep-the-input", "choice": "a"}, "step", 409),  # a later step: the class is not there
    ({"choice": "a"}, "step", 422),
])
def test_bad_answers_name_the_field(client, running, send, field, status):
    code, _ = running
    r = student(client.app, code).post(f"/join/{code}/answer", data=send, headers=HX)
    assert r.status_code == status and refusal(r)[0] == field


def test_bad_teacher_requests_name_the_field(client, running):
    code, key = running
    assert refusal(teacher(client, code, key, "step", to="99"))[0] == "to"
    assert refusal(teacher(client, code, key, "step", to="-1"))[0] == "to"
    r = teacher(client, code, key, "run", step=QUESTION)
    assert r.status_code == 409 and refusal(r)[0] == "step"  # reveal first
    r = teacher(client, code, key, "reveal", step="question")
    assert r.status_code == 409 and refusal(r)[0] == "step"  # the screen showed another step
    r = client.post("/class", data={"lesson": "no-such-lesson"})
    assert r.status_code == 404 and refusal(r)[0] == "lesson"
    r = client.get("/class/ZZZZZZZZ", params={"key": key})
    assert r.status_code == 404 and refusal(r)[0] == "code"


def test_a_code_typed_another_way_leads_to_the_class(client, running):
    code, _ = running
    phone = TestClient(client.app)
    r = phone.get(f"/join/{code[:4].lower()}-{code[4:].lower()}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/join/{code}"
    r = phone.get(f"/join/{code}")
    assert r.status_code == 200 and 'name="nickname"' in r.text and f'value="{code}"' in r.text  # the join form
    r = phone.post("/join", data={"code": f"{code[:4]} {code[4:]}".lower()}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert r.headers["location"] == f"/join/{code}" and cookie.startswith(f"class_{code.lower()}=")
    assert "path=/join;" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    again = phone.post("/join", data={"code": code, "nickname": "renamed"}, follow_redirects=False)
    assert again.status_code == 303 and "set-cookie" not in again.headers  # the same student, not a second one
    assert client.app.state.classes.snapshot(client.app.state.classes.lookup(code, "x", 99)[0].id).joined == 1


def test_an_expired_class_refuses_joins_and_answers_and_says_so(client, running):
    code, key = running
    phone = student(client.app, code)
    store = client.app.state.classes
    real = store.clock
    store.clock = lambda: real() + client.app.state.settings.class_session_hours * 3600 + 1
    try:
        r = answer(phone, code, "a")
        assert r.status_code == 410 and refusal(r)[0] == "code" and "expired" in r.text
        r = TestClient(client.app).post("/join", data={"code": code})
        assert r.status_code == 410 and "this class has expired" in refusal(r)[1]
        assert TestClient(client.app).get(f"/join/{code}").status_code == 410
        assert "This class has expired" in phone.get(f"/join/{code}").text  # joined before: the page says it
        assert "This class has expired" in client.get(f"/class/{code}", params={"key": key}).text
        assert client.get(f"/class/{code}/answers.csv", params={"key": key}).status_code == 200
    finally:
        store.clock = real


def test_a_closed_class_refuses_answers(client, running):
    code, key = running
    phone = student(client.app, code)
    assert "has been closed" in teacher(client, code, key, "close").text
    assert answer(phone, code, "a").status_code == 410


def test_the_class_pages_in_chinese(client, running):
    code, key = running
    phone = student(client.app, code, "小明")
    pages = [client.get(path, params={"lang": "zh", **extra}) for path, extra in (
        ("/class", {}), ("/join", {}), (f"/class/{code}", {"key": key}))]
    pages.append(phone.get(f"/join/{code}", params={"lang": "zh"}))
    for page in pages:
        assert page.status_code == 200
        # addresses, the join code and a file format are no words
        text = re.sub(rf"https?://\S+|localhost|--host|CSV|{code}|{code[:4]} {code[4:]}", " ", page.text)
        assert not english_words_on_page(text), english_words_on_page(text)
    assert "你的名字：小明" in pages[-1].text and "剪断残差连接后" in pages[-1].text


def test_limits_on_students_classes_and_wrong_codes(tmp_path):
    settings = Settings(data_dir=tmp_path, class_max_students=2, class_max_open=1, class_join_failures_per_minute=3)
    with TestClient(create_app(settings)) as client:
        code, _ = start(client)
        r = client.post("/class", data={"lesson": "normalization"})
        assert r.status_code == 409 and refusal(r)[0] == "lesson" and "ADDNORM_CLASS_MAX_OPEN" in refusal(r)[1]
        student(client.app, code)
        student(client.app, code)
        r = TestClient(client.app).post("/join", data={"code": code})
        assert r.status_code == 409 and "ADDNORM_CLASS_MAX_STUDENTS" in refusal(r)[1]
        guesser = TestClient(client.app)
        for _ in range(3):
            assert guesser.post("/join", data={"code": "ZZZZZZZZ"}).status_code == 404
        r = guesser.post("/join", data={"code": code})  # even the right one, until the minute is over
        assert r.status_code == 429 and refusal(r)[0] == "code" and 1 <= int(r.headers["retry-after"]) <= 60
        assert guesser.get(f"/join/{code}").status_code == 429


def test_a_class_survives_a_restart_and_goes_on(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        code, key = start(client)
        teacher(client, code, key, "step", to="1")
        phone = student(client.app, code, "Ada")
        token = phone.cookies[student_cookie(code)]
        answer(phone, code, "c")
        answer(student(client.app, code, "Bob"), code, "a")
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        page = client.get(f"/class/{code}", params={"key": key})
        assert page.status_code == 200 and "2 of 2 answered" in page.text and ">Ada<" in page.text
        phone = TestClient(client.app)
        phone.cookies.set(student_cookie(code), token, path="/join")
        assert "Your answer: C" in phone.get(f"/join/{code}/view").text
        assert answer(phone, code, "b").status_code == 200  # she goes on answering
        rows = client.get(f"/class/{code}/answers.csv", params={"key": key}).content.decode("utf-8-sig")
        assert [(r["nickname"], r["choice"]) for r in csv.DictReader(io.StringIO(rows))] == [("Bob", "a"),
                                                                                           ("Ada", "b")]


def test_two_servers_on_one_data_dir_serve_one_class(tmp_path):
    """As several server processes would: the teacher on one, the phones on the other; the class is in the store."""
    with TestClient(create_app(Settings(data_dir=tmp_path))) as first, \
            TestClient(create_app(Settings(data_dir=tmp_path))) as second:
        code, key = start(first)
        teacher(first, code, key, "step", to="1")
        assert answer(student(second.app, code, "Ada"), code, "c").status_code == 200
        assert "1 of 1 answered" in first.get(f"/class/{code}", params={"key": key}).text
        assert teacher(second, code, key, "reveal", step=QUESTION).status_code == 200  # the teacher's key works there
        assert answer(student(first.app, code, "Bob"), code, "a").status_code == 409  # revealed: answers are locked


def test_a_data_dir_that_cannot_be_used_turns_classes_off_and_nothing_else(tmp_path):
    unusable = tmp_path / "a-file"
    unusable.write_text("not a directory")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "classes.sqlite").write_bytes(b"this is not a database" * 100)
    for data_dir in (unusable, broken):
        with TestClient(create_app(Settings(data_dir=data_dir))) as client:
            r = client.post("/class", data={"lesson": "residual"})
            assert r.status_code == 503 and refusal(r)[0] == "store" and "class sessions are off" in refusal(r)[1]
            assert str(data_dir) in refusal(r)[1]
            assert client.get("/join/ABCDEFGH").status_code == 503
            assert client.get("/class").status_code == 200  # the start page itself reads nothing
            assert client.get("/lessons/residual").status_code == 200


def test_wrong_codes_from_one_address_hold_back_only_the_guesser(tmp_path):
    settings = Settings(data_dir=tmp_path, class_join_failures_per_minute=3)
    with TestClient(create_app(settings)) as client:  # every client here has the same address
        code, key = start(client)
        teacher(client, code, key, "step", to="1")
        phone = student(client.app, code, "Ada")
        guesser = TestClient(client.app)
        for _ in range(5):
            guesser.post("/join", data={"code": "ZZZZZZZZ"})
        assert guesser.post("/join", data={"code": code}).status_code == 429  # the right code too: no guessing on
        assert guesser.get(f"/class/{code}", params={"key": "not-the-key"}).status_code == 429
        assert answer(phone, code, "c").status_code == 200
        assert "Your answer: C" in phone.get(f"/join/{code}/view").text
        assert phone.get(f"/join/{code}").status_code == 200
        assert phone.post("/join", data={"code": code}, follow_redirects=False).status_code == 303  # joined before
        assert "1 of 1 answered" in client.get(f"/class/{code}/view", params={"key": key}).text
        assert teacher(client, code, key, "reveal", step=QUESTION).status_code == 200
        assert teacher(client, code, key, "close").status_code == 200
        assert guesser.post("/join", data={"code": code}).status_code == 429


def test_one_address_may_start_and_join_only_so_often(tmp_path):
    settings = Settings(data_dir=tmp_path, class_starts_per_hour=2, class_joins_per_minute=2)
    with TestClient(create_app(settings)) as client:
        code, _ = start(client)
        start(client)
        r = client.post("/class", data={"lesson": "residual"})
        assert r.status_code == 429 and refusal(r)[0] == "lesson" and "ADDNORM_CLASS_STARTS_PER_HOUR" in refusal(r)[1]
        assert 3500 <= int(r.headers["retry-after"]) <= 3600
        zh = client.post("/class", data={"lesson": "residual"}, params={"lang": "zh"})
        assert zh.status_code == 429 and "过去一小时内" in refusal(zh)[1]
        phone = student(client.app, code)
        student(client.app, code)
        r = TestClient(client.app).post("/join", data={"code": code})
        assert r.status_code == 429 and refusal(r)[0] == "code" and "ADDNORM_CLASS_JOINS_PER_MINUTE" in refusal(r)[1]
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert phone.post("/join", data={"code": code}, follow_redirects=False).status_code == 303  # joined before
        store = client.app.state.classes
        real = store.clock
        store.clock = lambda: real() + 3601
        try:
            start(client)  # an hour on, this address may start again
            student(client.app, code)
        finally:
            store.clock = real


def test_the_teacher_can_lock_and_unlock_joins(client, running):
    code, key = running
    phone = student(client.app, code)
    for wrong in ("", "not-the-key"):
        for action in ("lock", "unlock"):
            r = teacher(client, code, wrong, action)
            assert r.status_code == 403 and refusal(r)[0] == "key"
    locked = teacher(client, code, key, "lock")
    assert locked.status_code == 200 and 'data-stage="1:open:"' in locked.text
    newcomer = TestClient(client.app)
    r = newcomer.post("/join", data={"code": code})
    assert r.status_code == 409 and refusal(r) == ("code", "the teacher has locked this class: it takes no new "
                                                           "students now")
    assert student_cookie(code) not in r.headers.get("set-cookie", "")  # no token for a refused join
    assert newcomer.get(f"/join/{code}").status_code == 409
    assert "锁定" in newcomer.get(f"/join/{code}", params={"lang": "zh"}).text
    assert answer(phone, code, "a").status_code == 200  # who joined goes on
    assert phone.get(f"/join/{code}").status_code == 200
    assert phone.post("/join", data={"code": code}, follow_redirects=False).status_code == 303
    assert teacher(client, code, key, "unlock").status_code == 200
    student(client.app, code)
    teacher(client, code, key, "close")
    assert teacher(client, code, key, "lock").status_code == 410


@pytest.mark.parametrize("ending", ["closed", "expired"])
def test_the_streams_of_an_ended_class_answer_no_content(client, running, ending):
    code, key = running
    phone = student(client.app, code)
    store = client.app.state.classes
    real = store.clock
    if ending == "closed":
        teacher(client, code, key, "close")
    else:
        store.clock = lambda: real() + client.app.state.settings.class_session_hours * 3600 + 1
    try:
        for r in (client.get(f"/class/{code}/events", params={"key": key}), phone.get(f"/join/{code}/events")):
            assert r.status_code == 204 and r.content == b""
        assert client.get(f"/class/{code}/events", params={"key": "not-the-key"}).status_code == 403
        assert TestClient(client.app).get(f"/join/{code}/events").status_code == 403
    finally:
        store.clock = real


def test_a_view_read_while_the_class_moves_on_shows_one_step_under_its_own_stage(client, running):
    code, key = running
    phone = student(client.app, code)
    store = client.app.state.classes
    other = ClassStore(store.path)  # another server process on the same data directory
    row = store.by_code(code)
    real = store.get_class

    def moved_on_meanwhile(class_id):  # the teacher clicks Next on the other server between two reads
        found = real(class_id)
        other.set_step(row.id, 2, get_lesson("residual").steps[2].id)
        return found

    store.get_class = moved_on_meanwhile
    try:
        views = [phone.get(f"/join/{code}/view").text, client.get(f"/class/{code}/view", params={"key": key}).text]
    finally:
        store.get_class = real
        other.close()
    for view in views:
        stage = int(re.search(r'data-stage="(\d+):', view).group(1))
        shown = int(re.search(r"(?:step |第 )(\d+)", view).group(1))
        assert shown == stage + 1, view[:800]
    assert 'data-stage="2:open:"' in phone.get(f"/join/{code}/view").text


def test_run_refuses_an_ended_class_and_a_run_in_progress(client, running, monkeypatch):
    code, key = running
    answer(student(client.app, code), code, "a")
    teacher(client, code, key, "reveal", step=QUESTION)
    row = client.app.state.classes.by_code(code)
    teacher_routes.runs_in_progress(client.app).add((row.id, QUESTION))  # the first click's run is measuring
    try:
        r = teacher(client, code, key, "run", step=QUESTION)
        assert r.status_code == 409 and refusal(r)[0] == "step"
    finally:
        teacher_routes.runs_in_progress(client.app).discard((row.id, QUESTION))
    teacher(client, code, key, "close")

    async def no_work(*args, **kwargs):
        raise AssertionError("an ended class's experiment was run")

    monkeypatch.setattr(teacher_routes, "run_model_work", no_work)
    r = teacher(client, code, key, "run", step=QUESTION)
    assert r.status_code == 410 and refusal(r)[0] == "code"
    assert teacher(client, code, key, "reveal", step=QUESTION).status_code == 410


def test_an_answer_no_longer_among_the_steps_choices_shows_as_none(client, running):
    code, key = running
    phone = student(client.app, code)
    answer(phone, code, "a")
    store = client.app.state.classes
    with store._write() as conn:  # the lesson was edited during the class: choice "a" is now "gone"
        conn.execute("UPDATE answers SET choice = 'gone' WHERE class_id = ?", (store.by_code(code).id,))
    page = phone.get(f"/join/{code}")
    assert page.status_code == 200 and 'class="mine' not in page.text
    teacher(client, code, key, "reveal", step=QUESTION)
    assert teacher(client, code, key, "run", step=QUESTION).status_code == 200
    view = phone.get(f"/join/{code}/view")
    assert view.status_code == 200 and 'class="mine' not in view.text and "measured" in view.text
    assert client.get(f"/class/{code}/answers.csv", params={"key": key}).status_code == 200


def test_a_refused_nickname_is_told_in_the_phones_language(client, running):
    code, _ = running
    phone = TestClient(client.app)
    r = phone.post("/join", data={"code": code, "nickname": "x" * 25})
    assert r.status_code == 422 and refusal(r) == ("nickname", "is 25 characters long; at most 24 are allowed")
    r = phone.post("/join", data={"code": code, "nickname": "bad\u202eone"}, params={"lang": "zh"})
    assert r.status_code == 422 and refusal(r) == ("nickname", "含有控制字符或不可见字符；请只用文字、数字和标点")
    r = phone.post("/join", data={"code": code, "lang": "zh"})
    assert r.status_code == 422 and refusal(r)[0] == "lang"  # no form field says the language: ?lang= does
