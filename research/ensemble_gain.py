"""What joining runs into an ensemble buys: each ensemble report (`adapt eval --method
grbal=RUN_A,RUN_B,RUN_C`) against the reports of its members evaluated alone on the same
evaluation seeds, per scenario: the ensemble's speed, the mean of its members' and the best
member's, and the paired difference (ensemble − members' mean) with a 95 % t interval over the
ensembles.

    python research/ensemble_gain.py --ensemble eval/r012=0,1,2 --ensemble eval/r123=1,2,3 ... \
        --single eval/seed{S} --method grbal --out ensemble_gain.json

``--single`` is a pattern with ``{S}`` for the training seed. Ensembles that share members
(rotations of five runs) are not independent: the interval is then narrower than it should be.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from _helpers import ci


def per_scenario(report: Path, method: str) -> dict[str, dict[str, float]]:
    """Mean speed, flipped and tilted share of ``method`` per scenario, over evaluation seeds."""
    eps = json.loads((report / "results.json").read_text())["episodes"]
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for e in eps:
        if e["method"] == method:
            for k in ("mean_speed", "flipped", "tilted"):
                out[e["scenario"]][k].append(e[k])
    return {s: {k: float(np.mean(v)) for k, v in d.items()} for s, d in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ensemble", action="append", required=True,
                    help="REPORT=S1,S2,...: an ensemble's report and its members' seeds")
    ap.add_argument("--single", required=True, help="members' reports, {S} the seed")
    ap.add_argument("--method", default="grbal", help="the label in every report")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for item in args.ensemble:
        report, _, seeds = item.partition("=")
        ens = per_scenario(Path(report), args.method)
        singles = [per_scenario(Path(args.single.format(S=s)), args.method)
                   for s in seeds.split(",")]
        for scenario, e in ens.items():
            alone = [s[scenario]["mean_speed"] for s in singles]
            r = rows[scenario]
            r["ensemble"].append(e["mean_speed"])
            r["members_mean"].append(float(np.mean(alone)))
            r["best_member"].append(float(np.max(alone)))
            r["gain"].append(e["mean_speed"] - float(np.mean(alone)))
            r["gain_over_best"].append(e["mean_speed"] - float(np.max(alone)))
            r["flipped"].append(e["flipped"])
            r["tilted"].append(e["tilted"])
    summary = {s: {k: ci(v) for k, v in d.items()} for s, d in rows.items()}
    Path(args.out).write_text(json.dumps(summary, indent=1))
    for s, d in summary.items():
        print(f"{s:28s} ensemble {d['ensemble']['mean']:.2f} ± {d['ensemble']['ci95']:.2f}  "
              f"members {d['members_mean']['mean']:.2f}  best {d['best_member']['mean']:.2f}  "
              f"gain {d['gain']['mean']:+.2f} ± {d['gain']['ci95']:.2f}  over best "
              f"{d['gain_over_best']['mean']:+.2f} ± {d['gain_over_best']['ci95']:.2f}  "
              f"flipped {100 * d['flipped']['mean']:.1f} %  "
              f"tilted {100 * d['tilted']['mean']:.1f} %")


if __name__ == "__main__":
    main()
