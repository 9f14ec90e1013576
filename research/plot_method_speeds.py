"""Bar plot of mean speed per method and scenario with 95 % intervals over training seeds, from
`research/seed_summary.py` outputs (one file per group of methods; a label for each).

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
             "switch@3s:disabled(bthigh)": "failure at 3 s"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summaries", nargs="+",
                    help="FILE (every method, labelled by name) or FILE=METHOD:LABEL")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    bars: dict[str, dict[str, tuple[float, float]]] = {}
    for item in args.summaries:
        path, _, pick = item.partition("=")
        method, _, label = pick.partition(":")
        for r in json.loads(Path(path).read_text())["rows"]:
            if method and r["method"] != method:
                continue
            name = label or LABELS.get(r["method"], r["method"])
            ci = r["speed"]["ci95"]
            bars.setdefault(name, {})[r["scenario"]] = (r["speed"]["mean"],
                                                        0.0 if np.isnan(ci) else ci)
    first = ("oracle", "GrBAL x3, 1.0 s", "GrBAL x3", "GrBAL", "ReBAL", "MB", "MB+DE", "random")
    order = [n for n in first if n in bars] + [n for n in bars if n not in first]
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(order)
    for i, name in enumerate(order):
        xs = np.arange(len(SCENARIOS)) + i * width
        vals = [bars[name].get(s, (np.nan, 0.0)) for s in SCENARIOS]
        ax.bar(xs, [v[0] for v in vals], width, yerr=[v[1] for v in vals], capsize=3,
               label=name)
    ax.set_xticks(np.arange(len(SCENARIOS)) + 0.4 - width / 2, list(SCENARIOS.values()))
    ax.set_ylabel("mean speed over 20 s (m/s)")
    ax.set_title("Held-out cheetah-cripple, 50 ms decisions: mean over 5 training seeds, "
                 "95 % intervals", fontsize=10)
    ax.legend(ncol=4, fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
