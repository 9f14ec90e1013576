"""One training lever against the runs without it, paired by training seed: per scenario the
mean speed, flipped and tilted shares of each side (mean over the evaluation episodes of a
seed, then over seeds, with 95 % t intervals) and the paired speed difference.

    python research/lever_pairs.py --method grbal \
        --base /runs/eval-train-s0 /runs/eval-train-s1 \
        --lever /runs/ep/eval-s0 /runs/ep/eval-s1 [--out pairs.json]

The i-th ``--base`` and ``--lever`` reports are the same training seed (same evaluation seeds).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from _helpers import ci

KEYS = ("mean_speed", "flipped", "tilted")


def per_seed(report: str | Path, method: str) -> dict[str, dict[str, float]]:
    """scenario -> key -> mean over that report's episodes of ``method``."""
    eps = [e for e in json.loads((Path(report) / "results.json").read_text())["episodes"]
           if e["method"] == method]
    if not eps:
        raise SystemExit(f"{report}: no episodes of method={method!r}")
    by = defaultdict(list)
    for e in eps:
        by[e["scenario"]].append(e)
    return {sc: {k: float(np.mean([e.get(k, np.nan) for e in es])) for k in KEYS}
            for sc, es in by.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", required=True, help="the method label in every report")
    ap.add_argument("--base", nargs="+", required=True, help="reports without the lever")
    ap.add_argument("--lever", nargs="+", required=True, help="reports with it, same seeds")
    ap.add_argument("--out", help="write the table as JSON here too")
    args = ap.parse_args()
    if len(args.base) != len(args.lever):
        raise SystemExit(f"--base has {len(args.base)} reports, --lever {len(args.lever)}: "
                         "allowed the same number (one per training seed, in the same order)")
    base = [per_seed(r, args.method) for r in args.base]
    lever = [per_seed(r, args.method) for r in args.lever]
    rows = {}
    for sc in base[0]:
        row = {side: {k: ci([s[sc][k] for s in seeds]) for k in KEYS}
               for side, seeds in (("base", base), ("lever", lever))}
        row["speed_diff"] = ci([v[sc]["mean_speed"] - b[sc]["mean_speed"]
                                for b, v in zip(base, lever, strict=True)])
        rows[sc] = row
        b, v, d = row["base"], row["lever"], row["speed_diff"]
        print(f"{sc:>8}: base {b['mean_speed']['mean']:5.2f} ± {b['mean_speed']['ci95']:4.2f} "
              f"m/s (flipped {100 * b['flipped']['mean']:4.1f} %, tilted "
              f"{100 * b['tilted']['mean']:4.1f} %)   lever {v['mean_speed']['mean']:5.2f} ± "
              f"{v['mean_speed']['ci95']:4.2f} (flipped {100 * v['flipped']['mean']:4.1f} %, "
              f"tilted {100 * v['tilted']['mean']:4.1f} %)   lever − base "
              f"{d['mean']:+5.2f} ± {d['ci95']:4.2f}  (n={d['n']})")
    if args.out:
        Path(args.out).write_text(json.dumps({"method": args.method, "base": args.base,
                                              "lever": args.lever, "scenarios": rows},
                                             indent=1))


if __name__ == "__main__":
    main()
