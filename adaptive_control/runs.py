"""Run folders: one writer at a time, no silent reuse of another run's files, resume from the
last checkpoint, and the metrics log (one CSV row per iteration, TensorBoard scalars when
TensorBoard is there). Model and policy training both run through here."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from adaptive_control.checkpoint import load_checkpoint

CHECKPOINT = "checkpoint.pt"


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file as given, or the checkpoint inside the run folder ``path``."""
    p = Path(path)
    return p / CHECKPOINT if p.is_dir() else p


def check_run_folder(out: Path, resume: bool) -> None:
    """Refuse a fresh start into a folder that holds a run (its checkpoint or its collected
    data), and a ``--resume`` of a folder that holds none."""
    has_run = (out / CHECKPOINT).exists() or (out / "data").exists()
    if has_run and not resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it or "
                              "choose another --out")
    if resume and not has_run:
        raise ValueError(f"--resume: {out} holds no run to resume")


@contextlib.contextmanager
def run_lock(out: Path):
    """One writer per run folder: two processes training into one folder would interleave
    their data and checkpoints. A lock left by a dead process is taken over."""
    lock = out / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise FileExistsError(
                    f"{out} is in use by another adapt train (pid {pid})") from None
            lock.unlink(missing_ok=True)
    else:
        raise FileExistsError(f"could not lock {out}")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def restore_run(ckpt_path: Path, robot: str, cfg: Any, parse_config: Callable[[str], Any],
                module: torch.nn.Module, module_key: str,
                optimizer: torch.optim.Optimizer) -> tuple[int, list[dict[str, Any]]]:
    """``--resume``: load the checkpoint's weights (under ``module_key``), optimiser state and
    torch RNG state, refusing a run started with another config. Returns (iteration done,
    metrics rows so far)."""
    ckpt = load_checkpoint(ckpt_path, robot=robot)
    if parse_config(ckpt["config"]) != cfg:
        raise ValueError(f"--resume: the config differs from the one {ckpt_path.parent} was "
                         "started with; resume with the same config (see config.json in the "
                         "run folder)")
    module.load_state_dict(ckpt[module_key])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["torch_rng"])
    return int(ckpt["iteration"]), json.loads(ckpt["metrics"])

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
