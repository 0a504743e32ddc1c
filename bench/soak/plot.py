"""Plot a soak's samples (bench/results/soak.json) into docs/soak.png: RSS, event-loop lag (the
longest of each second) and deliveries per second over time, the phases shaded.

Run by bench/soak/run.sh with a venv of its own under .data/ (matplotlib is a bench-only
dependency, never in the server's lock): ``python bench/soak/plot.py [samples.json] [out.png]``.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[2]


def main(src: Path, out: Path) -> None:
    data = json.loads(src.read_text())
    samples = data["samples"]
    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(10, 10), sharex=True)
    rss = [s["rss"] / 2**20 for s in samples]
    axes[0].plot(t, rss)
    axes[0].set_ylabel("RSS (MiB)")
    axes[1].plot(t, [s.get("lag_max", 0) * 1000 for s in samples])
    axes[1].axhline(50, color="red", linestyle=":", linewidth=1)
    axes[1].set_ylabel("loop lag, max of 1 s (ms)")
    delivered = [0] + [max(0, b["delivered"] - a["delivered"]) / max(1e-3, b["t"] - a["t"])
                       for a, b in itertools.pairwise(samples)]
    axes[2].plot(t, delivered)
    axes[2].set_ylabel("/ws events delivered/s")
    for key, label in (("tasks", "tasks"), ("fds", "fds"), ("sockets", "sockets"), ("db_connections", "DB conns")):
        axes[3].plot(t, [s.get(key, 0) for s in samples], label=label)
    axes[3].set_ylabel("count")
    axes[3].legend(loc="upper right", fontsize=8)
    axes[3].set_xlabel("seconds")
    for phase, colour in (("load", "#e8f0ff"), ("leaving", "#fff0e0")):
        ts = [s["t"] for s in samples if s["phase"] == phase]
        if ts:
            for ax in axes:
                ax.axvspan(min(ts), max(ts), color=colour, zorder=0)
    f = data["figures"]
    fig.suptitle(f"Soak: {f['minutes']} min, {f['rooms']}x{f['editors_per_room']} co-editors, "
                 f"{f['subscribers']} subscribers; RSS growth {f['rss_growth_pct']} %, "
                 f"lag p99 {f['loop_lag_p99_ms']} ms")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "soak.json",
         Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "soak.png")
