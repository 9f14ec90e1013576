"""Run folders: one writer at a time, no silent reuse of another run's files, resume from the
last checkpoint, and the metrics log (one CSV row per iteration, TensorBoard scalars when
TensorBoard is there). Model and policy training both run through here::

    check_run_folder(out, resume)  # before any work
    ...build the model and its optimiser...
    with open_run(out, cfg, resume, ...) as run:  # restored, locked, config.json written
        for it in range(run.iteration, cfg.iterations):
            ...
            run.metrics.append(row)
            save_checkpoint(run.checkpoint, {..., "metrics": json.dumps(run.metrics)})
            run.log(row, it)
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adaptive_control.checkpoint import load_checkpoint
from sims.atomic import atomic_write

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CONFIG = "config.json"


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file as given, or the checkpoint inside the run folder ``path``."""
    p = Path(path)
    return p / CHECKPOINT if p.is_dir() else p


def split_runs(text: str) -> list[str]:
    """``RUN`` or ``RUN1+RUN2+...`` (runs whose learners act as one ensemble): the run folders or
    checkpoints named. A ``+`` inside an existing path is part of it; what names no existing
    path is left whole for the caller to refuse by name."""
    if "+" not in text or Path(text).exists():
        return [text]
    runs, current = [], ""
    for part in text.split("+"):
        current = f"{current}+{part}" if current else part
        if Path(current).exists():
            runs.append(current)
            current = ""
    return runs + ([current] if current else [])


def check_run_folder(out: Path, resume: bool) -> None:
    """Refuse a fresh start into a folder that holds a run (its checkpoint or its collected
    data), and a ``--resume`` of a folder that holds none."""
    has_run = (out / CHECKPOINT).exists() or (out / "data").exists()
    if has_run and not resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it or "
                              "choose another --out")
    if resume and not has_run:
        raise ValueError(f"--resume: {out} holds no run to resume")


def run_status(out: str | Path, iterations: int | None = None) -> str:
    """``"new"`` (no checkpoint and no collected data), ``"partial"`` (killed or stopped before
    its last iteration: resume it) or ``"done"`` (the checkpoint holds ``iterations``
    iterations, by default the number its own config asks for)."""
    out = Path(out)
    if not (out / CHECKPOINT).exists():
        return "partial" if (out / "data").exists() else "new"
    ckpt = load_checkpoint(out / CHECKPOINT)
    if iterations is None:
        iterations = int(json.loads(ckpt["config"])["iterations"])
    return "done" if int(ckpt["iteration"]) >= iterations else "partial"


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
    started = parse_config(ckpt["config"])
    if started != cfg:
        changes = ", ".join(f"{key} {json.dumps(old, default=str)} -> "
                            f"{json.dumps(new, default=str)}" for key, old, new
                            in config_differences(started.to_dict(), cfg.to_dict()))
        changes = changes or "the fields differ only in type"
        raise ValueError(f"--resume: the config differs from the one {ckpt_path.parent} was "
                         f"started with ({changes}; the run's -> given); resume with the same "
                         "config (the run's is its config.json) or train into another --out")
    module.load_state_dict(ckpt[module_key])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["torch_rng"])
    return int(ckpt["iteration"]), json.loads(ckpt["metrics"])


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = ""
                       ) -> list[tuple[str, Any, Any]]:
    """(dotted key as ``--set`` names it, old value, new value) for every field that differs
    between two configs' ``to_dict()``; a field only one has is ``None`` in the other."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def interrupted_note(out: str | Path, resume_command: str) -> str:
    """What a run interrupted by Ctrl-C left in ``out``, for the one line that reports it: the
    iterations its checkpoint holds (and the next one's collected data, when saved) and
    ``resume_command``, which continues it."""
    out = Path(out)
    if not out.exists():
        return "nothing written"
    if not ((out / CHECKPOINT).exists() or (out / "data").exists()):  # check_run_folder's run
        return f"no iteration was saved in {out}; the same command starts the run again"
    done = 0
    kept = f"no iteration finished in {out}"
    if (out / CHECKPOINT).exists():
        ckpt = load_checkpoint(out / CHECKPOINT)
        done, total = int(ckpt["iteration"]), int(json.loads(ckpt["config"])["iterations"])
        # all of them: the resumed run only rewrites the logs a late interrupt cut short
        kept = f"{done} of {total} iterations saved in {out}"
    if any((out / "data").glob(f"*_{done:03d}.npz")):
        kept += f" (and iteration {done}'s collected data)"
    return f"{kept}; `{resume_command}` continues"


@dataclass
class Run:
    """An open run folder: where the loop starts and the metrics log."""

    #: The run folder.
    path: Path
    #: Iterations done (by the run resumed, else 0).
    iteration: int
    #: One row per iteration done, as the checkpoint holds them.
    metrics: list[dict[str, Any]]
    #: TensorBoard's prefix of this training's scalars.
    tag: str
    #: The TensorBoard writer (None without TensorBoard).
    writer: Any = None

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def log(self, row: dict[str, Any], step: int) -> None:
        """Log one iteration's row (after the checkpoint holding it is written)."""
        log_iteration(self.path / METRICS, self.writer, row, step, self.tag)


@contextlib.contextmanager
def open_run(out: Path, cfg: Any, resume: bool, *, robot: str,
             parse_config: Callable[[str], Any], module: torch.nn.Module, module_key: str,
             optimizer: torch.optim.Optimizer, tag: str) -> Iterator[Run]:
    """Open the run folder ``out`` (``check_run_folder`` it first, before any work): on
    ``resume``, restore ``module`` and ``optimizer`` from its checkpoint (``restore_run``);
    then, holding the folder's lock, write config.json, rebuild the metrics CSV from the
    checkpoint's rows and open TensorBoard."""
    iteration, metrics = 0, []
    if resume and (out / CHECKPOINT).exists():
        iteration, metrics = restore_run(out / CHECKPOINT, robot, cfg, parse_config, module,
                                         module_key, optimizer)
    out.mkdir(parents=True, exist_ok=True)
    with run_lock(out):
        with atomic_write(out / CONFIG) as f:  # a Ctrl-C mid-write must not truncate it
            f.write(json.dumps(cfg.to_dict(), indent=2, sort_keys=True).encode())
        # The checkpoint is the source of truth: rebuild the CSV from it (a kill may have come
        # between writing the checkpoint and appending the row).
        (out / METRICS).unlink(missing_ok=True)
        for row in metrics:
            append_csv(out / METRICS, row)
        run = Run(out, iteration, metrics, tag, tensorboard_writer(out / "tb"))
        try:
            yield run
        finally:
            if run.writer is not None:
                run.writer.close()


def append_csv(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the CSV at ``path``, writing the header for a new file; a row with
    columns the file lacks (a run resumed by a newer version) rewrites it with them added."""
    rows: list[dict[str, Any]] = []
    fields, rewrite = list(row), True
    if path.exists():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rewrite = not set(row) <= set(header)
            if rewrite:
                rows = list(reader)
            fields = header + [k for k in row if k not in header]
    with open(path, "w" if rewrite else "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        if rewrite:
            w.writeheader()
            w.writerows(rows)
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
