"""Does planning with an ensemble of trained GrBAL models run the cheetah better than each
model alone? Members are checkpoints of independently trained runs (each adapted by its own
gradient step on the same window); every candidate is scored under each member and the
members' predicted returns are averaged (or penalised by their spread, ``--spread-penalty``).

    python research/ensemble_probe.py --runs /work/runs/recipe --members 3 --out DIR

evaluates the 5 rotations {0,1,2}, {1,2,3}, ... of the seeds found under ``--runs`` on healthy,
the held-out dead thigh and the failure at 3 s (20 s, 2 evaluation seeds) and writes
``ensembles.json`` (per rotation: the evaluation summary rows).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from adaptive_control.evaluation.episodes import (
    Actor,
    MethodSpec,
    PlannerSizes,
    evaluate,
    scenarios_for,
)
from adaptive_control.evaluation.report import aggregate
from sims.episode import episode_steps_of
from sims.registry import get_family


@dataclass(frozen=True)
class EnsembleMethod:
    """Members rebuilt from ``checkpoints``, planned with the first one's planner config."""

    checkpoints: tuple[str, ...]
    spread_penalty: float = 0.0

    def __call__(self, family, seed: int, planner: PlannerSizes) -> Actor:
        from dataclasses import replace

        import torch

        from adaptive_control.builders import build_controller, learner_from_checkpoint
        from adaptive_control.checkpoint import load_checkpoint
        from adaptive_control.learners.ensemble import Ensemble
        from adaptive_control.planning import objective

        loaded = [learner_from_checkpoint(load_checkpoint(c, robot=family.robot.name))
                  for c in self.checkpoints]
        learner = Ensemble([lr for lr, _ in loaded])
        cfg = loaded[0][1]
        cfg = replace(cfg, planner=planner.apply(cfg.planner))
        ctrl = build_controller(learner, cfg, family, seed=seed)
        if self.spread_penalty:
            plan = ctrl.planner.plan
            k = self.spread_penalty

            def plan_penalised(obs, predictor, reward_fn, generator):
                from adaptive_control.planning.planners import make_objective

                obj = make_objective(ctrl.planner.config, predictor, reward_fn,
                                     obs, aggregate=objective.mean_minus_std(k))
                return ctrl.planner.plan_objective(obj, generator)

            ctrl.planner.plan = plan_penalised  # type: ignore[method-assign]
            del plan
        torch.manual_seed(seed)
        # No model: the prediction-error trace rolls one row, an ensemble needs M.
        return Actor(ctrl)

    def describe(self) -> dict[str, str]:
        return {"kind": "ensemble", "checkpoint": ",".join(self.checkpoints),
                "learner": "grbal-ensemble"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="folder holding seed=K run folders")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--family", default="cheetah-cripple@5")
    ap.add_argument("--scenarios", default="healthy,fixed,switch")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--spread-penalty", type=float, default=0.0)
    ap.add_argument("--rotations", default="", help="comma list of first seeds (default all)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    runs = sorted(Path(args.runs).glob("seed=*"), key=lambda p: int(p.name.split("=")[1]))
    family = get_family(args.family)
    scenarios = scenarios_for(family, args.scenarios.split(","))
    steps = episode_steps_of(args.duration, family.robot.control_timestep)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ensembles.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    firsts = ([int(s) for s in args.rotations.split(",")] if args.rotations
              else range(len(runs)))
    for first in firsts:
        members = [runs[(first + i) % len(runs)] for i in range(args.members)]
        key = "+".join(p.name.split("=")[1] for p in members)
        if key in results:
            continue
        spec = MethodSpec(f"ens{key}", EnsembleMethod(
            tuple(str(p / "checkpoint.pt") for p in members), args.spread_penalty))
        eps = evaluate([spec], family, scenarios, list(range(args.seeds)), steps, workers=1)
        rows = aggregate(eps)
        results[key] = {"rows": rows, "episodes": [
            {"scenario": e.scenario, "seed": e.seed, "speed": e.mean_speed, "ret": e.ret,
             "flipped": e.flipped, "tilted": e.tilted, "recovery_s": e.recovery_s,
             "latency_ms_p50": e.latency_ms_p50} for e in eps]}
        path.write_text(json.dumps(results, indent=1))
        for e in eps:
            print(key, e.scenario, e.seed, f"{e.mean_speed:.2f} m/s", f"flip {e.flipped:.3f}",
                  f"tilt {e.tilted:.3f}", f"{e.latency_ms_p50:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
