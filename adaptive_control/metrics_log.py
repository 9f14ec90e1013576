"""Run metrics: one CSV row per iteration, and TensorBoard scalars when TensorBoard is there."""

from __future__ import annotations

import csv
import math
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


def log_iteration(csv_path: Path, writer, row: dict[str, Any], step: int, tag: str) -> None:
    """One iteration's row: appended to the CSV, numeric fields as TensorBoard scalars."""
    append_csv(csv_path, row)
    if writer is None:
        return
    for k, v in row.items():
        if k != "iteration" and isinstance(v, (int, float)) and math.isfinite(v):
            writer.add_scalar(f"{tag}/{k}", v, step)
    writer.flush()
