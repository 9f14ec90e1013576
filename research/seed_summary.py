"""Across training seeds: mean speed, return, normalised score and flipped share per method and
scenario with 95 % confidence intervals (t over training seeds), and paired differences
between methods evaluated on the same seeds; from one `adapt eval` report per training seed.

    python research/seed_summary.py REPORT_0 REPORT_1 ... --pair grbal-mb --pair grbal-mbde \
        --out summary.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from _helpers import ci


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="adapt eval report folders, one per training seed")
    ap.add_argument("--pair", action="append", default=[], help="A-B: paired difference A − B")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    # per (method, scenario): one value per training seed (mean over its evaluation seeds)
    per: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    family = None
    for rep in args.reports:
        r = json.loads((Path(rep) / "results.json").read_text())
        family = r["meta"].get("family", family)
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for e in r["episodes"]:
            groups[(e["method"], e["scenario"])].append(e)
        for (method, scenario), eps in groups.items():
            d = per[(method, scenario)]
            d["return"].append(float(np.mean([e["ret"] for e in eps])))
            d["speed"].append(float(np.mean([e["mean_speed"] for e in eps])))
            d["flipped"].append(float(np.mean([e["flipped"] for e in eps])))
            rec = [e["recovery_s"] for e in eps if e.get("switch_step") is not None]
            d["recovery_s"].append(float(np.mean([np.inf if x is None else x for x in rec]))
                                   if rec else float("nan"))
    # normalised score per training seed, from that seed's oracle and random returns
    for (_, scenario), d in per.items():
        orc, rnd = per.get(("oracle", scenario)), per.get(("random", scenario))
        if orc and rnd:
            d["score"] = [(r - lo) / (hi - lo) for r, lo, hi in
                          zip(d["return"], rnd["return"], orc["return"], strict=True)]
    rows = []
    for (method, scenario), d in sorted(per.items()):
        row = {"family": family, "method": method, "scenario": scenario,
               "training_seeds": len(d["return"])}
        for k, v in d.items():
            finite = [x for x in v if np.isfinite(x)]
            row[k] = ci(finite) if finite else None
        rows.append(row)
    diffs = []
    for pair in args.pair:
        a, b = pair.split("-")
        for scenario in sorted({s for _, s in per}):
            da, db = per.get((a, scenario)), per.get((b, scenario))
            if not (da and db):
                continue
            for k in ("speed", "return", "score"):
                if k in da and k in db:
                    diff = [x - y for x, y in zip(da[k], db[k], strict=True)]
                    diffs.append({"pair": f"{a} - {b}", "scenario": scenario, "metric": k,
                                  **ci(diff), "n": len(diff)})
    Path(args.out).write_text(json.dumps({"rows": rows, "paired": diffs}, indent=1))
    for r in rows:
        s, f = r["speed"], r["flipped"]
        sc = r.get("score")
        print(f"{r['method']:8s} {r['scenario']:28s} speed {s['mean']:5.2f} ± {s['ci95']:4.2f} "
              f"flipped {100 * f['mean']:5.1f} %  score "
              f"{'' if not sc else format(sc['mean'], '6.2f')}")
    for d in diffs:
        print(f"{d['pair']:14s} {d['scenario']:28s} {d['metric']:7s} {d['mean']:8.2f} ± "
              f"{d['ci95']:.2f}")


if __name__ == "__main__":
    main()
