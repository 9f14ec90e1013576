"""What GrBAL's adaptation finds on a held-out condition, and whether more inner steps at test
time would find more.

For each run it adapts on windows of M transitions of random-action rollouts in the family's
test conditions (and, for comparison, as many training conditions), with 0 (θ itself), 1, …,
``--max-steps`` inner steps of the run's own rule (rates, action gains, norm limit), and
reports the adapted model's loss on the K transitions that follow each window (normalised-Δ
MSE, as in training) and the mean adapted action gain of every motor. ``--write-steps N
--write-to DIR`` also writes a copy of the run's checkpoint that adapts with N steps at test
time (``DIR/checkpoint.pt``, for ``adapt eval --method grbal=DIR``); the weights are the
run's, meta-trained for its own step count.

    python research/adaptation_steps.py RUN [RUN ...] --max-steps 3 --out steps.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from adaptive_control.builders import learner_from_checkpoint
from adaptive_control.checkpoint import load_checkpoint, save_checkpoint
from adaptive_control.evaluation.model_eval import heldout_data
from adaptive_control.learners import GrBAL, inner_update
from adaptive_control.training.data import WindowSampler
from adaptive_control.types import Transitions
from sims.dataset import Dataset
from sims.registry import get_family


def windows(data: Dataset, m: int, k: int) -> list[tuple[Transitions, Transitions]]:
    """Every (past M, future K) window of every trajectory, back to back (the validation
    windows of training, :meth:`WindowSampler.all_windows`)."""
    batch = WindowSampler(data, m, k, np.arange(data.n_trajectories)).all_windows(stride=m)

    def one(t: Transitions, i: int) -> Transitions:
        return Transitions(t.obs[i], t.act[i], t.next_obs[i])

    return [(one(batch.past, i), one(batch.future, i)) for i in range(batch.batch_size)]


def adapted(learner: GrBAL, past: Transitions, steps: int) -> dict[str, torch.Tensor]:
    """θ after ``steps`` inner steps of the learner's rule on ``past`` (θ itself at 0)."""
    theta = {k: v.detach() for k, v in learner.model.named_parameters()}
    if steps == 0:
        return theta
    return inner_update(learner.model, theta, past, learner.inner_lr(), steps,
                        create_graph=False, max_norm=learner.config.inner_max_norm)


def measure(learner: GrBAL, pairs: list[tuple[Transitions, Transitions]], steps: int
            ) -> dict[str, object]:
    losses, gains = [], []
    with torch.no_grad():  # the inner step's torch.func.grad works under no_grad
        for past, fut in pairs:
            p = adapted(learner, past, steps)
            losses.append(float(learner.model.functional_loss(p, fut)))
            if "act_gain" in p:
                gains.append(p["act_gain"].numpy())
    return {"future_loss_mean": float(np.mean(losses)),
            "future_loss_median": float(np.median(losses)), "windows": len(losses),
            "action_gains": [round(float(g), 3) for g in np.mean(gains, axis=0)] if gains else None}


def with_steps(run: str, steps: int, out_dir: Path) -> Path:
    """A copy of ``run``'s checkpoint whose GrBAL adapts with ``steps`` inner steps."""
    ckpt = load_checkpoint(checkpoint_path(run))
    cfg = json.loads(ckpt["config"])
    if cfg.get("learner") != "grbal":
        raise ValueError(f"--write-steps: run {run!r} holds learner {cfg.get('learner')!r}, "
                         "allowed a GrBAL run")
    cfg["grbal"]["inner_steps"] = steps
    ckpt["config"] = json.dumps(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out_dir / "checkpoint.pt", ckpt)


def checkpoint_path(run: str) -> Path:
    p = Path(run)
    return p / "checkpoint.pt" if p.is_dir() else p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="GrBAL run folders (or checkpoints)")
    ap.add_argument("--max-steps", type=int, default=3, help="inner steps 0 … this")
    ap.add_argument("--trajectories", type=int, default=3,
                    help="random-action rollouts per condition")
    ap.add_argument("--steps", type=int, default=200, help="decisions per rollout")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--write-steps", type=int, default=0,
                    help="also write a copy of each run adapting with this many steps")
    ap.add_argument("--write-to", default="", help="folder for those copies (one per run)")
    ap.add_argument("--out", required=True, help="JSON to write")
    args = ap.parse_args()
    if args.max_steps < 1:
        ap.error(f"--max-steps={args.max_steps}: allowed an integer >= 1")
    if args.write_steps and not args.write_to:
        ap.error("--write-steps needs --write-to")
    torch.set_num_threads(1)
    rows = []
    data: dict[str, dict[str, Dataset]] = {}
    for run in args.runs:
        learner, cfg = learner_from_checkpoint(load_checkpoint(checkpoint_path(run)))
        if not isinstance(learner, GrBAL):
            raise SystemExit(f"run {run!r} holds {cfg.learner!r}: allowed GrBAL runs")
        if cfg.family not in data:
            family = get_family(cfg.family)
            data[cfg.family] = {split: heldout_data(family, split, args.trajectories,
                                                    args.steps, args.seed)
                                for split in ("test", "train")}
        row: dict[str, object] = {"run": run, "family": cfg.family,
                                  "theta_gains": None if learner.model.act_gain is None else
                                  [round(float(g), 3) for g in learner.model.act_gain.detach()]}
        for split, d in data[cfg.family].items():
            pairs = windows(d, cfg.m, cfg.k)
            row[split] = {str(s): measure(learner, pairs, s) for s in range(args.max_steps + 1)}
        rows.append(row)
        one, last = row["test"]["1"], row["test"][str(args.max_steps)]  # type: ignore[index]
        print(f"{run}: held-out future loss θ {row['test']['0']['future_loss_mean']:.3f}, "  # type: ignore[index]
              f"1 step {one['future_loss_mean']:.3f}, {args.max_steps} steps "
              f"{last['future_loss_mean']:.3f}; gains θ {row['theta_gains']} → 1 step "
              f"{one['action_gains']}", flush=True)
        if args.write_steps:
            path = with_steps(run, args.write_steps,
                              Path(args.write_to) / checkpoint_path(run).resolve().parent.name)
            print(f"  wrote {path} ({args.write_steps} inner steps at test time)")
    Path(args.out).write_text(json.dumps({"max_steps": args.max_steps, "runs": rows},
                                         indent=1))
    print(json.dumps({"runs": len(rows), "out": args.out}))


if __name__ == "__main__":
    main()
