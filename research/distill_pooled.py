"""Diagnostic: refit a fresh student on the DAgger rounds of several finished runs, pooled.

Every `adapt train-policy` run keeps its teacher-labelled trials in ``data/round_*.npz``.
Pooling the rounds of N runs of one family and teacher gives the student N times the labels
of one run. If a student trails its teacher for lack of data, the refitted one does better;
``--keep`` refits on the best fraction of the trials only (by return), to test whether
imitating the good episodes helps. Every epoch prints the fit loss and, with ``--val``, the
imitation error on other labelled trials (mean squared error per action dimension, in action
half-ranges: the distillation loss) — compare it with research/label_noise.py's label
variance, the floor no student can go below.

The result is an ordinary policy run folder (plus a ``POOLED`` file naming its sources):

    python research/distill_pooled.py 'runs/sweep/quad10-cem/*-s*' \\
        --config runs/sweep/quad10-cem/gru-s0/config.json --set distill.epochs=5 \\
        --val held-out='runs/oracle/*/data/round_00[34].npz' --out runs/pooled/gru
    adapt eval-policy runs/pooled/gru --episodes 20 --duration 10
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import time
from pathlib import Path

import numpy as np
import torch

from adaptive_control.builders import run_rng, torch_seed
from policies.config import PolicyTrainConfig, policy_config_from_arg, policy_config_from_json
from policies.training import (
    DATA_KEYS,
    build_policy,
    distill_fit,
    imitation_error,
    save_policy_checkpoint,
)
from sims.registry import get_family


def load_rounds(files: list[str], what: str = "runs") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The labelled trials ``[T, N]`` of these round files, and each trial's return."""
    if not files:
        raise SystemExit(f"{what}: no round files matched")
    rounds = [np.load(f) for f in files]
    data = {k: np.concatenate([r[k] for r in rounds], axis=1) for k in DATA_KEYS}
    returns = np.concatenate([r["episode_returns"].reshape(r["obs"].shape[1], -1).sum(1)
                              for r in rounds])
    return data, returns


def source_runs(patterns: list[str]) -> tuple[list[Path], str]:
    """Run folders matching ``patterns``, all of one family and one teacher, and that family."""
    runs = sorted({Path(p) for pat in patterns for p in glob.glob(pat)
                   if (Path(p) / "data").is_dir()})
    if not runs:
        raise SystemExit(f"runs={patterns!r}: no run folder with a data/ folder matched")
    seen = {}
    for run in runs:
        cfg = policy_config_from_json((run / "config.json").read_text())
        seen.setdefault((cfg.family, cfg.distill.teacher), []).append(str(run))
    if len(seen) > 1:
        raise SystemExit("runs: pooled rounds must share family and teacher; found "
                         + "; ".join(f"{k}: {len(v)} runs" for k, v in seen.items()))
    [(family, _teacher)] = seen
    return runs, family


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders (globs) whose data/round_*.npz to pool")
    ap.add_argument("--config", required=True,
                    help="the student: a train-policy preset or config file (e.g. a run's "
                         "config.json); its family must be the runs'")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--keep", type=float, default=1.0,
                    help="refit on this fraction of the trials, those of highest return")
    ap.add_argument("--val", action="append", default=[], metavar="NAME=GLOB",
                    help="labelled round files to report the imitation error on (repeatable)")
    ap.add_argument("--out", required=True, help="run folder to write")
    args = ap.parse_args()
    if not 0.0 < args.keep <= 1.0:
        raise SystemExit(f"--keep={args.keep!r}: allowed a fraction in (0, 1]")
    cfg: PolicyTrainConfig = policy_config_from_arg(args.config, args.overrides)
    runs, runs_family = source_runs(args.runs)
    if cfg.family != runs_family:
        raise SystemExit(f"--config family={cfg.family!r}; the runs are {runs_family!r}")
    vals = {}
    for spec in args.val:
        name, sep, pattern = spec.partition("=")
        if not sep:
            raise SystemExit(f"--val={spec!r}: allowed NAME=GLOB")
        vals[name] = load_rounds(sorted(glob.glob(pattern)), f"--val={spec!r}")[0]
    out = Path(args.out)
    if (out / "checkpoint.pt").exists():
        raise SystemExit(f"--out={str(out)!r} already holds a checkpoint")

    files = sorted(str(f) for run in runs for f in (run / "data").glob("round_*.npz"))
    data, returns = load_rounds(files)
    keep = np.sort(np.argsort(-returns, kind="stable")[:max(1, round(args.keep * len(returns)))])
    data = {k: v[:, keep] for k, v in data.items()}
    print(f"{len(runs)} runs, {len(files)} rounds, {len(returns)} trials; refitting on "
          f"{len(keep)} (return {returns[keep].mean():.1f}, all {returns.mean():.1f})")

    family = get_family(cfg.family)
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    torch.manual_seed(torch_seed(cfg.seed, 0, 99))  # weight init, as train-policy
    policy = build_policy(cfg, family)
    policy.obs_norm.update(torch.as_tensor(data["obs"]))
    policy.rew_norm.update(torch.as_tensor(data["prev_rew"]))
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.distill.lr)
    one_epoch = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, epochs=1))
    metrics, t0 = [], time.perf_counter()
    for epoch in range(cfg.distill.epochs):
        row = {"epoch": epoch, "train_loss": distill_fit(policy, optimizer, data, one_epoch,
                                                         run_rng(cfg.seed, epoch, 1))}
        row.update({f"val_{n}": imitation_error(policy, v) for n, v in vals.items()})
        row["seconds"] = time.perf_counter() - t0
        metrics.append(row)
        print(", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)

    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    (out / "POOLED").write_text(json.dumps({"runs": [str(r) for r in runs], "keep": args.keep,
                                            "trials": int(len(keep))}, indent=2) + "\n")
    print(save_policy_checkpoint(out / "checkpoint.pt", cfg, family, policy, optimizer,
                                 cfg.iterations, metrics))


if __name__ == "__main__":
    main()
