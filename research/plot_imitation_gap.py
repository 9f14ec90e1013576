"""Plot research/imitation_gap.py results: each student's distance to its teacher's mean action.

One column per kind of student (its run folder's parent and architecture, e.g.
``quad10-cem/gru``); a dot per run and split (filled: held-out, open: training draws), and the
teacher's label variance at the same states (grey crosses), on a log scale.

    python research/plot_imitation_gap.py OUT.png gap.json [gap.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def kind(run: str) -> str:
    """``runs/sweep/quad10-cem/gru-s3`` -> ``quad10-cem/gru``."""
    path = Path(run)
    return f"{path.parent.name}/{path.name.split('-s')[0]}"


def main(out: str, files: list[str]) -> None:
    rows = [row for f in files for row in json.loads(Path(f).read_text())]
    kinds = list(dict.fromkeys(kind(r["run"]) for r in rows))
    fig, ax = plt.subplots(figsize=(1.1 * len(kinds) + 2.5, 3.6))
    for row in rows:
        x = kinds.index(kind(row["run"])) + (-0.12 if row["split"] == "test" else 0.12)
        held_out = row["split"] == "test"
        ax.plot(x, row["distance_to_mean"], "o", color="tab:blue", ms=5,
                mfc="tab:blue" if held_out else "none")
        ax.plot(x, row["label_variance"], "x", color="0.5", ms=4)
    ax.plot([], [], "o", color="tab:blue", label="distance, held-out")
    ax.plot([], [], "o", color="tab:blue", mfc="none", label="distance, training draws")
    ax.plot([], [], "x", color="0.5", label="teacher's label variance")
    ax.set_yscale("log")
    ax.set_xticks(range(len(kinds)), kinds, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("per action dim, half-range$^2$")
    ax.set_title("students' distance to the teacher's mean action", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2:])
