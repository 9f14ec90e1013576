"""Bar plot of mean speed per method and scenario (one panel per family) with 95 % intervals
over training seeds, from `research/seed_summary.py` outputs (one file per group of methods;
a label for each).

    python research/plot_method_speeds.py summary.json ensemble-summary.json=grbal:"GrBAL x3" \
        --out speeds.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {"grbal": "GrBAL", "rebal": "ReBAL", "mb": "MB", "mbde": "MB+DE", "oracle": "oracle",
          "random": "random"}
SCENARIOS = {"healthy": "healthy", "fixed:disabled(bthigh)": "dead back thigh",
             "switch@3s:disabled(bthigh)": "failure at 3 s",
             "fixed:lost_leg(back_right,0.5)": "lost leg", "switch@3s:lost_leg(back_right,0.5)":
             "leg lost at 3 s", "fixed:terrain(basin)": "basin", "fixed:terrain(hill)": "hill",
             "fixed:terrain(steep)": "steep"}
FIRST = ("oracle", "GrBAL x3, 1.0 s", "GrBAL x3", "GrBAL", "ReBAL", "MB", "MB+DE", "random")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summaries", nargs="+",
                    help="FILE (every method, labelled by name) or FILE=METHOD:LABEL")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    # family -> method label -> scenario -> (mean, 95 % half-width)
    bars: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    seeds: dict[str, int] = {}
    for item in args.summaries:
        path, _, pick = item.partition("=")
        method, _, label = pick.partition(":")
        for r in json.loads(Path(path).read_text())["rows"]:
            if method and r["method"] != method:
                continue
            name = label or LABELS.get(r["method"], r["method"])
            ci = r["speed"]["ci95"]
            fam = str(r.get("family"))
            bars.setdefault(fam, {}).setdefault(name, {})[r["scenario"]] = (
                r["speed"]["mean"], 0.0 if ci is None or np.isnan(ci) else ci)
            if r["method"] not in ("oracle", "random"):
                seeds[fam] = max(seeds.get(fam, 0), r["training_seeds"])
    fig, axes = plt.subplots(len(bars), 1, figsize=(9, 3.6 * len(bars)), squeeze=False)
    for ax, (fam, by_method) in zip(axes[:, 0], bars.items(), strict=True):
        order = [n for n in FIRST if n in by_method] + [n for n in by_method if n not in FIRST]
        scen = list(dict.fromkeys(s for m in by_method.values() for s in m))
        scen = [s for s in SCENARIOS if s in scen] + [s for s in scen if s not in SCENARIOS]
        width = 0.8 / len(order)
        for i, name in enumerate(order):
            xs = np.arange(len(scen)) + i * width
            vals = [by_method[name].get(s, (np.nan, 0.0)) for s in scen]
            ax.bar(xs, [v[0] for v in vals], width, yerr=[v[1] for v in vals], capsize=3,
                   label=name)
        ax.set_xticks(np.arange(len(scen)) + 0.4 - width / 2,
                      [SCENARIOS.get(s, s) for s in scen])
        ax.set_ylabel("mean speed (m/s)")
        ax.set_title(f"held-out {fam}: mean over {seeds.get(fam, '?')} training seeds, "
                     "95 % intervals", fontsize=10)
        ax.legend(ncol=4, fontsize=8)
        ax.axhline(0, color="k", lw=0.5)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
