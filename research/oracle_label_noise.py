"""How noisy are the privileged teacher's labels, and does acting on their mean still run?

The privileged teacher (MPPI on the true simulator, `policies/teachers.py`) samples its
candidates: its action at one state is itself random, and a distilled student regresses onto
the mean of that noise. This drives the teacher through episodes of training conditions (its
decisions held as when it labels) and, at every ``--every``-th decision, asks ``--copies``
copies of it (same warm start, other noise) for the action at that state. It reports the
variance across copies in action half-ranges squared (the unit of the distillation loss: the
floor a student's fit cannot go below), then drives episodes with the teacher acting on the
mean of ``--mean-of`` draws at each decision: the controller a student that imitated the
teacher perfectly would be. Its speed against the teacher's says whether the mean runs.

    python research/oracle_label_noise.py [--family cheetah-cripple] [--episodes 2]
        [--duration 8] [--copies 6] [--every 10] [--mean-of 4] [--out noise.json]

Prints its figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json

import numpy as np
import torch

from policies.config import load_policy_config
from policies.teachers import HeldDecisions, make_teachers
from sims.env import AdaptEnv
from sims.episode import episode_steps_of
from sims.registry import get_family


class MeanOf:
    """The oracle acting on the mean of ``k`` draws of its planner at each decision (copies of
    the planner with its warm start, each its own noise; the first one's plan carries on)."""

    def __init__(self, oracle, k: int, seed: int) -> None:
        self.oracle = oracle
        self.k = k
        self.generators = [torch.Generator().manual_seed(seed + i) for i in range(1, k)]
        self.latencies: list[float] = []

    def bind_env(self, env) -> None:
        self.oracle.bind_env(env)

    def reset(self) -> None:
        self.oracle.reset()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.mean([self.oracle(obs)] + draws(self.oracle, obs, self.generators), axis=0)


def draws(oracle, obs: np.ndarray, generators: list[torch.Generator]) -> list[np.ndarray]:
    """The oracle's action at this state under each generator, from copies of its planner
    (its warm start included), leaving the oracle itself as it was."""
    out = []
    for g in generators:
        planner = copy.deepcopy(oracle.planner)
        with torch.no_grad():
            a = planner.plan(torch.from_numpy(np.asarray(obs, dtype=np.float32)),
                             oracle.predictor(), oracle.reward_fn, g)
        out.append(a.numpy().astype(np.float64))
    return out


def drive(teacher: HeldDecisions, env: AdaptEnv, steps: int, on_decision=None) -> float:
    """Mean forward speed (m/s) of ``teacher`` driving ``env`` for ``steps`` control steps."""
    teacher.bind_env(env)
    teacher.reset()
    obs = env.reset().observation
    speeds = []
    for t in range(steps):
        if on_decision is not None and t % teacher.k == 0:
            on_decision(t // teacher.k, obs)
        ts = env.step(teacher(obs))
        obs = ts.observation
        speeds.append(env.physics.forward_velocity())
    return float(np.mean(speeds))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="cheetah-cripple")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per episode")
    ap.add_argument("--copies", type=int, default=6)
    ap.add_argument("--every", type=int, default=10, help="probe every N-th decision")
    ap.add_argument("--mean-of", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = get_family(args.family)
    distill = load_policy_config(preset="distill-oracle",
                                 overrides=[f"family='{family.name}'"]).distill
    steps = episode_steps_of(args.duration, family.robot.control_timestep)
    lo, hi = family.robot.action_bounds
    half = (hi - lo) / 2
    rng = np.random.default_rng(args.seed)
    variances, teacher_speed, mean_speed = [], [], []
    for e in range(args.episodes):
        condition = family.sample(rng, "train")
        env_seed = int(rng.integers(2**31))
        (teacher,) = make_teachers(family, distill, [args.seed + e])
        gens = [torch.Generator().manual_seed(1000 * e + i) for i in range(args.copies)]

        def probe(d: int, obs: np.ndarray, teacher=teacher, gens=gens) -> None:
            if d % args.every == args.every - 1:  # after a warm start has formed
                acts = np.stack(draws(teacher.teacher, obs, gens)) / half
                variances.append(float(acts.var(axis=0).mean()))

        teacher_speed.append(drive(teacher, AdaptEnv(family.robot, condition, steps,
                                                     seed=env_seed), steps, probe))
        (inner,) = make_teachers(family, distill, [args.seed + e])
        mean_teacher = HeldDecisions(MeanOf(inner.teacher, args.mean_of, args.seed + e),
                                     inner.k)
        mean_speed.append(drive(mean_teacher, AdaptEnv(family.robot, condition, steps,
                                                       seed=env_seed), steps))
        print(f"episode {e} ({condition.label}): teacher {teacher_speed[-1]:.2f} m/s, mean of "
              f"{args.mean_of} draws {mean_speed[-1]:.2f} m/s; label variance so far "
              f"{np.mean(variances):.4f}", flush=True)
    result = {"family": family.name, "episodes": args.episodes, "duration_s": args.duration,
              "copies": args.copies, "probes": len(variances),
              "label_variance": float(np.mean(variances)),
              "label_variance_sem": float(np.std(variances) / np.sqrt(len(variances))),
              "teacher_speed": teacher_speed, "mean_of": args.mean_of,
              "mean_of_speed": mean_speed}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
