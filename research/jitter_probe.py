"""How often does this machine take the CPU away from a busy process? A busy loop reads the
clock for ``--seconds`` and counts the gaps between consecutive reads longer than each
threshold (a cyclictest in Python). Run it where a real-time controller would run (pinned, with
real-time priority) to tell the platform's pauses from the controller's own latency.

    taskset -c 1 chrt -f 50 python research/jitter_probe.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import time

THRESHOLDS_MS = (0.5, 1.0, 2.0, 5.0, 10.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    counts = dict.fromkeys(THRESHOLDS_MS, 0)
    worst = 0.0
    lost = 0.0  # seconds spent in gaps over the smallest threshold
    start = last = time.perf_counter()
    end = start + args.seconds
    while last < end:
        now = time.perf_counter()
        gap = (now - last) * 1e3
        if gap > THRESHOLDS_MS[0]:
            for t in THRESHOLDS_MS:
                if gap > t:
                    counts[t] += 1
            worst = max(worst, gap)
            lost += gap / 1e3
        last = now
    out = {"seconds": args.seconds, "gaps_over_ms": {str(t): c for t, c in counts.items()},
           "per_minute_over_ms": {str(t): c * 60 / args.seconds for t, c in counts.items()},
           "worst_ms": worst, "share_of_time_in_gaps": lost / args.seconds}
    for t, c in counts.items():
        print(f"gaps over {t:4.1f} ms: {c:6d}  ({c * 60 / args.seconds:.1f} per minute)")
    print(f"worst gap {worst:.2f} ms; {100 * lost / args.seconds:.3f} % of the time in gaps")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
