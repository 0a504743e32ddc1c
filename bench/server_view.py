"""The server's own view of a benchmark's load, read from its /metrics (Scriptorium only).

``parse_metrics`` picks the gauges and histograms a bench follows (the soak plots them over
time); ``stalls`` sums two scrapes' difference into what a latency figure needs beside it: did the
server's event loop stall (50 ms ticks woken late past 10 and 25 ms; ``held`` is the lateness less
the loop thread's wait for a CPU, i.e. the server's own work), and how many collector passes ran
and how many took 10 ms or more. A p99 with no stall on the server's side is queueing elsewhere
(e.g. a load generator on the same cores).
"""

from __future__ import annotations

import urllib.request


def parse_metrics(text: str) -> dict[str, float]:
    wanted = {
        "scriptorium_asyncio_tasks": "tasks",
        "scriptorium_event_loop_lag_recent_max_seconds": "lag_max",
        "scriptorium_collab_rooms": "rooms",
        "scriptorium_collab_updates_total": "collab_updates",
        "scriptorium_events_published_total": "events_published",
        "scriptorium_event_loop_lag_seconds_count": "lag_count",
        "scriptorium_collab_writes_paced_seconds_total": "paced_s",
    }
    histograms = {"scriptorium_event_loop_lag_seconds_bucket": "lag_le_",
                  "scriptorium_event_loop_held_seconds_bucket": "held_le_"}
    out: dict[str, float] = {"collab_peers": 0.0}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        if name in wanted:
            out[wanted[name]] = float(value)
        elif name == "scriptorium_websocket_connections":
            out["collab_peers"] += float(value)
        elif name == "scriptorium_gc_pause_seconds_bucket":
            gen = name_labels.split('generation="', 1)[1].split('"', 1)[0]
            le = name_labels.split('le="', 1)[1].split('"', 1)[0]
            out[f"gc{gen}_le_{le}"] = float(value)
        elif name in histograms:
            le = name_labels.split('le="', 1)[1].split('"', 1)[0]
            out[f"{histograms[name]}{le}"] = float(value)
    return out


def scrape(metrics_url: str) -> dict[str, float]:
    """One scrape of ``metrics_url`` (blocking; a bench's runner thread)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        return parse_metrics(response.read().decode())


def stalls(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What happened on the server between two scrapes (see the module's docstring)."""
    out: dict[str, float] = {}
    ticks = after.get("lag_count", 0) - before.get("lag_count", 0)
    for prefix, name in (("lag_le_", "lag"), ("held_le_", "held")):
        for le in ("0.01", "0.025"):
            within = after.get(prefix + le, 0) - before.get(prefix + le, 0)
            out[f"{name}_over_{round(float(le) * 1000)}ms"] = ticks - within
    for gen in ("0", "1", "2"):
        count = after.get(f"gc{gen}_le_+Inf", 0) - before.get(f"gc{gen}_le_+Inf", 0)
        short = after.get(f"gc{gen}_le_0.01", 0) - before.get(f"gc{gen}_le_0.01", 0)
        out[f"gc{gen}_passes"] = count
        out[f"gc{gen}_over_10ms"] = count - short
    out["ticks"] = ticks
    # seconds the node paced its collab writes (up to its last look at its load)
    out["paced_s"] = round(after.get("paced_s", 0) - before.get("paced_s", 0), 2)
    return out
