"""A data directory or run store that cannot be used never stops the app: real files, real SQLite.

An unusable ADDNORM_DATA_DIR (a file, not creatable, not writable) leaves training off with one message naming
the setting and the path, and everything else working; a store that cannot be written is opened read-only;
a damaged store is moved aside and a new one started; a run that cannot be read answers 503 naming it.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import rows

from app.factory import create_app
from app.lab.precompute import PLANS
from app.lab.store import RunStore, StoreNotWritable
from app.lab.store_opening import STORE_FILE, open_store
from app.lab.sweeps import sweep_items
from app.web.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"task": "copy", "layers": "1", "d_model": "16", "n_heads": "2", "d_ff": "32", "steps": "30",
         "norm_position": "pre", "seed": "3"}
SWEEP = {"task": "copy", "depths": ["1"], "variants": ["pre_ln"], "steps": "30", "seeds": "1"}


def specs(n: int) -> list:
    """n real run specs (the lab's own shapes), all different."""
    base, _, variants = PLANS["depth-residual-norm"]
    # seed 99: no plan's run, so the claims measured in the background never read them
    return [item["spec"].with_seed(99) for item in sweep_items(base, [2], list(variants), Settings())][:n]


def make_store(path: Path, steps: tuple[int, ...] = (600, 600, 600)) -> list[int]:
    """A store with one finished run per entry of `steps` (that many steps of metrics each); their ids."""
    with RunStore(path) as store:
        ids = []
        for spec, n in zip(specs(len(steps)), steps, strict=True):
            run = store.create(spec, label=f"run of {n} steps")
            store.add_metrics(run.id, rows(2, steps=n))
            store.finish(run.id, "done")
            ids.append(run.id)
    return ids


def store_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "app.lab.store_opening" and r.levelno >= logging.ERROR]


# ---- a data directory that cannot be used ---------------------------------------------------------------

def _a_file(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    return tmp_path / "data", "is a file, not a directory"


def _under_a_file(tmp_path):
    (tmp_path / "data").write_text("not a directory")
    return tmp_path / "data" / "addnorm", "cannot be created"


def _under_proc(tmp_path):
    return Path("/proc/addnorm-data"), "cannot be created"  # nobody, root included, creates directories there


@pytest.mark.parametrize("make_dir", [_a_file, _under_a_file, _under_proc])
def test_a_data_dir_that_cannot_be_used_gives_one_line_naming_the_setting_and_the_path(tmp_path, caplog, make_dir):
    data_dir, why = make_dir(tmp_path)
    with caplog.at_level(logging.ERROR, logger="app.lab.store_opening"):
        opened = open_store(data_dir)
    with opened.store as store:
        message = store.read_only
        assert not store.writable and store.list() == []
        assert f"ADDNORM_DATA_DIR={data_dir} {why}" in message and str(data_dir / STORE_FILE) in message
        assert "\n" not in message and store_errors(caplog) == [message]
        with pytest.raises(StoreNotWritable, match=re.escape(message)):
            store.create(specs(1)[0])


def test_without_a_usable_data_dir_everything_but_training_works(tmp_path, caplog):
    data_dir = tmp_path / "data"
    data_dir.write_text("not a directory")
    with caplog.at_level(logging.ERROR, logger="app.lab.store_opening"):
        app = create_app(Settings(data_dir=data_dir, shipped_results=True))
        with TestClient(app) as client:
            for page in ("/", "/playground?input=31415", "/lessons", "/lessons/residual", "/claims",
                         "/api/trace?input=31415", "/api/runs"):
                assert client.get(page).status_code == 200, page
            [message] = store_errors(caplog)
            assert f"ADDNORM_DATA_DIR={data_dir} is a file" in message
            for page in ("/train", "/train/sweeps"):  # they say training is off and why; their forms are off
                html = client.get(page).text
                assert "Training is off" in html and message in html
                assert re.search(r'<button type="submit" class="primary wide" disabled', html), page
            refused = [client.post("/train/runs", data=SMALL), client.post("/train/sweeps", data=SWEEP),
                       client.post("/claims/measure-here")]
            for response in refused:
                assert response.status_code == 503 and message in response.text
            assert message in client.get("/claims").text  # instead of the "measure again here" button
            assert client.get("/api/runs").json() == []
    assert not app.state.runner._dispatcher.is_alive()  # no queue and no Ray instance: nothing can train


# ---- a store that cannot be written -----------------------------------------------------------------------

def test_a_read_only_store_is_read_with_sqlite_mode_ro_and_refuses_writes(tmp_path):
    path = tmp_path / STORE_FILE
    ids = make_store(path)
    before = path.read_bytes()
    with RunStore(path, read_only=True) as store:
        assert [r.id for r in store.list()] == ids[::-1]
        assert len(store.metrics(ids[0])) == 60 and store.get(ids[1]).status == "done"
        with pytest.raises(StoreNotWritable, match="read-only"):
            store.create(specs(1)[0])
        with pytest.raises(Exception, match="readonly"):  # SQLite itself refuses, not only this code
            store._conn.execute("DELETE FROM runs")
    assert path.read_bytes() == before  # SQLite may leave an empty -wal beside it, as any reader does
    assert all(p.stat().st_size == 0 for p in tmp_path.iterdir() if p.name.endswith("-wal"))


def read_only_scenario(data_dir: str) -> dict:
    """What the app does with a data directory it cannot write (run in a process that cannot write it)."""
    data_dir = Path(data_dir)
    with TestClient(create_app(Settings(data_dir=data_dir))) as client:
        train = client.get("/train").text
        run_id = client.get("/api/runs").json()[0]["id"]
        return {"problem": client.app.state.store.read_only, "train": train,
                "runs": [r["id"] for r in client.get("/api/runs").json()],
                "metrics": len(client.get(f"/api/runs/{run_id}/metrics").json()["metrics"]),
                "run_page": client.get(f"/train/runs/{run_id}").status_code,
                "post": [client.post("/train/runs", data=SMALL).status_code,
                         client.post("/train/sweeps", data=SWEEP).status_code],
                "playground": client.get("/playground?input=31415").status_code,
                "files": sorted(p.name for p in data_dir.iterdir())}


def _in_a_read_only_mount(data_dir: Path) -> dict:
    """Root writes whatever the permissions say: the directory is made read-only by a read-only bind mount, in a
    mount namespace of a child process (skipped where that is not allowed)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("running as root, and there is no unshare to make a read-only mount")
    mount = f"mount --bind {data_dir} {data_dir} && mount -o remount,bind,ro {data_dir}"
    probe = subprocess.run([unshare, "--mount", "sh", "-c", f"{mount} && ! touch {data_dir}/probe 2>/dev/null"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"running as root, and no read-only mount can be made here: {probe.stderr.strip()[:200]}")
    # os._exit: the interpreter's own exit after an app's lifespan can abort in native code, which is not
    # what this test is about
    script = (f"{mount} && exec {sys.executable} -c 'import json, os, sys; "
              "from test_data_dir import read_only_scenario; "
              f"print(\"RESULT\", json.dumps(read_only_scenario(sys.argv[1])), flush=True); os._exit(0)' {data_dir}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([unshare, "--mount", "sh", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "RESULT " in done.stdout, done.stderr[-3000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1])


def test_a_data_dir_that_cannot_be_written_shows_its_runs_read_only(tmp_path):
    data_dir = tmp_path / "data"
    ids = make_store(data_dir / STORE_FILE)  # closed cleanly: WAL mode, and no -shm file to share
    if os.geteuid() == 0:
        seen = _in_a_read_only_mount(data_dir)
    else:
        data_dir.chmod(0o555)
        try:
            seen = read_only_scenario(str(data_dir))
        finally:
            data_dir.chmod(0o755)
    assert f"ADDNORM_DATA_DIR={data_dir} is not writable" in seen["problem"]
    assert f"the runs in {data_dir / STORE_FILE} are shown read-only; training is off" in seen["problem"]
    assert "Training is off" in seen["train"] and seen["problem"] in seen["train"]
    assert seen["runs"] == ids[::-1] and seen["metrics"] == 60 and seen["run_page"] == 200
    assert seen["post"] == [503, 503] and seen["playground"] == 200
    assert seen["files"] == [STORE_FILE]  # nothing was written


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes a read-only file all the same")
def test_a_store_file_that_cannot_be_written_is_opened_read_only(tmp_path):
    path = tmp_path / STORE_FILE
    ids = make_store(path)
    path.chmod(0o444)
    with open_store(tmp_path).store as store:
        assert "cannot be written" in store.read_only and f"ADDNORM_DATA_DIR={tmp_path}" in store.read_only
        assert [r.id for r in store.list()] == ids[::-1]


# ---- a damaged store --------------------------------------------------------------------------------------

def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _truncated(path: Path) -> None:
    make_store(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("damage", [_random_bytes, _truncated])
def test_a_damaged_store_is_moved_aside_and_a_new_one_started(tmp_path, caplog, damage):
    path = tmp_path / STORE_FILE
    damage(path)
    wal = Path(f"{path}-wal")
    wal.write_bytes(os.urandom(5000))  # what SQLite kept beside it goes with it
    damaged, damaged_wal = path.read_bytes(), wal.read_bytes()
    with caplog.at_level(logging.ERROR, logger="app.lab.store_opening"), \
            TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        [moved] = [p for p in tmp_path.iterdir() if p.name.startswith("runs.damaged-") and p.suffix == ".sqlite3"]
        assert moved.read_bytes() == damaged and Path(f"{moved}-wal").read_bytes() == damaged_wal
        [message] = store_errors(caplog)
        assert f"the run store {path} was damaged (" in message and f"it was moved to {moved}" in message
        assert f"ADDNORM_DATA_DIR={tmp_path}" in message
        for page in ("/playground", "/lessons", "/claims", "/train/sweeps"):
            assert client.get(page).status_code == 200, page
        first, second = client.get("/train"), client.get("/train")
        assert first.status_code == 200 and message in first.text
        assert message not in second.text and "Training is off" not in second.text  # said once
        assert client.app.state.store.writable and client.get("/api/runs").json() == []
        started = client.post("/train/runs", data=SMALL)  # the new store takes runs
        assert started.status_code == 200, started.text
        run_id = int(re.search(r'data-run-id="(\d+)"', started.text).group(1))
        client.post(f"/train/runs/{run_id}/cancel")


# ---- one run that cannot be read ----------------------------------------------------------------------------

def test_a_run_with_a_bad_row_answers_503_naming_it_and_the_others_work(tmp_path):
    path = tmp_path / STORE_FILE
    bad_metrics, good, bad_final = make_store(path)
    with RunStore(path) as store, store._write() as conn:  # valid SQLite, broken JSON
        conn.execute("UPDATE metrics SET data = '{\"step\": 20, \"loss\": ' WHERE run_id = ? AND step = 20",
                     (bad_metrics,))
        conn.execute("UPDATE runs SET final = 'not json' WHERE id = ?", (bad_final,))
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        assert client.app.state.store.writable  # the file is sound: only rows are bad
        answer = client.get(f"/api/runs/{bad_metrics}/metrics")
        assert answer.status_code == 503
        [detail] = answer.json()["detail"]
        assert detail["field"] == "run" and detail["message"].startswith(f"run {bad_metrics} cannot be read")
        assert "metrics row at step 20 is not valid JSON" in detail["message"] and str(path) in detail["message"]
        with client.stream("GET", f"/train/runs/{bad_metrics}/events") as events:
            streamed = "".join(events.iter_text())
        assert '"status": "failed"' in streamed and f"run {bad_metrics} cannot be read" in streamed
        page = client.get(f"/train/runs/{bad_final}")
        assert page.status_code == 503 and f"run {bad_final} cannot be read" in page.text
        assert client.get(f"/playground?model=run-{bad_final}").status_code == 503
        assert len(client.get(f"/api/runs/{good}/metrics").json()["metrics"]) == 60
        assert client.get(f"/train/runs/{good}").status_code == 200
        assert client.get(f"/train/runs/{bad_metrics}").status_code == 200  # its record is sound
        listed = [r["id"] for r in client.get("/api/runs").json()]
        assert listed == [good, bad_metrics]  # the unreadable one is left out, not the whole list
        assert client.get("/train").status_code == 200


def _leaf_page_of(data: bytes, marker: bytes, page_size: int) -> int:
    """The number (from 0) of the b-tree leaf page holding the only copy of `marker`, or -1."""
    at = data.find(marker)
    if at < 0 or data.find(marker, at + 1) >= 0:
        return -1
    page = at // page_size
    header = page * page_size + (100 if page == 0 else 0)
    return page if data[header] in (0x0A, 0x0D) else -1  # leaf of an index (WITHOUT ROWID) or of a table


def test_a_damaged_page_under_one_run_answers_503_naming_it_and_the_others_work(tmp_path):
    path = tmp_path / STORE_FILE
    long_run, short_run = make_store(path, steps=(6000, 600))  # only the long run has step 3000 and beyond
    data = path.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    page = next(p for step in range(3000, 5000, 10)
                if (p := _leaf_page_of(data, f'"step": {step},'.encode(), page_size)) >= 0)
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        assert client.app.state.store.writable  # sound when the server started
        with path.open("r+b") as f:  # a page of the long run's metrics goes bad while it serves
            f.seek(page * page_size)
            f.write(b"\xff" * page_size)
        answer = client.get(f"/api/runs/{long_run}/metrics")
        assert answer.status_code == 503
        [detail] = answer.json()["detail"]
        assert detail["field"] == "run" and detail["message"].startswith(f"run {long_run} cannot be read")
        assert "malformed" in detail["message"]
        assert len(client.get(f"/api/runs/{short_run}/metrics").json()["metrics"]) == 60
        assert client.get(f"/train/runs/{short_run}").status_code == 200


def test_a_checkpoint_that_does_not_load_answers_503_naming_its_run(tmp_path):
    path = tmp_path / STORE_FILE
    broken, sound = make_store(path, steps=(600, 600))
    with RunStore(path) as store, store._write() as conn:
        conn.execute("INSERT INTO checkpoints (run_id, data) VALUES (?, ?)", (broken, b"not a checkpoint"))
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        page = client.get(f"/playground?model=run-{broken}")
        assert page.status_code == 503 and f"run {broken} cannot be read" in page.text
        assert "checkpoint does not load" in page.text
        assert client.get(f"/train/runs/{sound}").status_code == 200


def test_the_command_line_tools_stop_with_one_line_naming_the_setting(tmp_path, monkeypatch):
    from app.lab import precompute
    from app.teaching import ship_results, verdicts
    from app.web.settings import get_settings

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("ADDNORM_DATA_DIR", str(tmp_path / "a-file" / "data"))
    get_settings.cache_clear()
    try:
        for main, argv in ((precompute.main, ["--only", "causal-mask-off"]), (ship_results.main, ["--no-train"]),
                           (verdicts.main, ["--no-train"])):
            with pytest.raises(SystemExit, match=r"^addnorm: ADDNORM_DATA_DIR=.*a-file/data cannot be created"):
                main(argv)
    finally:
        get_settings.cache_clear()


def test_apps_that_close_in_any_order_leave_the_open_one_finding_its_runs(tmp_path):
    """Two apps in one process (as a session-wide server and a module's client are): whichever closes first, the
    one still open looks runs up in its own store, never in a closed one or in none."""
    from app.playground import registry

    first, second = RunStore(tmp_path / "first.sqlite"), RunStore(tmp_path / "second.sqlite")
    before = registry._store  # a server this session already runs, or none
    outer = registry.using_store(first)
    outer.__enter__()
    with registry.using_store(second):
        assert registry._store is second
        outer.__exit__(None, None, None)  # the app opened first closes while the second is open
        assert registry._store is second
    assert registry._store is before
    with registry.using_store(first):
        inner = registry.using_store(second)
        inner.__enter__()
        inner.__exit__(None, None, None)
        assert registry._store is first
