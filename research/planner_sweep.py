"""Which planner? Each candidate planner with the true simulator (the oracle) and, given a run,
with that run's learned model: mean speed, flipped share and milliseconds per step, on the
same seeds and scenarios (``adapt eval``'s episodes).

    python research/planner_sweep.py --family cheetah-cripple --scenarios healthy,fixed \
        --seeds 2 --steps 500 [--run RUN] [--planners mppi256_h30,cem64_h10] --out sweep.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from adaptive_control.evaluation.episodes import (
    Actor,
    MethodSpec,
    PlannerSizes,
    evaluate,
    scenarios_for,
)
from adaptive_control.evaluation.oracle import OracleController
from adaptive_control.planning import make_planner, planner_config
from sims.families import TaskFamily
from sims.registry import get_family
from sims.rewards import task_reward

#: name -> (planner, settings)
PLANNERS: dict[str, tuple[str, dict]] = {
    "rs500_h10": ("random_shooting", {"num_candidates": 500, "horizon": 10}),
    "cem64_h10": ("cem", {"num_candidates": 64, "horizon": 10, "num_iterations": 4}),
    "cem64_h10_cold": ("cem", {"num_candidates": 64, "horizon": 10, "num_iterations": 4,
                               "warm_start": False}),
    "icem64_h30_hold3": ("cem", {"num_candidates": 64, "horizon": 30, "num_iterations": 4,
                                 "beta": 0.5, "hold": 3}),
    "mppi128_h30": ("mppi", {"num_candidates": 128, "horizon": 30}),
    "mppi256_h20": ("mppi", {"num_candidates": 256, "horizon": 20}),
    "mppi256_h30": ("mppi", {"num_candidates": 256, "horizon": 30}),
    "mppi256_h30_hold3": ("mppi", {"num_candidates": 256, "horizon": 30, "hold": 3}),
    "mppi256_h45_hold3": ("mppi", {"num_candidates": 256, "horizon": 45, "hold": 3}),
    "mppi256_h30_d95": ("mppi", {"num_candidates": 256, "horizon": 30, "discount": 0.95}),
    "mppi256_h30_s03": ("mppi", {"num_candidates": 256, "horizon": 30, "noise_sigma": 0.3}),
    "mppi256_h15": ("mppi", {"num_candidates": 256, "horizon": 15}),
}


def planner_family(family: TaskFamily, tilt_threshold: float | None) -> TaskFamily:
    """``family`` whose robot's reward (the planner's objective) tips at ``tilt_threshold``."""
    if tilt_threshold is None:
        return family
    return replace(family, robot=replace(family.robot, tilt_threshold=tilt_threshold))


@dataclass(frozen=True)
class OraclePlanner:
    name: str
    tilt_threshold: float | None = None

    def __call__(self, family: TaskFamily, seed: int, sizes: PlannerSizes) -> Actor:
        family = planner_family(family, self.tilt_threshold)
        kind, settings = PLANNERS[self.name]
        lo, hi = family.robot.action_bounds
        plan = make_planner(planner_config(kind, **settings), torch.tensor(lo, dtype=torch.float32),
                            torch.tensor(hi, dtype=torch.float32))
        return Actor(OracleController(family.robot, plan, task_reward(family.robot), seed), None,
                     16)

    def describe(self) -> dict[str, str]:
        return {"kind": "oracle", "checkpoint": "", "learner": ""}


@dataclass(frozen=True)
class LearnedPlanner:
    name: str
    checkpoint: str
    tilt_threshold: float | None = None

    def __call__(self, family: TaskFamily, seed: int, sizes: PlannerSizes) -> Actor:
        from adaptive_control.builders import build_controller, learner_from_checkpoint
        from adaptive_control.checkpoint import load_checkpoint

        kind, settings = PLANNERS[self.name]
        learner, cfg = learner_from_checkpoint(load_checkpoint(self.checkpoint))
        cfg = replace(cfg, planner=planner_config(kind, **settings))
        torch.manual_seed(seed)
        ctrl = build_controller(learner, cfg, planner_family(family, self.tilt_threshold),
                                seed=seed)
        return Actor(ctrl, learner, cfg.m)

    def describe(self) -> dict[str, str]:
        return {"kind": "learner", "checkpoint": self.checkpoint, "learner": ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="cheetah-cripple")
    ap.add_argument("--scenarios", default="healthy,fixed")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--run", default=None, help="a run folder: also plan with its model")
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--planners", default=",".join(PLANNERS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tilt-threshold", type=float, default=None,
                    help="the planner's tilt threshold (the episode's reward keeps the robot's)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    family = get_family(args.family)
    names = args.planners.split(",")
    tt = args.tilt_threshold
    methods = [] if args.no_oracle else [MethodSpec(f"oracle:{n}", OraclePlanner(n, tt))
                                         for n in names]
    if args.run:
        ckpt = str(Path(args.run) / "checkpoint.pt")
        methods += [MethodSpec(f"learned:{n}", LearnedPlanner(n, ckpt, tt)) for n in names]
    scenarios = scenarios_for(family, args.scenarios.split(","))
    eps = evaluate(methods, family, scenarios, list(range(args.seeds)), args.steps, args.workers,
                   progress=False)
    rows = {}
    for e in eps:
        r = rows.setdefault((e.method, e.scenario), {"speed": [], "flipped": [], "tilted": [],
                                                     "ms": [], "ret": []})
        r["speed"].append(e.mean_speed)
        r["flipped"].append(e.flipped)
        r["tilted"].append(e.tilted)
        r["ms"].append(e.latency_ms_p50)
        r["ret"].append(e.ret)
    out = []
    for (method, scenario), r in sorted(rows.items()):
        row = {"method": method, "scenario": scenario,
               **{k: float(np.mean(v)) for k, v in r.items()}, "n": len(r["speed"])}
        out.append(row)
        print(f"{method:28s} {scenario:28s} {row['speed']:6.2f} m/s  flipped "
              f"{100 * row['flipped']:5.1f} %  tilted {100 * row['tilted']:5.1f} %  "
              f"{row['ms']:7.1f} ms  return {row['ret']:8.1f}", flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({"rows": len(out)}))


if __name__ == "__main__":
    main()
