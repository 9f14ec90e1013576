"""One table and one plot of distilled students' held-out speed per lever, beside their teacher.

Each ``LEVER=REPORT`` is an `adapt eval` report of the students trained with that lever (its
methods, e.g. gru and mlp); ``--teacher REPORT`` holds the teacher (method ``oracle``) on the
same scenarios. Writes ``OUT.json`` (per lever, method and scenario: mean speed, its standard
deviation over evaluation seeds, the share of the teacher's speed, flipped and tilted shares)
and ``OUT.png`` (speed per scenario, one bar per lever and method, the teacher as a line).

    python research/student_levers.py "held labels=EVAL_A" "no previous inputs=EVAL_B" \\
        --teacher EVAL_TEACHER --out docs/results/students/levers
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def per_method(report: str) -> dict[tuple[str, str], dict[str, list[float]]]:
    """(method, scenario) -> per-episode speed, flipped and tilted shares of a report."""
    out: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for e in json.loads((Path(report) / "results.json").read_text())["episodes"]:
        row = out[(e["method"], e["scenario"])]
        row["speed"].append(float(e["mean_speed"]))
        row["flipped"].append(float(e["flipped"]))
        row["tilted"].append(float(e["tilted"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("levers", nargs="+", metavar="LEVER=REPORT")
    ap.add_argument("--teacher", required=True, help="a report holding the teacher (oracle)")
    ap.add_argument("--out", required=True, help="path without suffix: OUT.json, OUT.png")
    args = ap.parse_args()
    teacher = {s: float(np.mean(v["speed"])) for (m, s), v in per_method(args.teacher).items()
               if m == "oracle"}
    rows = []
    for item in args.levers:
        lever, _, report = item.partition("=")
        for (method, scenario), v in sorted(per_method(report).items()):
            speed = float(np.mean(v["speed"]))
            rows.append({"lever": lever, "method": method, "scenario": scenario,
                         "speed": speed, "speed_std": float(np.std(v["speed"])),
                         "of_teacher": speed / teacher[scenario] if scenario in teacher else None,
                         "flipped": float(np.mean(v["flipped"])),
                         "tilted": float(np.mean(v["tilted"])), "episodes": len(v["speed"])})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"teacher_speed": teacher, "rows": rows},
                                                   indent=2))
    scenarios = sorted(teacher)
    bars = sorted({(r["lever"], r["method"]) for r in rows},
                  key=lambda b: ([a.partition("=")[0] for a in args.levers].index(b[0]), b[1]))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(1, len(bars))
    for i, (lever, method) in enumerate(bars):
        vals = [next((r["speed"] for r in rows if (r["lever"], r["method"], r["scenario"])
                      == (lever, method, s)), np.nan) for s in scenarios]
        ax.bar(np.arange(len(scenarios)) + (i - (len(bars) - 1) / 2) * width, vals, width,
               label=f"{method}, {lever}")
    for j, s in enumerate(scenarios):
        ax.hlines(teacher[s], j - 0.45, j + 0.45, colors="k", linestyles="--",
                  label="teacher" if j == 0 else None)
    ax.set_xticks(np.arange(len(scenarios)), scenarios)
    ax.set_ylabel("mean forward speed (m/s)")
    ax.set_ylim(0, 1.5 * max(teacher.values()))  # room for the legend above the teacher
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    ax.set_title("distilled students of the privileged teacher, held-out, 20 s")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    for r in rows:
        share = f"{100 * r['of_teacher']:.0f} %" if r["of_teacher"] is not None else "-"
        print(f"{r['lever']:<28} {r['method']:<5} {r['scenario']:<28} {r['speed']:5.2f} m/s "
              f"({share} of the teacher)  flipped {r['flipped']:.2f}  tilted {r['tilted']:.2f}")
    print(json.dumps({"teacher_speed": teacher, "levers": len(args.levers), "rows": len(rows)}))


if __name__ == "__main__":
    main()
