"""A lecture hall on one server: 100 phones joined to a class, each with its live stream open, answering at random
moments within 10 s, while someone else uses the playground.

    python benchmarks/bench_class.py [--students 100] [--window 10] [--runs 1]

Starts the app under uvicorn (one worker) on a free loopback port with a fresh data directory, waits until it is
idle (the claims measured), and prints per run:

- answer -> teacher's tally: from a phone sending its answer to the teacher's stream counting it (p50, p95, max);
- lost answers: answers the tally or the stored answers (the CSV) do not have, or have with another choice
  (a fifth of the phones change their answer once, as students do);
- reveal -> phones: from the teacher's reveal to each phone's stream announcing it, and to the phone having
  fetched its new view (as static/js/class.js does);
- playground while the class answers: an HTMX switch change on a new input (the model really runs), one learner
  clicking 0.1 s after each answer, idle and during the answers, with the ratio of the two p95s (same run, same server).

Only 127.0.0.1 traffic; every wait is bounded; the server is stopped at the end. The phones run in this process,
so on a 2-core machine they take CPU from the server: the figures are on the pessimistic side.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from loopback import free_port, pct  # benchmarks/loopback.py: a script's folder is on the path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "gradient-highway"  # lesson "residual", its first question
SWITCHES = {"residual": ["on", "off"], "norm": ["layer", "rms", "none"], "norm_position": ["post", "pre"],
            "causal_mask": ["on", "off"]}
TIMEOUT = httpx.Timeout(30, read=None)




def figures(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return f"p50 {pct(ms, 50):.0f} ms, p95 {pct(ms, 95):.0f} ms, max {max(ms):.0f} ms (n={len(ms)})"


RETRIES = []  # requests sent again after the server had closed their idle keep-alive connection


async def send(client: httpx.AsyncClient, method: str, url: str, **kwargs) -> httpx.Response:
    """A request, sent once more when it went out on a keep-alive connection the server closed meanwhile (uvicorn
    closes idle ones after 5 s), as browsers do; an answer sent twice is the same answer."""
    try:
        return await client.request(method, url, **kwargs)
    except httpx.RemoteProtocolError:
        RETRIES.append(url)
        return await client.request(method, url, **kwargs)


def playground_path(rng: random.Random) -> str:
    """A switch change on an input the server has not traced yet (a cache miss: the model runs)."""
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 10)))
    switches = "&".join(f"{k}={rng.choice(v)}" for k, v in SWITCHES.items())
    return f"/playground?{switches}&input={digits}"


async def learner(base: str, seconds: float, seed: int) -> list[float]:
    """One learner on the playground, a click 0.1 s after the last answer, for `seconds`: the latencies."""
    rng = random.Random(seed)
    times = []
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            r = await send(client, "GET", playground_path(rng), headers={"HX-Request": "true"})
            r.raise_for_status()
            times.append(time.monotonic() - started)
            await asyncio.sleep(0.1)
    return times


async def read_events(client: httpx.AsyncClient, url: str, on_event) -> None:
    async with client.stream("GET", url) as response:
        response.raise_for_status()
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name:
                on_event(time.monotonic(), name, line[5:].strip())


async def one_class(base: str, students: int, window: float, seed: int) -> dict:
    rng = random.Random(seed)
    teacher = httpx.AsyncClient(base_url=base, timeout=TIMEOUT)
    phones = [httpx.AsyncClient(base_url=base, timeout=TIMEOUT) for _ in range(students)]
    tasks: list[asyncio.Task] = []
    try:
        r = await teacher.post("/class", data={"lesson": "residual"})
        code, key = re.fullmatch(r"/class/(\w{8})\?key=([\w-]+)&present=1", r.headers["location"]).groups()
        r = await teacher.post(f"/class/{code}/step", data={"key": key, "to": "1"})
        assert r.status_code == 303, r.text
        tally: list[tuple[float, int]] = []
        tasks.append(asyncio.create_task(read_events(
            teacher, f"/class/{code}/events?key={key}",
            lambda t, name, data: tally.append((t, json.loads(data)["answered"])) if name == "tally" else None)))
        gate = asyncio.Semaphore(20)

        async def join(i: int, phone: httpx.AsyncClient) -> None:
            async with gate:
                r = await send(phone, "POST", "/join", data={"code": code, "nickname": f"s{i:03d}"})
                assert r.status_code == 303, r.text

        await asyncio.gather(*(join(i, p) for i, p in enumerate(phones)))
        stages: list[list[tuple[float, str]]] = [[] for _ in phones]
        for phone, seen in zip(phones, stages, strict=True):
            tasks.append(asyncio.create_task(read_events(
                phone, f"/join/{code}/events", lambda t, name, data, seen=seen: seen.append((t, data)))))
        deadline = time.monotonic() + 30
        while not all(stages) or not tally:
            assert time.monotonic() < deadline, f"{sum(map(bool, stages))} of {students} streams opened"
            await asyncio.sleep(0.05)

        sent: dict[int, list[tuple[float, float, str]]] = {i: [] for i in range(students)}
        changers = set(rng.sample(range(students), students // 5))

        async def answer(i: int, phone: httpx.AsyncClient) -> None:
            moments = sorted(rng.uniform(0, window) for _ in range(2 if i in changers else 1))
            start = time.monotonic()
            for moment in moments:
                await asyncio.sleep(max(0.0, start + moment - time.monotonic()))
                choice = rng.choice("abc")
                t0 = time.monotonic()
                r = await send(phone, "POST", f"/join/{code}/answer", data={"step": QUESTION, "choice": choice})
                assert r.status_code == 303, r.text
                sent[i].append((t0, time.monotonic(), choice))

        playground = asyncio.create_task(learner(base, window, seed))
        await asyncio.gather(*(answer(i, p) for i, p in enumerate(phones)))
        during = await playground
        deadline = time.monotonic() + 10
        while (tally[-1][1] if tally else 0) < students and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

        # the k-th first answer to be stored is in the tally once it counts k
        firsts = sorted((answers[0] for answers in sent.values()), key=lambda a: a[1])
        latencies = []
        for k, (t_sent, _, _) in enumerate(firsts, start=1):
            shown = next((t for t, n in tally if n >= k and t >= t_sent), None)
            if shown is not None:
                latencies.append(shown - t_sent)
        stored = {row["nickname"]: row["choice"] for row in csv.DictReader(io.StringIO(
            (await teacher.get(f"/class/{code}/answers.csv", params={"key": key})).content.decode("utf-8-sig")))}
        lost = sum(stored.get(f"s{i:03d}") != answers[-1][2] for i, answers in sent.items())

        revealed_at = time.monotonic()
        r = await teacher.post(f"/class/{code}/reveal", data={"key": key, "step": QUESTION})
        assert r.status_code == 303, r.text
        announced, viewed = [], []

        async def phone_sees_reveal(phone: httpx.AsyncClient, seen: list) -> None:
            while not any(stage.startswith("1:revealed") for _, stage in seen):
                await asyncio.sleep(0.01)
            announced.append(next(t for t, stage in seen if stage.startswith("1:revealed")) - revealed_at)
            (await send(phone, "GET", f"/join/{code}/view", headers={"HX-Request": "true"})).raise_for_status()
            viewed.append(time.monotonic() - revealed_at)

        await asyncio.wait_for(asyncio.gather(*(phone_sees_reveal(p, s) for p, s in zip(phones, stages,
                                                                                          strict=True))), 30)
        return {"latencies": latencies, "counted": tally[-1][1] if tally else 0, "lost": lost,
                "changed": len(changers), "announced": announced, "viewed": viewed, "during": during,
                "tally_events": len(tally)}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in (teacher, *phones):
            await client.aclose()


async def wait_until_idle(base: str) -> None:
    """Up, and done measuring the claims in the background (which would take a core from every figure)."""
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as client:
        deadline = time.monotonic() + 300
        while True:
            assert time.monotonic() < deadline, "the server did not start or stay busy measuring claims"
            try:
                if (await client.get("/api/claims")).json().get("fresh"):
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)


async def main(students: int, window: float, runs: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="bench-class-")
    env = {**os.environ, "ADDNORM_DATA_DIR": data_dir, "ADDNORM_CLASS_MAX_STUDENTS": str(max(200, students))}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                               str(port), "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        await wait_until_idle(base)
        await learner(base, 2, seed=999)  # warm: the first model runs load and compile
        print(f"{students} phones, answers within {window:.0f} s, one uvicorn worker, load {os.getloadavg()[0]:.2f}")
        for run in range(runs):
            idle = await learner(base, window, seed=1000 + run)
            result = await one_class(base, students, window, seed=run)
            lost = students - result["counted"]
            print(f"run {run + 1}:\n"
                  f"  answer -> teacher's tally: {figures(result['latencies'])}; "
                  f"{result['tally_events']} tally events\n"
                  f"  answers counted {result['counted']}/{students} (tally missed {lost}); stored answers that are "
                  f"not the last one sent: {result['lost']} ({result['changed']} phones changed their answer once)\n"
                  f"  reveal -> phone's stream: {figures(result['announced'])}\n"
                  f"  reveal -> phone has its new view: {figures(result['viewed'])}\n"
                  f"  playground idle:          {figures(idle)}\n"
                  f"  playground during class:  {figures(result['during'])}\n"
                  f"  playground p95 during / idle = {pct(result['during'], 95) / pct(idle, 95):.2f}\n"
                  f"  requests sent again on a connection the server had closed (keep-alive): {len(RETRIES)}")
            RETRIES.clear()
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.students, args.window, args.runs))
