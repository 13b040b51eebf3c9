"""The live streams on a real server: the teacher's tally follows the answers as they arrive, and a reveal reaches
every phone's stream."""

import asyncio
import json
import re
import time

import httpx
from helpers import run_async


async def read_events(client: httpx.AsyncClient, url: str, seen: list) -> None:
    """A server-sent event stream into `seen` as (time, event, data), until the task is cancelled (which closes
    the connection, so the server's stream ends too)."""
    async with client.stream("GET", url, timeout=httpx.Timeout(10, read=None)) as response:
        assert response.status_code == 200
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name:
                seen.append((time.monotonic(), name, line.split(":", 1)[1].strip()))


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def a_class_followed_live(base: str) -> None:
    teacher = httpx.AsyncClient(base_url=base)
    r = await teacher.post("/class", data={"lesson": "residual"})
    assert r.status_code == 303, r.text[-3000:]
    code, key = re.fullmatch(r"/class/(\w{8})\?key=([\w-]+)&present=1", r.headers["location"]).groups()
    await teacher.post(f"/class/{code}/step", data={"key": key, "to": "1"})
    phones = [httpx.AsyncClient(base_url=base) for _ in range(5)]
    for i, phone in enumerate(phones):
        assert (await phone.post("/join", data={"code": code, "nickname": f"p{i}"})).status_code == 303
    tally, stages = [], [[] for _ in phones]
    readers = [asyncio.create_task(read_events(teacher, f"/class/{code}/events?key={key}", tally))]
    readers += [asyncio.create_task(read_events(phone, f"/join/{code}/events", seen))
                for phone, seen in zip(phones, stages, strict=True)]
    try:
        await wait_for(lambda: tally and all(stages))  # every stream has said where the class is

        def answered() -> int:
            return [json.loads(data)["answered"] for _, event, data in tally if event == "tally"][-1]

        assert answered() == 0
        for n, phone in enumerate(phones, start=1):
            sent = time.monotonic()
            r = await phone.post(f"/join/{code}/answer", data={"step": "gradient-highway", "choice": "c"})
            assert r.status_code == 303
            await wait_for(lambda n=n: answered() == n, timeout=2)
            assert time.monotonic() - sent < 2
        revealed = time.monotonic()
        await teacher.post(f"/class/{code}/reveal", data={"key": key, "step": "gradient-highway"})
        await wait_for(lambda: all(seen[-1][2] == "1:revealed:" for seen in stages), timeout=3)
        assert max(seen[-1][0] for seen in stages) - revealed < 2
    finally:
        await teacher.post(f"/class/{code}/close", data={"key": key})  # the live server is shared: leave it no class
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for client in (teacher, *phones):
            await client.aclose()


def test_the_tally_follows_the_answers_and_a_reveal_reaches_every_phone(live_server):
    run_async(a_class_followed_live(live_server))


def test_a_closed_class_ends_its_screens_streams_and_its_watcher(tmp_path):
    from app.classroom.codes import digest
    from app.classroom.live import ClassHub
    from app.classroom.store import ClassStore

    with ClassStore(tmp_path / "classes.sqlite") as store:
        row = store.create_class("residual", "question", digest("secret"), 4.0, 20)

        async def scenario():
            hub = ClassHub(store, poll_s=0.02)
            stages = []

            async def screen():
                async for _, stage in hub.follow(row.id):
                    stages.append(stage)

            screens = [asyncio.create_task(screen()) for _ in range(3)]
            await wait_for(lambda: len(stages) >= 3)
            await asyncio.to_thread(store.close_class, row.id)
            await asyncio.wait_for(asyncio.gather(*screens), timeout=5)  # every stream ends by itself
            watching = hub.watching()
            await hub.close()
            return stages, watching

        stages, watching = run_async(scenario())
    assert stages[-1].endswith(":closed") and watching == 0
