"""How much of a random-action dataset shows the robot upside down, and what do correlated
exploration (``random_actions(beta=...)``) and fall resets (``sims.collect.FallReset``) change?

Collects ``--trajectories`` random-action rollouts of ``--seconds`` each in the family's
training conditions (one condition draw shared by every variant, and one seed) for each beta,
without and with fall resets, and prints the share of transitions after which the torso is
upside down, the fall resets, the trajectories kept and the time to the first fall.

    python research/collection_falls.py --family quadruped-leg-failure@2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from sims.collect import FallReset, collect_open_loop, flipped_share_of
from sims.physics import FLIPPED_UPRIGHT
from sims.registry import get_family
from sims.rewards import task_reward


def first_fall_seconds(data, robot, rule: FallReset) -> float:
    """Mean time from reset to the completed fall (rollouts that never fall count their full
    length: a lower bound), over the dataset's trajectories."""
    ends = rule.trajectory_ends(robot, data.obs.astype(np.float64))
    ends = np.minimum(ends, data.lengths)
    return float(ends.mean() * robot.control_timestep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="quadruped-leg-failure@2")
    ap.add_argument("--trajectories", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--betas", default="0,0.8,0.95", help="comma-separated AR(1) betas")
    ap.add_argument("--fall-seconds", type=float, default=0.2)
    ap.add_argument("--min-steps", type=int, default=32, help="shortest trajectory kept (m + k)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    family = get_family(args.family)
    robot = family.robot
    steps = int(round(args.seconds / robot.control_timestep))
    conds = [family.sample(np.random.default_rng([args.seed, 1]), "train")
             for _ in range(args.trajectories)]
    rule = FallReset(FLIPPED_UPRIGHT, args.fall_seconds, args.min_steps)
    print(f"{family.name}: {args.trajectories} x {steps} steps of "
          f"{robot.control_timestep * 1e3:g} ms; fall = upside down for {rule.steps(robot)} "
          f"steps; trajectories shorter than {args.min_steps} dropped")
    rows = []
    for beta in (float(b) for b in args.betas.split(",")):
        for reset in (None, rule):
            t0 = time.perf_counter()
            data = collect_open_loop(robot, conds, steps, np.random.default_rng(args.seed),
                                     nthread=args.threads, progress=False, action_beta=beta,
                                     fall_reset=reset)
            u = task_reward(robot).uprightness(data.obs[:, 1:].astype(np.float64))
            upright_mean = float(u[data.transition_mask()].mean())
            row = {"beta": beta, "fall_reset": reset is not None,
                   "flipped_share": flipped_share_of(data, robot),
                   "mean_uprightness": upright_mean,
                   "transitions": data.n_transitions, "trajectories": data.n_trajectories,
                   "fall_resets": data.stats.get("fall_resets", 0),
                   "dropped_short": data.stats.get("dropped_short", 0),
                   "dropped_diverged": data.stats["dropped_diverged"],
                   "mean_length_s": float(data.lengths.mean() * robot.control_timestep),
                   "seconds_to_fall": (first_fall_seconds(data, robot, rule)
                                       if reset is None else None),
                   "wall_s": time.perf_counter() - t0}
            rows.append(row)
            print(f"beta {beta:<5g} fall reset {'on ' if reset else 'off'}: flipped "
                  f"{row['flipped_share']:6.1%}, mean uprightness {upright_mean:+.2f}, "
                  f"{row['transitions']} transitions in {row['trajectories']} trajectories "
                  f"(mean {row['mean_length_s']:.1f} s), {row['fall_resets']} fall resets, "
                  f"{row['dropped_short']} short dropped"
                  + (f", first fall after {row['seconds_to_fall']:.1f} s (mean, capped)"
                     if reset is None else "")
                  + f" [{row['wall_s']:.0f} s]", flush=True)
    print(json.dumps({"family": family.name, "trajectories": args.trajectories,
                      "steps": steps, "fall_steps": rule.steps(robot), "rows": rows}))


if __name__ == "__main__":
    main()
