"""Prometheus metrics, one registry per app (workers each expose their own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class FunctionCounter(Collector):
    """A counter whose value is read from a function at scrape time: for counts kept as plain
    ints on a hot path (a prometheus ``Counter.inc`` takes a lock, ~1 µs per call)."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self._read: Callable[[], float] = lambda: 0.0
        registry.register(self)

    def set_function(self, read: Callable[[], float]) -> None:
        self._read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self._read())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "scriptorium_http_requests_total", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "scriptorium_http_request_seconds", "HTTP request latency", ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.websockets = Gauge(
            "scriptorium_websocket_connections", "Open WebSocket connections", ["endpoint"],
            registry=self.registry,
        )
        self.slow_closes = Counter(
            "scriptorium_websocket_slow_closes_total",
            "WebSocket connections closed as too slow (4008: more than the bound waited for the client)",
            ["endpoint"], registry=self.registry,
        )
        self.collab_rooms = Gauge("scriptorium_collab_rooms", "Rooms in memory", registry=self.registry)
        self.collab_updates = FunctionCounter(
            "scriptorium_collab_updates", "Document updates applied", self.registry
        )
        self.collab_relay_updates = FunctionCounter(
            "scriptorium_collab_relay_updates_published", "Update messages this node published to the other "
            "nodes' rooms (collab relay, Redis)", self.registry
        )
        self.collab_rooms_alone = Gauge(
            "scriptorium_collab_rooms_alone",
            "Rooms whose Redis channel no other node listens on: their updates are not published",
            registry=self.registry,
        )
        self.collab_writes_paced = Gauge(
            "scriptorium_collab_writes_paced",
            "1 while the node is busy enough to pace its collab writes (COLLAB_WRITE_PACE_ABOVE: busy "
            "rooms' updates merged per COLLAB_WRITE_INTERVAL_MS), else 0; as of the node's last look "
            "at its load, which updates prompt (an idle node keeps its last state)",
            registry=self.registry,
        )
        self.collab_writes_paced_seconds = FunctionCounter(
            "scriptorium_collab_writes_paced_seconds",
            "Seconds the node paced its collab writes, up to its last look at its load", self.registry
        )
        self.events_published = Counter(
            "scriptorium_events_published_total", "Live events published", registry=self.registry
        )
        self.loop_lag = Histogram(
            "scriptorium_event_loop_lag_seconds",
            "How late the event loop woke a 50 ms sleep (server/loopwatch.py)",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.loop_held = Histogram(
            "scriptorium_event_loop_held_seconds",
            "How late the event loop woke a 50 ms sleep, less the time its thread waited for a CPU: "
            "what the server's own work held it (server/loopwatch.py)",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.gc_pause = Histogram(
            "scriptorium_gc_pause_seconds",
            "How long each pass of Python's cyclic garbage collector held the process, by generation "
            "(server/loopwatch.py)",
            ["generation"], registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
        )
        # Sampled once a second by server/loopwatch.py (what a soak plots over time).
        self.loop_lag_recent = Gauge(
            "scriptorium_event_loop_lag_recent_max_seconds",
            "The longest event-loop lag of the last second (server/loopwatch.py)", registry=self.registry,
        )
        self.tasks = Gauge("scriptorium_asyncio_tasks", "asyncio tasks alive (sampled once a second)",
                           registry=self.registry)
