"""Sweeps: one training run per grid point, locally or on Ray, resumable (``adapt sweep``).

The grid is the seeds times the Cartesian product of the ``--set`` values::

    adapt sweep tiny --seeds 0-2 --set learner=grbal,mb --set grbal.hidden_sizes=[32,32],[64,64]

Grammar. ``--seeds``: comma-separated integers and inclusive ranges ``A-B`` (``0-4``,
``0,3,7-9``); no seed twice. ``--set KEY=V1,V2,...``: the values are split at the commas
outside brackets, braces and quotes, and each is read as ``adapt train --set`` reads a value
(TOML: numbers, booleans, ``[lists]``, ``{tables}``; anything else a plain string), so
``[32,32]`` is one value and ``[32,32],[64,64]`` two. Refused before any work: an empty value
(``a,,b``), unbalanced brackets or quotes, a value given twice, a key given twice, and
``seed`` (use ``--seeds``). A key given one value sets it for every run.

Layout. ``ROOT/sweep.json`` lists the grid; each run is a run folder ``ROOT/NAME/`` (the one
``adapt train`` writes), NAME made of the keys given several values and the seed, e.g.
``learner=grbal,seed=0``. A run's status comes from its checkpoint (``runs.run_status``): a
re-submitted sweep skips the runs that are done and resumes the partial ones from their
checkpoints, so a sweep whose driver or workers died finishes when submitted again.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.config_loader import parse_override
from adaptive_control.runs import CHECKPOINT, run_status
from adaptive_control.training.config import TrainConfig, config_from_arg, config_from_json
from adaptive_control.training.loop import train
from adaptive_control.workers import process_pool
from sims.atomic import atomic_write
from sims.registry import get_family, register_document
from sims.specs import spec_document

SWEEP_JSON = "sweep.json"
SUMMARY_CSV = "summary.csv"


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep."""

    #: Its run folder's name under the sweep's root.
    name: str
    #: Its seed.
    seed: int
    #: The ``--set`` values of this point, by key.
    settings: dict[str, Any]
    #: Its full, validated training config.
    config: TrainConfig


@dataclass(frozen=True)
class RunResult:
    """What became of one run in a submission of a sweep."""

    #: The run folder's name.
    name: str
    #: trained (from scratch), resumed (from a partial checkpoint), skipped (already done)
    #: or failed.
    status: str
    #: The last iteration's validation loss (nan when none).
    val_loss: float
    #: The run's training wall time, summed over its iterations (and over submissions).
    seconds: float
    #: Why it failed (empty otherwise).
    error: str = ""


# ------------------------------------------------------------------------------ grammar
def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7-9"`` -> [0, 3, 7, 8, 9]."""
    seeds: list[int] = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", item)
        if not m:
            raise ValueError(f"--seeds={text!r}: {item!r} is not a seed; allowed comma-separated "
                             "non-negative integers and ranges A-B, e.g. 0-4 or 0,3,7-9")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"--seeds={text!r}: the range {item.strip()!r} is empty; "
                             "write it low-high, e.g. 1-3")
        seeds.extend(range(lo, hi + 1))
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ValueError(f"--seeds={text!r}: seed {twice[0]} is given twice")
    return seeds


_CLOSE = {"[": "]", "{": "}"}


def split_values(text: str) -> list[str]:
    """Split at the commas outside brackets, braces and quotes."""
    pieces, depth, quote, start = [], [], "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in _CLOSE:
            depth.append(_CLOSE[ch])
        elif ch in "]}":
            if not depth or depth.pop() != ch:
                raise ValueError(f"{text!r}: unbalanced {ch!r} at position {i}")
        elif ch == "," and not depth:
            pieces.append(text[start:i])
            start = i + 1
    if quote:
        raise ValueError(f"{text!r}: a quote {quote} is not closed")
    if depth:
        raise ValueError(f"{text!r}: {len(depth)} bracket(s) not closed")
    pieces.append(text[start:])
    return pieces


def parse_axis(text: str) -> tuple[str, list[tuple[str, Any]]]:
    """``"learner=grbal,mb"`` -> ("learner", [("grbal", "grbal"), ("mb", "mb")]): each value as
    written and as read (see the module's grammar)."""
    if "=" not in text:
        raise ValueError(f"--set {text!r} must look like key=value1,value2 "
                         "(e.g. learner=grbal,mb)")
    key, raw = (s.strip() for s in text.split("=", 1))
    try:
        pieces = split_values(raw)
    except ValueError as e:
        raise ValueError(f"--set {key}: {e}; values are split at commas outside [...], {{...}} "
                         "and quotes") from None
    values: list[tuple[str, Any]] = []
    for piece in (p.strip() for p in pieces):
        if not piece:
            raise ValueError(f"--set {text!r}: an empty value (two commas in a row, or a comma "
                             "at either end); allowed comma-separated values, e.g. a,b")
        value = parse_override(f"{key}={piece}")[1]
        if any(value == v for _, v in values):
            raise ValueError(f"--set {text!r}: the value {piece!r} is given twice")
        values.append((piece, value))
    return key, values


def _label(value: Any) -> str:
    """A value as it reads in a run folder's name: ``[32, 32]`` -> ``32x32``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "x".join(_label(v) for v in value) or "empty"
    if isinstance(value, dict):
        return "+".join(f"{k}-{_label(v)}" for k, v in value.items())
    return str(value)


def _folder_name(parts: Sequence[tuple[str, Any]]) -> str:
    return re.sub(r"[^A-Za-z0-9._+=,-]", "_", ",".join(f"{k}={_label(v)}" for k, v in parts))


def expand_grid(config: str, sets: Sequence[str] = (), seeds: str | None = None
                ) -> list[GridPoint]:
    """Every grid point's config, built and validated (before any work): the preset or file
    ``config``, then one value of each ``--set`` axis, then the seed (default: the config's)."""
    axes: list[tuple[str, list[tuple[str, Any]]]] = []
    for text in sets:
        key, values = parse_axis(text)
        if key == "seed":
            raise ValueError("--set seed=...: give the seeds with --seeds (e.g. --seeds 0-4)")
        if key in (k for k, _ in axes):
            raise ValueError(f"--set {key}=... is given twice: give its values once, "
                             f"comma-separated (--set {key}=a,b)")
        axes.append((key, values))
    seed_list = parse_seeds(seeds) if seeds is not None else [config_from_arg(config, []).seed]
    varying = {k for k, vs in axes if len(vs) > 1}
    points: list[GridPoint] = []
    for combo in itertools.product(*(vs for _, vs in axes)):
        keys = [k for k, _ in axes]
        settings = {k: value for k, (_, value) in zip(keys, combo, strict=True)}
        # Each value as written, read by the one override parser exactly as train --set reads it
        overrides = [f"{k}={raw}" for k, (raw, _) in zip(keys, combo, strict=True)]
        for seed in seed_list:
            name = _folder_name([*((k, v) for k, v in settings.items() if k in varying),
                                 ("seed", seed)])
            try:
                cfg = config_from_arg(config, [*overrides, f"seed={seed}"])
            except ValueError as e:
                raise ValueError(f"grid point {name}: {e}") from None
            points.append(GridPoint(name, seed, settings, cfg))
    names = [p.name for p in points]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"two grid points would share the run folder {twice[0]!r}: give "
                         "values that read differently in a folder name")
    for i, p in enumerate(points):
        same = next((q for q in points[:i] if q.config == p.config), None)
        if same is not None:
            raise ValueError(f"grid points {same.name} and {p.name} are the same run (their "
                             "configs are equal): give each value once")
    return points


# ------------------------------------------------------------------------------ the root
def grid_json(points: Sequence[GridPoint]) -> list[dict[str, Any]]:
    """The grid as sweep.json lists it."""
    return [{"name": p.name, "seed": p.seed, "settings": p.settings, "config": p.config.to_dict()}
            for p in points]


def prepare_root(root: str | Path, points: Sequence[GridPoint], config: str = "",
                 sets: Sequence[str] = (), seeds: str | None = None) -> None:
    """Write ROOT/sweep.json, or check that the one there lists the same grid (a re-submission);
    refuse a root that holds something else."""
    root = Path(root)
    runs = json.loads(json.dumps(grid_json(points)))  # tuples as JSON lists, to compare
    path = root / SWEEP_JSON
    if path.exists():
        old = {r["name"]: r["config"] for r in json.loads(path.read_text())["runs"]}
        new = {r["name"]: r["config"] for r in runs}
        if old != new:
            gone = sorted(set(old) - set(new))
            added = sorted(set(new) - set(old))
            changed = sorted(n for n in set(old) & set(new) if old[n] != new[n])
            what = "; ".join(f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                             for label, names in (("only in sweep.json", gone),
                                                  ("only in this submission", added),
                                                  ("with another config", changed))
                             if names)
            raise ValueError(f"--out {root}: its {SWEEP_JSON} lists another grid ({what}). "
                             "Re-submit the same config, --seeds and --set to resume it, or "
                             "choose another --out")
        return
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"--out {root}: the folder holds files but no {SWEEP_JSON}; choose an "
                         "empty or new folder for a sweep")
    body = {"config": config, "sets": list(sets), "seeds": seeds, "runs": runs}
    with atomic_write(path) as f:
        f.write(json.dumps(body, indent=2, default=str).encode())


# ------------------------------------------------------------------------------ one run
def run_point(config_json: str, out: str, progress: bool = False,
              threads: int = 0) -> RunResult:
    """Bring one run to its last iteration: skip it when done, resume it when partial, start it
    when new. A failure is reported, not raised, so the other runs go on."""
    cfg = config_from_json(config_json)
    name = Path(out).name
    if threads and not cfg.threads:
        import torch

        torch.set_num_threads(threads)
    try:
        status = run_status(out, cfg.iterations)
        if status != "done":
            train(cfg, out, resume=status == "partial", progress=progress)
    except Exception as e:  # one failed run must not stop the sweep
        return RunResult(name, "failed", math.nan, math.nan, f"{type(e).__name__}: {e}")
    done = {"new": "trained", "partial": "resumed", "done": "skipped"}[status]
    return _finished(Path(out), name, done)


def _run_item(item: tuple[str, str, int, str]) -> RunResult:
    """One run on a worker process: (config JSON, run folder, threads, the family's spec
    document, which the worker registers, never having loaded the spec file)."""
    register_document(item[3], f"sweep run {item[1]}")
    return run_point(item[0], item[1], progress=False, threads=item[2])


def _finished(out: Path, name: str, status: str) -> RunResult:
    rows = json.loads(load_checkpoint(out / CHECKPOINT)["metrics"])
    val = float(rows[-1]["val_loss"]) if rows else math.nan
    return RunResult(name, status, val, float(sum(r["seconds"] for r in rows)))


# ------------------------------------------------------------------------------ the sweep
def run_sweep(config: str, root: str | Path, sets: Sequence[str] = (), seeds: str | None = None,
              ray: str | None = None, workers: int = 1, progress: bool = True
              ) -> list[RunResult]:
    """Build and check every grid point, then bring each run to its end: one after another
    (``workers`` processes), or one Ray task per run (``ray``: an address, or ``local``).
    Returns one result per grid point, in grid order; also written to ROOT/summary.csv."""
    if workers < 1:
        raise ValueError(f"--workers={workers}: allowed >= 1")
    if ray is not None:
        from adaptive_control.distributed import check_address

        ray = check_address(ray)
        if workers > 1 and ray != "local":
            raise ValueError(f"--workers={workers} with --ray {ray}: the cluster's CPUs set how "
                             "many runs go at once; --workers sizes only a local Ray")
    root = Path(root).absolute()  # workers (Ray's, on other nodes too) start in other folders
    points = expand_grid(config, sets, seeds)
    prepare_root(root, points, config, sets, seeds)
    # A spec family's document goes with each run: worker processes have not loaded its file.
    documents = {p.config.family: spec_document(get_family(p.config.family)) for p in points}
    items = [(p.config.to_json(), str(root / p.name), documents[p.config.family])
             for p in points]
    if ray is not None:
        from adaptive_control.distributed import connect, ray_map

        connect(ray, num_cpus=workers if workers > 1 else None, quiet=not progress)
        results = ray_map(_run_item, [(c, o, 0, s) for c, o, s in items], desc="sweep",
                          unit="run", progress=progress)
    elif workers > 1:
        results = _run_processes(items, workers, progress)
    else:
        results = []
        for c, o, _ in tqdm(items, desc="sweep", unit="run", disable=not progress):
            results.append(run_point(c, o, progress=progress))
    _write_summary(root / SUMMARY_CSV, results)
    return results


def _run_processes(items: list[tuple[str, str, str]], workers: int, progress: bool
                   ) -> list[RunResult]:
    import multiprocessing

    # Spawned, not forked: a fork of a process that has started torch's threads can hang.
    threads = max(1, (os.cpu_count() or 1) // workers)  # the cores shared, not oversubscribed
    ctx = multiprocessing.get_context("spawn")
    results: list[RunResult | None] = [None] * len(items)
    with process_pool(_run_item, [(c, o, threads, s) for c, o, s in items], workers,
                      ctx) as work:
        with tqdm(total=len(items), desc="sweep", unit="run", disable=not progress) as bar:
            for i, result in work.as_done():
                results[i] = result
                bar.update(1)
    return [r for r in results if r is not None]


def _write_summary(path: Path, results: Sequence[RunResult]) -> None:
    text = io.StringIO()
    w = csv.writer(text)  # quotes the run names, which hold commas
    w.writerow(["name", "status", "val_loss", "seconds", "error"])
    for r in results:
        w.writerow([r.name, r.status, repr(r.val_loss), f"{r.seconds:.1f}", r.error])
    with atomic_write(path) as f:
        f.write(text.getvalue().encode())


def format_summary(results: Sequence[RunResult]) -> str:
    """The end-of-sweep table: grid point, status, final validation loss, wall time."""
    width = max([len("run"), *(len(r.name) for r in results)])
    lines = [f"{'run':<{width}}  {'status':<8}  {'val loss':>10}  {'wall s':>8}"]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.status:<8}  {r.val_loss:>10.4f}  {r.seconds:>8.1f}"
                     + (f"  {r.error}" if r.error else ""))
    counts = {s: sum(r.status == s for r in results) for s in
              ("trained", "resumed", "skipped", "failed")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no runs")
    return "\n".join(lines)
