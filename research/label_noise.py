"""How noisy are an adaptive-MPC teacher's labels? (docs/results.md, "Distilled policies")

A sampling planner's action at a given state is itself random: a student distilled from it
regresses onto the mean of that noise. This drives the teacher through an episode of a training
condition and, every ``--every`` steps, asks copies of it (same history, same adapted model,
other noise) for the action at that state; it reports the variance across copies in units of
the action half-range squared (the unit of the distillation loss), then the teacher's return on
the held-out conditions and per-step time. Its square root is the ``--action-std`` with which a
student (``adapt eval-policy``, ``adapt export-policy``) adds the teacher's spread back.

With ``--mean-of K`` the held-out return is the teacher's acting on the mean of K draws at
each state: the controller a student that imitated the teacher perfectly would be (a student
regresses onto that mean). If it trails the teacher, so must every such student.

    python research/label_noise.py TEACHER.pt [--set distill.teacher_planner=mppi ...]
        [--mean-of 8 --episodes 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch
from _helpers import teacher_draws

from policies.config import load_policy_config
from policies.evaluate import evaluate_policy, teacher_controller
from sims.env import AdaptEnv
from sims.registry import get_family


def label_variance(ctrl, family, steps: int, every: int, copies: int, seed: int) -> float:
    """Mean per-dimension variance of the teacher's action across ``copies`` noise draws."""
    lo, hi = family.robot.action_bounds
    half = (hi - lo) / 2
    rng = np.random.default_rng(seed)
    env = AdaptEnv(family.robot, family.sample(rng, "train"), episode_steps=steps, seed=rng)
    ts = env.reset()
    ctrl.reset()
    spread, t = [], 0
    while not ts.last():
        if t > ctrl.m and t % every == 0:  # once the teacher adapts on a full window
            generators = [torch.Generator().manual_seed(seed * 1000 + c) for c in range(copies)]
            acts = [a / half for a in teacher_draws(ctrl, ts.observation, generators)]
            spread.append(float(np.var(np.stack(acts), axis=0).mean()))
        ts = env.step(ctrl(ts.observation))
        t += 1
    return float(np.mean(spread))


class MeanOfDraws:
    """The teacher acting on the mean of ``k`` draws of its planner at each state.

    Each extra draw comes from a copy of the teacher (same history, adapted model and warm
    start, its own noise), as in `label_variance`; the teacher then adapts on the mean action,
    the one executed.
    """

    def __init__(self, ctrl, k: int, seed: int = 0):
        self.ctrl, self.k = ctrl, k
        self.generators = [torch.Generator().manual_seed(seed * 1000 + c) for c in range(k - 1)]

    def reset(self) -> None:
        self.ctrl.reset()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        # Each copy's generator is a stream of its own, continued from step to step.
        acts = teacher_draws(self.ctrl, obs, self.generators) + [self.ctrl(obs)]
        mean = np.mean(acts, axis=0)
        self.ctrl.observe_action(mean)
        return mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", help="an `adapt train` checkpoint")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="distill.teacher_* fields of the labelling planner (repeatable)")
    ap.add_argument("--episodes", type=int, default=5, help="held-out episodes")
    ap.add_argument("--every", type=int, default=15, help="probe every this many steps")
    ap.add_argument("--copies", type=int, default=6, help="noise draws per probed state")
    ap.add_argument("--mean-of", type=int, default=1, metavar="K",
                    help="held-out return of the teacher acting on the mean of K draws")
    args = ap.parse_args()
    if args.mean_of < 1:
        raise SystemExit(f"--mean-of={args.mean_of}: allowed an integer >= 1")
    torch.set_num_threads(1)
    cfg = load_policy_config(preset="distill", overrides=[f"distill.teacher='{args.teacher}'",
                                                           *args.overrides])
    ctrl = teacher_controller(args.teacher, distill=cfg.distill)
    family = get_family(ctrl_family(args.teacher))
    var = label_variance(ctrl, family, 300, args.every, args.copies, seed=0)
    acting = MeanOfDraws(ctrl, args.mean_of) if args.mean_of > 1 else ctrl
    res = evaluate_policy(acting, family, args.episodes, 500, seed=1234)
    out = {"planner": dataclasses.asdict(ctrl.planner.config), "label_variance": var,
           "mean_of": args.mean_of, "held_out_return": res.mean_return,
           "held_out_sem": res.sem_return, "held_out_returns": [e.ret for e in res.episodes],
           "ms_median": res.ms_median}
    print(f"{type(ctrl.planner).__name__} {ctrl.planner.config}")
    print(f"label variance {var:.4f} (action half-range^2); held-out return "
          + (f"(mean of {args.mean_of} draws) " if args.mean_of > 1 else "") +
          f"{res.mean_return:.1f} ± {res.sem_return:.1f}; {res.ms_median:.1f} ms/step")
    # A student regresses onto the mean label; this much noise puts the teacher's spread back.
    print(f"students act like this teacher with --action-std {np.sqrt(var):.3f}")
    print(json.dumps(out))


def ctrl_family(path: str) -> str:
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.training.config import config_from_json

    return config_from_json(load_checkpoint(path)["config"]).family


if __name__ == "__main__":
    main()
