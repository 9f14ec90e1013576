"""Across training seeds: mean speed, return, normalised score, flipped and tilted shares and
recovery per method and scenario with 95 % confidence intervals (t over training seeds), and
paired differences between methods evaluated on the same seeds; from one `adapt eval` report
per training seed.

    python research/seed_summary.py REPORT_0 REPORT_1 ... --pair grbal-mb --pair grbal-mbde \
        [--baselines REPORT] --out summary.json

``--baselines REPORT``: the oracle and the random floor do not depend on the training seed
(the same planner on the true simulator, the same random actions on the same evaluation
seeds), so they may be evaluated once, in REPORT, and serve every training seed's score.

``--append``: OUT gathers several families (``examples/reference_comparison.sh``): this
family's rows and paired differences replace its earlier ones there, the others' stay.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from _helpers import ci

from adaptive_control.evaluation.episodes import moving_average
from sims.registry import get_robot


def to_level(speed: np.ndarray, dt: float, switch_step: int, level: float,
             window_s: float = 0.5) -> float:
    """Seconds after ``switch_step`` until the speed's trailing mean over ``window_s`` (of
    post-switch steps only) first reaches ``level``; inf if it never does, 0 for level <= 0."""
    if level <= 0:
        return 0.0
    w = max(1, int(round(window_s / dt)))
    smooth = moving_average(speed[switch_step:], w)
    hit = np.nonzero(smooth[w - 1:] >= level)[0]
    return float((hit[0] + w) * dt) if len(hit) else float("inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", help="adapt eval report folders, one per training seed "
                    "(REPORT,REPORT2: that seed's methods from several reports)")
    ap.add_argument("--pair", action="append", default=[], help="A-B: paired difference A − B")
    ap.add_argument("--baselines", default=None,
                    help="a report holding the oracle and random, evaluated once for all seeds")
    ap.add_argument("--out", required=True)
    ap.add_argument("--append", action="store_true",
                    help="merge into OUT: replace this family's rows, keep the other families'")
    args = ap.parse_args()
    named = [Path(f).resolve() for rep in args.reports for f in rep.split(",")]
    twice = sorted({str(f) for f in named if named.count(f) > 1})
    if twice:  # e.g. a shell's A{0,1},B{0,1}, which pairs every A with every B
        ap.error(f"reports: {twice} named for more than one training seed; allowed each once "
                 "(pair a seed's reports as A0,B0 A1,B1 ...)")
    # per (method, scenario): one value per training seed (mean over its evaluation seeds)
    per: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    family = None
    baselines = []
    if args.baselines:
        baselines = [e for e in json.loads((Path(args.baselines) / "results.json").read_text())
                     ["episodes"] if e["method"] in ("oracle", "random")]
    for rep in args.reports:
        # REPORT,REPORT2: one training seed's methods evaluated in separate reports
        parts = [json.loads((Path(p) / "results.json").read_text()) for p in rep.split(",")]
        r = {"meta": parts[0]["meta"], "episodes": [e for p in parts for e in p["episodes"]],
             "traces": [t for p in parts for t in p["traces"]]}
        family = r["meta"].get("family", family)
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for e in r["episodes"] + baselines:
            groups[(e["method"], e["scenario"])].append(e)
        for (method, scenario), eps in groups.items():
            d = per[(method, scenario)]
            d["return"].append(float(np.mean([e["ret"] for e in eps])))
            d["speed"].append(float(np.mean([e["mean_speed"] for e in eps])))
            d["flipped"].append(float(np.mean([e["flipped"] for e in eps])))
            d["tilted"].append(float(np.mean([e.get("tilted", np.nan) for e in eps])))
            rec = [e["recovery_s"] for e in eps if e.get("switch_step") is not None]
            d["recovery_s"].append(float(np.mean([np.inf if x is None else x for x in rec]))
                                   if rec else float("nan"))
        # after the failure: back to 80 % of the speed the method holds with the failure all
        # episode (its fixed scenario, same report), a moving 0.5 s window
        dt = get_robot(r["meta"]["robot"]).control_timestep
        traces = {(t["method"], t["scenario"], t["seed"]): t["speed"] for t in r["traces"]}
        for (method, scenario), eps in groups.items():
            if not scenario.startswith("switch@"):
                continue
            fixed = [traces[k] for k in traces
                     if k[0] == method and k[1] == "fixed:" + scenario.split(":", 1)[1]]
            if not fixed or any(e.get("switch_step") is None for e in eps):
                continue
            level = float(np.mean([np.mean(f) for f in fixed]))
            times = [to_level(np.asarray(traces[(method, scenario, e["seed"])]), dt,
                              e["switch_step"], 0.8 * level) for e in eps]
            per[(method, scenario)]["recovery_to_fixed_s"].append(float(np.mean(times)))
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
                    diffs.append({"family": family, "pair": f"{a} - {b}",
                                  "scenario": scenario, "metric": k, **ci(diff),
                                  "n": len(diff)})
    out = {"rows": rows, "paired": diffs}
    if args.append and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text())
        out = {k: [r for r in old.get(k, []) if r.get("family") != family] + out[k]
               for k in ("rows", "paired")}
    Path(args.out).write_text(json.dumps(out, indent=1))
    for r in rows:
        s, f, t = r["speed"], r["flipped"], r.get("tilted")
        sc = r.get("score")
        print(f"{r['method']:8s} {r['scenario']:28s} speed {s['mean']:5.2f} ± {s['ci95']:4.2f} "
              f"flipped {100 * f['mean']:5.1f} %  tilted "
              f"{'  –  ' if not t else format(100 * t['mean'], '5.1f')} %  score "
              f"{'' if not sc else format(sc['mean'], '6.2f') + ' ± ' + format(sc['ci95'], '.2f')}")
    for d in diffs:
        print(f"{d['pair']:14s} {d['scenario']:28s} {d['metric']:7s} {d['mean']:8.2f} ± "
              f"{d['ci95']:.2f}")


if __name__ == "__main__":
    main()
