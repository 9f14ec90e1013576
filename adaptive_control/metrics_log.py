"""Run metrics: one CSV row per iteration, and TensorBoard scalars when TensorBoard is there."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the CSV at ``path``, writing the header for a new file."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def tensorboard_writer(path: Path):
    """A ``SummaryWriter`` for ``path``, or None without TensorBoard (the CSV has the figures)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))
