"""Plot `adapt eval-policy` results of several runs per architecture (docs/results.md §5).

One panel per results file: every run's held-out mean return (a dot, with its standard error
over episodes), the mean over runs per architecture (a bar) and the teacher's return (a line).

    python research/plot_distill.py OUT.png TITLE=eval.json [TITLE=eval.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(out: str, panels: list[str]) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        title, path = panel.split("=", 1)
        res = json.loads(Path(path).read_text())
        groups = res["groups"]
        teacher = next((v for k, v in res["methods"].items() if k.startswith("teacher:")), None)
        for x, g in enumerate(groups.values()):
            ax.bar(x, g["mean_return"], width=0.6, alpha=0.35)
            for i, member in enumerate(g["members"]):
                m = res["methods"][member]
                ax.errorbar(x - 0.15 + 0.3 * i / max(1, len(g["members"]) - 1),
                            m["mean_return"], yerr=m["sem_return"], fmt="o", color="k", ms=4)
        if teacher is not None:
            ax.axhline(teacher["mean_return"], color="tab:red", ls="--",
                       label=f"teacher {teacher['mean_return']:.0f}")
            ax.axhline(0.8 * teacher["mean_return"], color="tab:red", ls=":", lw=1,
                       label="80 % of teacher")
        # "distill gru" -> "GRU"; "distill gru noise 0.28" -> "GRU\nnoise 0.28"
        labels = [n.split(" ", 1)[-1].upper().replace(" NOISE", "\nnoise") for n in groups]
        two_lines = any("\n" in label for label in labels)
        ax.set_xticks(range(len(groups)), labels, fontsize=7 if two_lines else None)
        if teacher is not None:  # below the tick labels, which may take two lines
            ax.legend(fontsize=7, loc="upper center", ncol=2,
                      bbox_to_anchor=(0.5, -0.18 if two_lines else -0.1))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("held-out return (500 steps)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
