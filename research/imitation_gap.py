"""Diagnostic: how far is a student from its teacher's mean action, on the student's own rollouts?

A student's distillation error at a state is the teacher's label variance there (the spread of
its planner's draws, which no student can fit) plus the student's squared distance to the
teacher's mean action (what imitation could still remove). This rolls each student out with its
mean action on the held-out conditions (or ``--split train`` draws). Its labelling teacher (the
checkpoint and planner of the student's config) follows along and adapts on the executed
actions, as in DAgger; every ``--every`` steps ``--draws`` copies of it (same history, own
noise) give their action at that state. Both figures are per action dimension in squared action
half-ranges, the unit of the distillation loss; the teacher acting on that mean is
``research/label_noise.py --mean-of K``.

    python research/imitation_gap.py runs/sweep/quad10-cem/gru-s0 runs/oracle/gru-s0 \\
        [--split train --conditions 3] [--episodes 3] [--out gap.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from _helpers import teacher_draws

from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.runs import checkpoint_path
from policies.compare import eval_conditions
from policies.config import policy_config_from_json
from policies.evaluate import policy_controller, teacher_controller
from policies.rollout import teacher_saw
from sims.conditions import Condition
from sims.env import AdaptEnv
from sims.families import TaskFamily
from sims.registry import get_family


def imitation_gap(student, teacher, family: TaskFamily, conditions: list[Condition],
                  episodes: int, steps: int, every: int, draws: int,
                  seed: int) -> dict[str, float]:
    """Mean label variance and student-to-teacher-mean distance over the probed states."""
    lo, hi = family.robot.action_bounds
    half = (hi - lo) / 2
    rng = np.random.default_rng(seed)
    variance, distance = [], []
    for cond in conditions:
        for _ in range(episodes):
            env = AdaptEnv(family.robot, cond, episode_steps=steps, seed=rng)
            ts = env.reset()
            student.reset()
            teacher.reset()
            t = 0
            while not ts.last():
                probe = t % every == 0 and t > getattr(teacher, "m", 0)  # a full window first
                if probe:
                    generators = [torch.Generator().manual_seed(
                        int(np.random.SeedSequence([seed, t, c]).generate_state(1)[0]))
                        for c in range(draws)]
                    labels = np.stack(teacher_draws(teacher, ts.observation, generators)) / half
                teacher(ts.observation)  # advances its history; told the executed action below
                action = student(ts.observation)
                teacher_saw(teacher, action)
                if probe:
                    variance.append(float(labels.var(axis=0).mean()))
                    distance.append(float(((action / half - labels.mean(axis=0)) ** 2).mean()))
                ts = env.step(action)
                t += 1
    return {"label_variance": float(np.mean(variance)),
            "distance_to_mean": float(np.mean(distance)), "probes": len(distance)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="student run folders (distilled policies)")
    ap.add_argument("--split", choices=("test", "train"), default="test")
    ap.add_argument("--conditions", type=int, default=3, help="with --split train: draws")
    ap.add_argument("--episodes", type=int, default=3, help="episodes per condition")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--every", type=int, default=25, help="probe every this many steps")
    ap.add_argument("--draws", type=int, default=8, help="teacher draws per probed state")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    for name in ("conditions", "episodes", "steps", "every"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name}={getattr(args, name)}: allowed an integer >= 1")
    if args.draws < 2:
        raise SystemExit(f"--draws={args.draws}: allowed an integer >= 2 (a spread needs two)")
    torch.set_num_threads(1)
    students = []  # every run checked before any rollout
    for run in args.runs:
        ckpt = load_checkpoint(checkpoint_path(run))
        student = policy_controller(ckpt)  # refuses a checkpoint that holds no policy
        cfg = policy_config_from_json(ckpt["config"])
        if cfg.method != "distill":
            raise SystemExit(f"{run}: method={cfg.method!r}; a gap needs a distilled student")
        students.append((run, student, cfg))
    results = []
    for run, student, cfg in students:
        family = get_family(cfg.family)
        teacher = teacher_controller(cfg.distill.teacher, distill=cfg.distill)
        conds = eval_conditions(family, args.split, args.conditions, args.seed)
        row = {"run": run, "split": args.split,
               **imitation_gap(student, teacher, family, conds, args.episodes, args.steps,
                               args.every, args.draws, args.seed)}
        print(json.dumps(row), flush=True)
        results.append(row)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
