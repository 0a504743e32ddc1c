"""Watching a server while it is attacked: loop lag, an innocent client's latency, memory.

``async with AttackWatch(server) as watch: <attack>`` then ``watch.assert_unharmed()``:

* event-loop lag, read from the server's own ``scriptorium_event_loop_held_seconds`` histogram
  (server/loopwatch.py) before and after: no wake-up during the attack was later than 100 ms,
  not counting the time the loop's thread waited for a CPU (runnable, off the CPU: the shared
  machine's scheduling, not the attack's doing; a blocking call or a long callback still counts
  in full), and none at all later than 1 s. ``late_wakeups_any`` counts every late wake-up, for
  the report;
* an innocent client (its own thread and connection, so the attacker's coroutines cannot
  slow it down on the test side) keeps requesting ``path`` during the attack; its median
  latency stays within 2x of its idle median (plus 5 ms for loopback jitter on a 2-core box);
* ``watch.rss_growth`` is the server's resident memory growth over the attack, in bytes.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from tests.support import ServerProcess

LAG_METRIC = "scriptorium_event_loop_lag_seconds"
HELD_METRIC = "scriptorium_event_loop_held_seconds"


def lag_buckets(base_url: str, metric: str = HELD_METRIC) -> dict[str, float]:
    """A loop-lag histogram's cumulative buckets, ``{"0.1": count, ..., "+Inf": count}``."""
    text = httpx.get(base_url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(metric + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = float(line.rsplit(" ", 1)[1])
    if not out:
        raise AssertionError(f"{metric} missing from /metrics")
    return out


def _late(before: dict[str, float], after: dict[str, float], bound: str = "0.1") -> float:
    """Observations above ``bound`` seconds (a bucket's bound) between two readings of a histogram."""
    return (after["+Inf"] - before["+Inf"]) - (after[bound] - before[bound])


def server_rss(server: ServerProcess) -> int:
    """Resident memory of the server process and its children (uvicorn workers)."""
    assert server.proc is not None
    root = psutil.Process(server.proc.pid)
    total = root.memory_info().rss
    for child in root.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class AttackWatch:
    server: ServerProcess
    path: str = "/healthz"
    headers: dict[str, str] = field(default_factory=dict)
    interval: float = 0.02
    idle: list[float] = field(default_factory=list)
    during: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    late_wakeups: float = 0.0
    late_wakeups_any: float = 0.0
    very_late_wakeups_any: float = 0.0  # later than 1 s, whatever the reason
    rss_before: int = 0
    rss_after: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _before: dict[str, float] = field(default_factory=dict)
    _before_any: dict[str, float] = field(default_factory=dict)

    def _sample(self, client: httpx.Client, into: list[float]) -> None:
        start = time.perf_counter()
        try:
            response = client.get(self.path, headers=self.headers)
            if response.status_code >= 400:
                self.errors.append(f"{self.path} -> {response.status_code}")
        except httpx.HTTPError as exc:
            self.errors.append(f"{self.path} -> {type(exc).__name__}")
        into.append(time.perf_counter() - start)

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=60) as client:
            while not self._stop.is_set():
                self._sample(client, self.during)
                self._stop.wait(self.interval)

    async def __aenter__(self) -> AttackWatch:
        import asyncio

        def idle_phase() -> None:
            with httpx.Client(base_url=self.server.base_url, timeout=60) as client:
                for _ in range(5):
                    client.get(self.path, headers=self.headers)  # warm the connection and caches
                for _ in range(30):
                    self._sample(client, self.idle)
                    time.sleep(self.interval)

        await asyncio.to_thread(idle_phase)
        self.errors.clear()
        self._before = await asyncio.to_thread(lag_buckets, self.server.base_url)
        self._before_any = await asyncio.to_thread(lag_buckets, self.server.base_url, LAG_METRIC)
        self.rss_before = server_rss(self.server)
        self._thread = threading.Thread(target=self._run, name="innocent-client", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        import asyncio

        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 120)
        after = await asyncio.to_thread(lag_buckets, self.server.base_url)
        after_any = await asyncio.to_thread(lag_buckets, self.server.base_url, LAG_METRIC)
        self.rss_after = server_rss(self.server)
        self.late_wakeups = _late(self._before, after)
        self.late_wakeups_any = _late(self._before_any, after_any)
        self.very_late_wakeups_any = _late(self._before_any, after_any, "1.0")

    @property
    def rss_growth(self) -> int:
        return self.rss_after - self.rss_before

    @property
    def idle_median(self) -> float:
        return statistics.median(self.idle)

    @property
    def during_median(self) -> float:
        return statistics.median(self.during) if self.during else 0.0

    def assert_unharmed(self, *, max_lag: float = 0.1, ratio: float = 2.0, slack: float = 0.005) -> None:
        assert max_lag == 0.1, "the lag histogram's bucket bound is 100 ms"
        assert self.late_wakeups == 0, (
            f"the event loop was held past {max_lag * 1000:.0f} ms {self.late_wakeups:.0f} time(s) during the attack"
            f" ({self.late_wakeups_any:.0f} late wake-up(s) in all)"
        )
        # A backstop that trusts no accounting: however busy the machine, never a second.
        assert self.very_late_wakeups_any == 0, (
            f"the event loop woke more than 1 s late {self.very_late_wakeups_any:.0f} time(s) during the attack")
        assert not self.errors, f"the innocent client got errors: {self.errors[:5]}"
        assert self.during, "the innocent client made no request during the attack"
        bound = ratio * self.idle_median + slack
        assert self.during_median <= bound, (
            f"innocent client's median latency {self.during_median * 1000:.1f} ms during the attack, "
            f"idle {self.idle_median * 1000:.1f} ms (bound {bound * 1000:.1f} ms)"
        )
