"""bench/scale/run.py's JSON → a Markdown table (stdout or --md) and a PNG plot (--png).

Rows of a Redis Cluster (``"redis": "cluster"``) come after the single-Redis ones in each table,
their Redis figures summed over the cluster's masters; what replication adds is a table of its own.
The plot draws one Redis solid, the cluster dashed.

usage: .venv/bin/python bench/scale/report.py bench/results/scale.json --md bench/results/scale-table.md \\
           --png docs/scale.png

The plot is an SVG drawn here and photographed by Debian's chromium through Playwright (both
already test dependencies), so the bench needs no plotting library.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def workload_bytes(redis: dict[str, int]) -> int:
    """Redis bytes of a phase less those of the bench's own INFO reads (``meter_bytes``; runs
    before it was recorded have them in, a few KB per Redis server and phase)."""
    return redis["bytes"] - redis.get("meter_bytes", 0)


def replication(redis: dict[str, int], count: int) -> dict[str, float]:
    """A cluster's replication figures per event / update (none for one Redis): bytes the masters
    sent their replicas, commands the replicas applied, the replicas' REPLCONF ACKs on the masters,
    cluster-bus messages (all kinds; publish ones)."""
    if "repl_bytes" not in redis:
        return {}
    return {"repl_bytes": redis["repl_bytes"] / count, "replica_ops": redis["replica_calls"] / count,
            "repl_ack_ops": redis["repl_ack_calls"] / count, "bus_msgs": redis["bus_msgs"] / count,
            "bus_publish_msgs": redis["bus_publish_msgs"] / count}


def ordered(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs' figures, one Redis first, then the cluster; by node count within each."""
    rows = [figures(r) for r in report["runs"]]
    return sorted(rows, key=lambda r: (r["redis"] == "cluster", r["nodes"]))


def figures(run: dict[str, Any]) -> dict[str, Any]:
    n = run["nodes"]
    out: dict[str, Any] = {"nodes": n, "redis": run.get("redis", "single"), "version": run.get("redis_version")}
    forum = run.get("forum")
    if forum:
        d, events = forum["delivered"], max(1, forum["replies"])
        cpu = forum["cpu"]
        out["forum"] = {
            "subscribers": forum["subscribers"], "events": forum["replies"], "delivered": d,
            "lost": forum["lost"], "dups": forum["dups"],
            "redis_ops_per_event": forum["redis"]["calls"] / events,
            "redis_bytes_per_event": workload_bytes(forum["redis"]) / events,
            "redis_ops_per_delivery": forum["redis"]["calls"] / d,
            "redis_bytes_per_delivery": workload_bytes(forum["redis"]) / d,
            "pg_commits_per_event": forum["pg"]["xact_commit"] / events,
            "pg_rows_per_event": forum["pg"]["tup_inserted"] / events,
            "cpu_us_per_delivery": 1e6 * sum(cpu) / d,
            "deliveries_per_cpu_s_per_node": (d / n) / (sum(cpu) / n) if sum(cpu) else 0,
            "cpu_s_per_node": cpu,
            **replication(forum["redis"], events),
        }
    collab = run.get("collab")
    if collab:
        d, sent = collab["delivered"], max(1, collab["updates_sent"])
        cpu = collab["cpu"]
        out["collab"] = {
            "rooms": collab["rooms"], "peers": collab["peers_per_room"], "updates": collab["updates_sent"],
            "delivered": d, "expected": collab["expected"], "converged": collab["converged"],
            "redis_ops_per_update": collab["redis"]["calls"] / sent,
            "redis_bytes_per_update": workload_bytes(collab["redis"]) / sent,
            "redis_ops_per_delivery": collab["redis"]["calls"] / d,
            "redis_bytes_per_delivery": workload_bytes(collab["redis"]) / d,
            "pg_commits_per_update": collab["pg"]["xact_commit"] / sent,
            "pg_rows_per_update": collab["pg"]["tup_inserted"] / sent,
            "cpu_us_per_delivery": 1e6 * sum(cpu) / d,
            "cpu_s_per_node": cpu,
            **replication(collab["redis"], sent),
        }
    return out


def redis_line(rows: list[dict[str, Any]]) -> str:
    versions = {r["redis"]: r["version"] for r in rows if r.get("version")}
    if not versions:
        return ""
    said = {"single": "single = one redis-server {v}",
            "cluster": "cluster = a Redis Cluster of redis-server {v}, 3 masters + 3 replicas, "
                       "its Redis figures summed over the masters"}
    return (" Redis: " + "; ".join(said[k].format(v=v) for k, v in versions.items() if k in said)
            + ". Redis bytes leave out the bench's own INFO reads.")


def markdown(report: dict[str, Any]) -> str:
    rows = ordered(report)
    clustered = any(r["redis"] == "cluster" for r in rows)
    a = report["args"]
    lines = [
        f"Run {report['date']} (load average {report.get('load_average_at_start', 0):.1f} at the start): "
        f"forum {a['subscribers_per_node']} subscribers per node, {a['rate']} replies/s for {a['seconds']} s; "
        f"collab {a['rooms']} rooms × {a['peers']} peers, {a['writers']} writers each at {a['update_rate']}/s."
        + redis_line(rows),
        "",
        "**Forum events** (one thread; every subscriber gets every reply)",
        "",
        "| nodes | Redis | subscribers | events | delivered | lost | dup | Redis ops / event | Redis bytes / event "
        "| Redis ops / delivery | Redis bytes / delivery | PG commits / event | PG rows inserted / event "
        "| CPU µs / delivery (all nodes) | deliveries / CPU-s / node |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = r.get("forum")
        if f:
            lines.append(
                f"| {r['nodes']} | {r['redis']} | {f['subscribers']:,} | {f['events']} | {f['delivered']:,} | {f['lost']} "
                f"| {f['dups']} | {f['redis_ops_per_event']:.1f} | {f['redis_bytes_per_event']:,.0f} "
                f"| {f['redis_ops_per_delivery']:.4f} | {f['redis_bytes_per_delivery']:.1f} "
                f"| {f['pg_commits_per_event']:.2f} | {f['pg_rows_per_event']:.2f} | {f['cpu_us_per_delivery']:.1f} "
                f"| {f['deliveries_per_cpu_s_per_node']:,.0f} |")
    if not clustered:
        lines.append("| 1–3 | Redis Cluster | (added by the scale-redis work) | | | | | | | | | | | | |")
    lines += ["",
              "**Collab updates** (each update reaches the room's other peers, on every node)", "",
              "| nodes | Redis | rooms × peers | updates | delivered / expected | converged | Redis ops / update "
              "| Redis bytes / update | Redis bytes / delivery | PG commits / update | PG rows inserted / update "
              "| CPU µs / delivery (all nodes) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r.get("collab")
        if c:
            lines.append(
                f"| {r['nodes']} | {r['redis']} | {c['rooms']} × {c['peers']} | {c['updates']} "
                f"| {c['delivered']:,} / {c['expected']:,} | {'yes' if c['converged'] else 'NO'} "
                f"| {c['redis_ops_per_update']:.2f} | {c['redis_bytes_per_update']:,.0f} "
                f"| {c['redis_bytes_per_delivery']:.1f} | {c['pg_commits_per_update']:.2f} "
                f"| {c['pg_rows_per_update']:.2f} | {c['cpu_us_per_delivery']:.1f} |")
    if not clustered:
        lines.append("| 1–3 | Redis Cluster | (added by the scale-redis work) | | | | | | | | | |")
    if clustered:
        lines += replication_table(rows)
    return "\n".join(lines) + "\n"


def replication_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", "**Inside the Redis Cluster** (3 masters, 3 replicas; not in the Redis columns above, which "
             "are the masters' client traffic and commands): what replication to the replicas adds, per "
             "forum event and per collab update",
             "",
             "| nodes | per… | bytes masters → replicas | commands the replicas applied | replicas' REPLCONF ACKs "
             "on the masters | cluster-bus messages (all) | of them publish / publishshard |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        for key, label in (("forum", "forum event"), ("collab", "collab update")):
            f = r.get(key)
            if r["redis"] == "cluster" and f and "repl_bytes" in f:
                lines.append(f"| {r['nodes']} | {label} | {f['repl_bytes']:,.0f} | {f['replica_ops']:.2f} "
                             f"| {f['repl_ack_ops']:.2f} | {f['bus_msgs']:.1f} | {f['bus_publish_msgs']:.2f} |")
    lines += ["", "Bus messages are counted, not their bytes (Redis reports no byte count for its cluster "
              "bus); most are the nodes' heartbeats (PING/PONG, several a second per node), so per event they "
              "fall as the event rate rises. A replica also sends its master a REPLCONF ACK once a second; its "
              "bytes are in the masters' client bytes above (≈ 40 bytes each)."]
    return lines


def svg(report: dict[str, Any]) -> str:
    rows = ordered(report)
    width, height = 980, 380
    kinds = [k for k in ("single", "cluster") if any(r["redis"] == k for r in rows)]
    dash = {"single": "", "cluster": "6,4"}

    def series(phase: str, label: str, colour: str, key: str) -> list[tuple[str, str, str, list[tuple[int, float]]]]:
        return [(label + (" (Redis Cluster)" if kind == "cluster" else ""), colour, dash[kind],
                 [(r["nodes"], r[phase][key]) for r in rows if r["redis"] == kind and r.get(phase)])
                for kind in kinds]

    panels = [
        ("Redis bytes per delivery", series("forum", "forum event", "#1f77b4", "redis_bytes_per_delivery")
         + series("collab", "collab update", "#d62728", "redis_bytes_per_delivery")),
        ("server CPU µs per delivery (sum of nodes)",
         series("forum", "forum event", "#1f77b4", "cpu_us_per_delivery")
         + series("collab", "collab update", "#d62728", "cpu_us_per_delivery")),
        ("PostgreSQL commits per event / update",
         series("forum", "forum event", "#1f77b4", "pg_commits_per_event")
         + series("collab", "collab update", "#d62728", "pg_commits_per_update")),
    ]
    nodes = sorted({r["nodes"] for r in rows})
    redis_title = {"single": "one Redis", "cluster": "a Redis Cluster (dashed)"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="DejaVu Sans, sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">Scriptorium on 1–{max(nodes)} nodes, '
             f'{" and ".join(redis_title[k] for k in kinds)} ({report["date"]})</text>']
    pw, ph, top = 280, 260, 60
    for i, (title, lines) in enumerate(panels):
        x0 = 50 + i * (pw + 40)
        ymax = max([v for _, _, _, vs in lines for _, v in vs] + [1e-9]) * 1.2
        parts.append(f'<text x="{x0 + pw / 2}" y="{top - 12}" text-anchor="middle">{title}</text>')
        parts.append(f'<line x1="{x0}" y1="{top + ph}" x2="{x0 + pw}" y2="{top + ph}" stroke="#333"/>')
        parts.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + ph}" stroke="#333"/>')
        for k in range(5):
            v = ymax * k / 4
            y = top + ph - ph * k / 4
            parts.append(f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end" font-size="10">{v:.3g}</text>')
            parts.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + pw}" y2="{y}" stroke="#eee"/>')

        def px(n: int, x0: float = x0) -> float:
            return x0 + (pw * (nodes.index(n) + 0.5) / len(nodes))

        for n in nodes:
            parts.append(f'<text x="{px(n)}" y="{top + ph + 16}" text-anchor="middle">{n} node{"s" if n > 1 else ""}</text>')
        for _, colour, dashes, values in lines:
            points = " ".join(f"{px(n)},{top + ph - ph * v / ymax}" for n, v in values)
            stroke = f' stroke-dasharray="{dashes}"' if dashes else ""
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{stroke}/>')
            for n, v in values:
                y = top + ph - ph * v / ymax
                if dashes:
                    parts.append(f'<circle cx="{px(n)}" cy="{y}" r="3.5" fill="white" stroke="{colour}" stroke-width="1.5"/>')
                else:
                    parts.append(f'<circle cx="{px(n)}" cy="{y}" r="3.5" fill="{colour}"/>')
                parts.append(f'<text x="{px(n) + 6}" y="{y - 6}" font-size="10" fill="{colour}">{v:.3g}</text>')
    # one legend for the three panels, under them
    for s, (label, colour, dashes, _) in enumerate(panels[0][1]):
        x = 60 + s * 230
        stroke = f' stroke-dasharray="{dashes}"' if dashes else ""
        parts.append(f'<line x1="{x}" y1="{height - 18}" x2="{x + 22}" y2="{height - 18}" stroke="{colour}" '
                     f'stroke-width="2"{stroke}/><text x="{x + 28}" y="{height - 14}" font-size="11">{label}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def png(svg_text: str, path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 980, "height": 380})
            page.set_content(f"<html><body style='margin:0'>{svg_text}</body></html>")
            page.screenshot(path=str(path), clip={"x": 0, "y": 0, "width": 980, "height": 380})
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()
    report = json.loads(args.json.read_text())
    table = markdown(report)
    if args.md:
        args.md.write_text(table)
    print(table)
    if args.png:
        png(svg(report), args.png)


if __name__ == "__main__":
    main()
