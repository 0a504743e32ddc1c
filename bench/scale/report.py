"""bench/scale/run.py's JSON → a Markdown table (stdout or --md) and a PNG plot (--png).

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


def figures(run: dict[str, Any]) -> dict[str, Any]:
    n = run["nodes"]
    out: dict[str, Any] = {"nodes": n, "redis": run.get("redis", "single")}
    forum = run.get("forum")
    if forum:
        d, events = forum["delivered"], max(1, forum["replies"])
        cpu = forum["cpu"]
        out["forum"] = {
            "subscribers": forum["subscribers"], "events": forum["replies"], "delivered": d,
            "lost": forum["lost"], "dups": forum["dups"],
            "redis_ops_per_event": forum["redis"]["calls"] / events,
            "redis_bytes_per_event": forum["redis"]["bytes"] / events,
            "redis_ops_per_delivery": forum["redis"]["calls"] / d,
            "redis_bytes_per_delivery": forum["redis"]["bytes"] / d,
            "pg_commits_per_event": forum["pg"]["xact_commit"] / events,
            "pg_rows_per_event": forum["pg"]["tup_inserted"] / events,
            "cpu_us_per_delivery": 1e6 * sum(cpu) / d,
            "deliveries_per_cpu_s_per_node": (d / n) / (sum(cpu) / n) if sum(cpu) else 0,
            "cpu_s_per_node": cpu,
        }
    collab = run.get("collab")
    if collab:
        d, sent = collab["delivered"], max(1, collab["updates_sent"])
        cpu = collab["cpu"]
        out["collab"] = {
            "rooms": collab["rooms"], "peers": collab["peers_per_room"], "updates": collab["updates_sent"],
            "delivered": d, "expected": collab["expected"], "converged": collab["converged"],
            "redis_ops_per_update": collab["redis"]["calls"] / sent,
            "redis_bytes_per_update": collab["redis"]["bytes"] / sent,
            "redis_ops_per_delivery": collab["redis"]["calls"] / d,
            "redis_bytes_per_delivery": collab["redis"]["bytes"] / d,
            "pg_commits_per_update": collab["pg"]["xact_commit"] / sent,
            "pg_rows_per_update": collab["pg"]["tup_inserted"] / sent,
            "cpu_us_per_delivery": 1e6 * sum(cpu) / d,
            "cpu_s_per_node": cpu,
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    rows = [figures(r) for r in report["runs"]]
    a = report["args"]
    lines = [
        f"Run {report['date']} (load average {report.get('load_average_at_start', 0):.1f} at the start): "
        f"forum {a['subscribers_per_node']} subscribers per node, {a['rate']} replies/s for {a['seconds']} s; "
        f"collab {a['rooms']} rooms × {a['peers']} peers, {a['writers']} writers each at {a['update_rate']}/s.",
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
    lines += ["| 1–3 | Redis Cluster | (added by the scale-redis work) | | | | | | | | | | | | |", "",
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
    lines.append("| 1–3 | Redis Cluster | (added by the scale-redis work) | | | | | | | | | |")
    return "\n".join(lines) + "\n"


def svg(report: dict[str, Any]) -> str:
    rows = [figures(r) for r in report["runs"]]
    width, height = 980, 380
    panels = [
        ("Redis bytes per delivery", [("forum event", "#1f77b4", [r["forum"]["redis_bytes_per_delivery"]
                                                                 for r in rows if r.get("forum")]),
                                      ("collab update", "#d62728", [r["collab"]["redis_bytes_per_delivery"]
                                                                   for r in rows if r.get("collab")])]),
        ("server CPU µs per delivery (sum of nodes)",
         [("forum event", "#1f77b4", [r["forum"]["cpu_us_per_delivery"] for r in rows if r.get("forum")]),
          ("collab update", "#d62728", [r["collab"]["cpu_us_per_delivery"] for r in rows if r.get("collab")])]),
        ("PostgreSQL commits per event / update",
         [("forum event", "#1f77b4", [r["forum"]["pg_commits_per_event"] for r in rows if r.get("forum")]),
          ("collab update", "#d62728", [r["collab"]["pg_commits_per_update"] for r in rows if r.get("collab")])]),
    ]
    nodes = [r["nodes"] for r in rows]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="DejaVu Sans, sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">Scriptorium on 1–{max(nodes)} nodes, '
             f'one Redis ({report["date"]})</text>']
    pw, ph, top = 280, 260, 60
    for i, (title, series) in enumerate(panels):
        x0 = 50 + i * (pw + 40)
        ymax = max([v for _, _, vs in series for v in vs] + [1e-9]) * 1.2
        parts.append(f'<text x="{x0 + pw / 2}" y="{top - 12}" text-anchor="middle">{title}</text>')
        parts.append(f'<line x1="{x0}" y1="{top + ph}" x2="{x0 + pw}" y2="{top + ph}" stroke="#333"/>')
        parts.append(f'<line x1="{x0}" y1="{top}" x2="{x0}" y2="{top + ph}" stroke="#333"/>')
        for k in range(5):
            v = ymax * k / 4
            y = top + ph - ph * k / 4
            parts.append(f'<text x="{x0 - 4}" y="{y + 4}" text-anchor="end" font-size="10">{v:.3g}</text>')
            parts.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + pw}" y2="{y}" stroke="#eee"/>')

        def px(j: int, x0: float = x0) -> float:
            return x0 + (pw * (j + 0.5) / len(nodes))

        for j, n in enumerate(nodes):
            parts.append(f'<text x="{px(j)}" y="{top + ph + 16}" text-anchor="middle">{n} node{"s" if n > 1 else ""}</text>')
        for s, (label, colour, values) in enumerate(series):
            points = " ".join(f"{px(j)},{top + ph - ph * v / ymax}" for j, v in enumerate(values))
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
            for j, v in enumerate(values):
                y = top + ph - ph * v / ymax
                parts.append(f'<circle cx="{px(j)}" cy="{y}" r="3.5" fill="{colour}"/>')
                parts.append(f'<text x="{px(j) + 6}" y="{y - 6}" font-size="10" fill="{colour}">{v:.3g}</text>')
            parts.append(f'<rect x="{x0 + 8}" y="{top + 8 + 16 * s}" width="10" height="10" fill="{colour}"/>'
                         f'<text x="{x0 + 22}" y="{top + 17 + 16 * s}">{label}</text>')
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
