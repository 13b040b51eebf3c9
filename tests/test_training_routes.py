"""The training lab's routes: start, stream, replay, inspect in the playground, bad settings, restart."""

import html
import json
import re
import time

import pytest
from fastapi.testclient import TestClient

from app.factory import create_app
from app.web.settings import Settings

SMALL = {"task": "copy", "layers": "1", "d_model": "16", "n_heads": "2", "d_ff": "32", "steps": "30",
         "norm_position": "pre", "seed": "3"}


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        yield c


def start(client, **changes) -> tuple[int, str]:
    r = client.post("/train/runs", data={**SMALL, **changes})
    assert r.status_code == 200, r.text
    return int(re.search(r'data-run-id="(\d+)"', r.text).group(1)), r.text


def follow(client, run_id) -> str:
    with client.stream("GET", f"/train/runs/{run_id}/events") as events:
        return "".join(events.iter_text())


def test_a_run_streams_to_done_replays_and_opens_in_the_playground(client):
    run_id, _ = start(client)
    body = follow(client, run_id)
    assert body.count('"step":') >= 30 or body.count('"step": ') >= 30
    assert '"status": "done"' in body
    again, html = start(client)
    assert again == run_id and "Replayed from the run store" in html
    page = client.get(f"/playground?model=run-{run_id}&input=12345")
    assert page.status_code == 200 and f"Run #{run_id}" in page.text
    trace = client.get(f"/api/trace?model=run-{run_id}&input=12345").json()["trace"]
    assert trace["config"]["d_model"] == 16 and trace["switches"]["norm_position"] == "pre"
    runs = client.get("/api/runs").json()  # the lab trains three seeds by default, each a run of its own
    assert sorted(r["id"] for r in runs) == [run_id, run_id + 1, run_id + 2]
    assert {r["status"] for r in runs} == {"done"}
    assert sorted(r["spec"]["train_config"]["seed"] for r in runs) == [3, 4, 5]
    metrics = client.get(f"/api/runs/{run_id}/metrics").json()["metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 31))


def test_an_unfinished_or_unknown_run_is_not_a_model(client):
    r = client.get("/playground?model=run-999")
    assert r.status_code == 404 and "no finished run 999" in r.text
    assert client.get("/train/runs/999").status_code == 404


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"layers": "40"}, "layers", "outside 1..12"),
    ({"d_model": "24", "n_heads": "5"}, "n_heads", "not divisible by 5 heads"),
    ({"steps": "abc"}, "steps", "not a whole number"),
    ({"lr": "2"}, "lr", "outside"),
    ({"task": "poetry"}, "task", "is not allowed; choose one of reverse"),
    ({"steps": "²"}, "steps", "not a whole number"),
    ({"lr": "nan"}, "lr", "not a number"),
    ({"norm": "group"}, "norm", "choose one of"),
    ({"init": "huge"}, "init", "choose one of default | xavier | small"),
    ({"stop_at": "1.5"}, "stop_at", "outside 0..1"),
    ({"arch": "rnn"}, "arch", "choose one of encoder_decoder | decoder_only | encoder_only"),
    ({"arch": "decoder_only", "task": "en_numbers"}, "arch", "a GPT writes the tokens it reads"),
    ({"arch": "encoder_only", "task": "zh_numbers"}, "arch", "BERT answers at every position"),
])
def test_bad_settings_are_refused_before_any_work(client, changes, field, message):
    r = client.post("/train/runs", data={**SMALL, **changes}, headers={"HX-Request": "true"})
    assert r.status_code in (413, 422) and field in r.text and message in r.text
    assert client.get("/api/runs").json() == []


def test_runs_survive_a_restart(tmp_path):
    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as c:
        run_id, _ = start(c)
        follow(c, run_id)
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/runs").json()[0]["status"] == "done"
        assert c.get(f"/playground?model=run-{run_id}&input=123").status_code == 200


def test_ab_starts_a_and_b_differing_in_exactly_one_setting(client):
    r = client.post("/train/runs", data={**SMALL, "ab": "residual=off"})
    assert r.status_code == 200 and 'class="ab-card"' in r.text
    a_id, b_id = (int(x) for x in re.search(r'data-a="(\d+)" data-b="(\d+)"', r.text).groups())
    for run_id in (a_id, b_id):
        follow(client, run_id)
    runs = {run["id"]: run for run in client.get("/api/runs").json()}
    a, b = runs[a_id]["spec"], runs[b_id]["spec"]
    assert a["switches"]["residual"] is True and b["switches"]["residual"] is False
    assert {k: v for k, v in a["switches"].items() if k != "residual"} == \
           {k: v for k, v in b["switches"].items() if k != "residual"}
    assert a["train_config"] == b["train_config"] and runs[b_id]["label"] == "B: residual=off"


def test_ab_refuses_a_b_equal_to_a_or_an_unknown_change(client):
    r = client.post("/train/runs", data={**SMALL, "ab": "norm_position=pre"}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and "B would be the same run" in r.text
    r = client.post("/train/runs", data={**SMALL, "ab": "d_model=4"}, headers={"HX-Request": "true"})
    assert r.status_code == 422 and "not allowed" in r.text


def test_the_playground_links_to_the_training_lab_with_its_switches(client):
    page = client.get("/playground?input=1234&residual=off&norm=rms").text
    link = re.search(r'href="(/train\?[^"]+)"', page).group(1).replace("&amp;", "&")
    assert "residual=off" in link and "norm=rms" in link and "task=reverse" in link
    form = client.get(link).text
    assert re.search(r'name="residual" value="off" checked', form)
    assert re.search(r'<option value="rms" selected', form)


@pytest.mark.parametrize("arch, stack", [("decoder_only", "decoder"), ("encoder_only", "encoder")])
def test_a_gpt_or_a_bert_trains_in_the_lab_and_opens_as_its_family(client, arch, stack):
    run_id, card = start(client, arch=arch, layers="2", seeds="2")
    assert "2 layers" in card and "2+2" not in card  # one stack
    assert ("GPT (decoder only) · 2 layers" if arch == "decoder_only" else "BERT (encoder only) · 2 layers") in card
    body = follow(client, run_id)
    assert '"status": "done"' in body
    metrics = client.get(f"/api/runs/{run_id}/metrics").json()["metrics"]
    assert {tuple(m["layer_grad_norms"]) for m in metrics} == {(stack,)}  # the family's one stack, 2 layers
    assert all(len(m["layer_grad_norms"][stack]) == 2 for m in metrics)
    run = next(r for r in client.get("/api/runs").json() if r["id"] == run_id)
    assert run["spec"]["model_config"]["arch"] == arch
    page = client.get(f"/playground?model=run-{run_id}&input=12345&lang=en")
    assert page.status_code == 200 and f"Run #{run_id}" in page.text and "2 layers" in page.text
    trace = client.get(f"/api/trace?model=run-{run_id}&input=12345").json()["trace"]
    assert [s["name"] for s in trace["stacks"]] == [stack]
    link = re.search(r'href="(/train\?[^"]+)"', page.text).group(1).replace("&amp;", "&")
    assert f"arch={arch}" in link  # retraining it keeps the family
    assert re.search(f'<option value="{arch}" selected', client.get(link).text)


def test_the_initialisation_is_a_lab_setting_recorded_with_the_run(client):
    form = client.get("/train").text
    assert '<select name="init">' in form and '<option value="default" selected' in form
    run_id, html = start(client, init="small", steps="10")
    assert "small, GPT-2 style" in html
    follow(client, run_id)
    assert client.get("/api/runs").json()[0]["spec"]["train_config"]["init"] == "small"
    other, _ = start(client, init="xavier", steps="10")
    follow(client, other)
    runs = {run["id"]: run for run in client.get("/api/runs").json()}
    metrics = [client.get(f"/api/runs/{i}/metrics").json()["metrics"][0]["loss"] for i in (run_id, other)]
    assert runs[other]["spec"]["train_config"]["init"] == "xavier" and metrics[0] != metrics[1]


def _visible_text(page: str) -> str:
    page = re.sub(r"<script.*?</script>|<style.*?</style>", " ", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page)


def test_the_lab_in_chinese_names_its_settings_in_chinese(client):
    english = ["seed", "warm-up", "Warm-up", "lr ", "B = A with", "=off", "=none", "=post", "Initialisation"]
    page = _visible_text(client.get("/train?lang=zh").text)
    assert "B = A，" in page or "B = A" in page  # the A/B choices are there…
    assert not [word for word in english if word in page]  # …in Chinese, like every other setting
    r = client.post("/train/runs", data={**SMALL, "lang": "zh"}, headers={"Accept-Language": "zh"})
    card = _visible_text(r.text)
    assert "随机种子 3" in card and "预热步数 0" in card
    assert not [word for word in english if word in card]


def test_a_run_too_big_for_the_store_is_refused_naming_the_limit(tmp_path):
    settings = Settings(data_dir=tmp_path, max_checkpoint_mb=1)
    with TestClient(create_app(settings)) as client:
        r = client.post("/train/runs", data={**SMALL, "d_model": "256", "d_ff": "1024", "layers": "6"},
                        headers={"HX-Request": "true"})
        assert r.status_code == 413 and "ADDNORM_MAX_CHECKPOINT_MB" in r.text and "1 MB per run" in r.text
        assert client.get("/api/runs").json() == []  # refused before anything was created


def test_each_browser_gets_a_learner_id_once(client):
    first = client.get("/train")
    assert "learner" in first.cookies and "HttpOnly" in first.headers["set-cookie"]
    again = client.get("/train")  # the client sends the cookie back: no new id
    assert "set-cookie" not in again.headers
    assert "set-cookie" not in client.get("/static/css/app.css").headers  # only pages hand them out


def test_a_stopped_run_says_why_in_the_pages_language(client):
    # reverse, not copy: a run that reached its target before the stop came would end done, not cancelled
    run_id, _ = start(client, task="reverse", steps="5000")
    deadline = time.time() + 30
    while client.get(f"/api/runs/{run_id}/metrics").json()["run"]["status"] != "running":
        assert time.time() < deadline
        time.sleep(0.1)
    assert client.post(f"/train/runs/{run_id}/cancel").json()["status"] == "cancelling"
    body = follow(client, run_id)
    assert '"status": "cancelled"' in body and "by the learner" in body
    page = client.get(f"/train/runs/{run_id}?lang=zh").text
    assert "由学习者停止" in page


def test_several_seeds_make_one_card_that_opens_each_seed_in_the_playground(client):
    run_id, html = start(client, seeds="2")
    assert f'data-seed-runs="{run_id} {run_id + 1}"' in html and "2 seeds (3, 4)" in html
    for seed_run in (run_id, run_id + 1):
        assert '"status": "done"' in follow(client, seed_run)
        assert f"/playground?model=run-{seed_run}" in html
    again, html = start(client, seeds="2")
    assert again == run_id and "Replayed from the run store" in html  # both seeds stored: nothing trains again


def test_a_store_that_cannot_be_written_refuses_the_run_and_the_lab_works_on(client, monkeypatch):
    import sqlite3

    store = client.app.state.store

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "create", disk_full)
    r = client.post("/train/runs", data=SMALL, headers={"HX-Request": "true"})
    assert r.status_code == 507 and "could not be written" in r.text and "disk is full" in r.text
    monkeypatch.undo()
    run_id, _ = start(client, seeds="1")
    assert '"status": "done"' in follow(client, run_id)


def test_a_gpt_trains_on_a_text_in_the_lab_with_its_held_out_loss_drawn_and_writes_on_in_the_playground(client):
    run_id, card = start(client, task="en_text", arch="decoder_only", layers="1", steps="20")
    curves = json.loads(html.unescape(re.search(r'class="plot live-curves"[^>]*data-figure="([^"]+)"', card).group(1)))
    assert curves["data"][-1]["meta"] == "heldout_loss" and curves["data"][-1]["yaxis"] == "y"  # on the loss axis
    assert '"status": "done"' in follow(client, run_id)
    metrics = client.get(f"/api/runs/{run_id}/metrics").json()["metrics"]
    evaluated = [m for m in metrics if m["heldout_loss"] is not None]
    assert evaluated and evaluated[-1]["step"] == 20 and all(m["heldout_seq_accuracy"] is None for m in evaluated)
    page = client.get(f"/playground?model=run-{run_id}&input=Shall%20I&lang=en")
    assert page.status_code == 200 and "Writes on" in page.text


@pytest.mark.parametrize("changes, field", [
    ({"task": "tang_poems"}, "arch"),  # the encoder-decoder has no source to encode in a text
    ({"task": "tang_poems", "arch": "decoder_only", "stop_at": "0.9"}, "stop_at"),
    # 256 sequences x 5 seeds x 64 positions x 2,582 characters: several GB for one step's logits
    ({"task": "tang_poems", "arch": "decoder_only", "batch_size": "256", "seeds": "5"}, "batch_size"),
])
def test_a_text_the_lab_cannot_train_so_is_refused_naming_the_field(client, changes, field):
    r = client.post("/train/runs", data={**SMALL, **changes})
    assert r.status_code == 422 and f'<span class="error-field">{field}</span>' in r.text, r.text[:300]


def test_an_a_b_pair_on_a_text_compares_held_out_losses(client):
    r = client.post("/train/runs", data={**SMALL, "task": "en_text", "arch": "decoder_only", "steps": "10",
                                         "ab": "residual=off"})
    assert r.status_code == 200, r.text[:300]
    overlay = re.search(r'class="plot ab-overlay"[^>]*data-figure="([^"]+)"', r.text).group(1)
    assert json.loads(html.unescape(overlay))["data"][-1]["meta"] == "heldout_loss"  # training.js reads its key
