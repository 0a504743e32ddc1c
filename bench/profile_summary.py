"""Summarise a py-spy ``--native -f raw`` profile of the server's event loop thread: the share of
its busy samples under each entry point (the first Python frames below the loop).

usage: python bench/profile_summary.py PROFILE.raw [--under FUNCTION] [--depth N]
"""

from __future__ import annotations

import argparse
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--under", help="only stacks through this function; break down below it")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    shares: Counter[str] = Counter()
    total = 0
    with open(args.profile) as raw:
        for line in raw:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            loop = [k for k, f in enumerate(frames) if "Runner.run" in f]
            if not loop or "epoll_pwait" in frames[-1]:
                continue  # another thread, or the loop waiting for work
            start = loop[0]
            if args.under:
                under = [k for k, f in enumerate(frames) if f.startswith(args.under)]
                if not under:
                    continue
                start = under[0]
            rest = [f for f in frames[start + 1:] if ".py" in f and "asyncio/" not in f]
            key = " > ".join(f.split(" (")[0] for f in rest[:args.depth]) or "native:" + frames[-1].split(" (")[0]
            shares[key] += int(count)
            total += int(count)
    print(f"{total} busy samples")
    for key, count in shares.most_common(args.top):
        print(f"{count:6d} {100 * count / max(total, 1):5.1f}%  {key}")


if __name__ == "__main__":
    main()
