"""Load for ``PUT /api/lessons/{id}/progress``: throughput, latency, and no lost update.

Usage (a server in AUTH_MODE=dev on loopback):
    python bench/progress_load.py --base-url http://127.0.0.1:8000 --seconds 10 --connections 50

Builds a published course (``--lessons`` lessons), enrolls ``--users`` learners, then runs
``--connections`` workers for ``--seconds``. Worker *w* writes for learner ``w % users`` and owns
the lessons ``i`` with ``i % (connections // users) == w // users``, so many requests for the same
enrollment run at once while each (learner, lesson) key is written by one worker in order. At the
end every learner's stored progress must equal completed ÷ lessons × 100 of the last statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid

import httpx

STATUSES = ("not_started", "in_progress", "completed")


async def setup(client: httpx.AsyncClient, lessons: int, users: int) -> tuple[str, list[str], list[dict[str, str]]]:
    async def token(name: str) -> dict[str, str]:
        sub = f"user_bench_{name}_{uuid.uuid4().hex[:6]}"
        r = await client.post("/api/dev/token", json={"sub": sub, "name": name})
        r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        (await client.get("/api/me", headers=headers)).raise_for_status()
        return headers

    author = await token("author")
    course = (await client.post("/api/courses", json={"title": "Bench progress"}, headers=author)).json()["id"]
    unit = (await client.post(f"/api/courses/{course}/units", json={"title": "U"}, headers=author)).json()["id"]
    lesson_ids = []
    for n in range(lessons):
        r = await client.post(f"/api/units/{unit}/lessons", json={"title": f"L{n}", "content_type": "text"},
                              headers=author)
        r.raise_for_status()
        lesson_ids.append(r.json()["id"])
    (await client.post(f"/api/courses/{course}/publish", headers=author)).raise_for_status()
    learners = []
    for n in range(users):
        headers = await token(f"learner{n}")
        (await client.put(f"/api/courses/{course}/enrollment", headers=headers)).raise_for_status()
        learners.append(headers)
    return course, lesson_ids, learners


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--lessons", type=int, default=40)
    args = parser.parse_args()
    limits = httpx.Limits(max_connections=args.connections + 5, max_keepalive_connections=args.connections + 5)
    async with httpx.AsyncClient(base_url=args.base_url, timeout=60, limits=limits) as client:
        course, lessons, learners = await setup(client, args.lessons, args.users)
        groups = max(1, args.connections // args.users)
        final: dict[tuple[int, int], str] = {}
        latencies: list[float] = []
        errors = dropped = 0
        deadline = time.monotonic() + args.seconds

        async def worker(w: int) -> None:
            nonlocal errors, dropped
            user, group = w % args.users, (w // args.users) % groups
            mine = [i for i in range(len(lessons)) if i % groups == group]
            rng = random.Random(w)
            while time.monotonic() < deadline:
                i = rng.choice(mine)
                status = rng.choice(STATUSES)
                started = time.perf_counter()
                while True:  # PUT is idempotent: a dropped connection is retried, so `final` stays true
                    try:
                        r = await client.put(f"/api/lessons/{lessons[i]}/progress", json={"status": status},
                                             headers=learners[user])
                        break
                    except httpx.TransportError:
                        dropped += 1
                latencies.append(time.perf_counter() - started)
                if r.status_code == 200:
                    final[(user, i)] = status
                else:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(args.connections)))
        elapsed = time.monotonic() - started
        lost = 0
        for user, headers in enumerate(learners):
            done = sum(1 for (u, _), s in final.items() if u == user and s == "completed")
            expected = done * 100 / len(lessons)
            got = (await client.get(f"/api/courses/{course}/progress", headers=headers)).json()
            if abs(got["progress"] - expected) > 1e-9 or got["completed_lessons"] != done:
                lost += 1
                print(f"learner {user}: expected {expected}, stored {got}")
        latencies.sort()
        p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
        print(f"requests {len(latencies)} in {elapsed:.1f}s = {len(latencies) / elapsed:.0f} req/s; "
              f"errors {errors}, retried connections {dropped}; p50 {p(0.5):.1f} ms p99 {p(0.99):.1f} ms "
              f"(mean {statistics.fmean(latencies) * 1000:.1f} ms); learners with a wrong final value: {lost}")


if __name__ == "__main__":
    asyncio.run(main())
