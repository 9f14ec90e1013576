"""`adapt eval` serially against a local Ray with 1 and with 2 workers, in one process.

The same evaluation (random, tiny GrBAL and tiny MB × fixed and switch × 4 seeds, short
episodes; the checkpoints trained here with the ``tiny`` preset) runs serially in this process
(``workers=1``), then as one Ray task per episode on a local Ray of 1 and of 2 CPUs. Checks the
three give the same episodes (every field but latencies), and prints the speed-ups over the
serial run, the Ray overhead per task ((wall on 1 Ray CPU - serial wall) / tasks) and the cost
of a no-op task. Ray walls are given cold (the first run starts the worker processes, which
import torch and MuJoCo) and warm (the same evaluation again on those workers); starting Ray
itself is timed apart.

    python bench/scale_out.py [--steps 200] [--seeds 4]

Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sims  # noqa: E402, F401  (headless rendering backend before mujoco loads)
from adaptive_control.distributed import connect, ray_map  # noqa: E402
from adaptive_control.evaluation.episodes import (  # noqa: E402
    LearnerMethod,
    MethodSpec,
    RandomMethod,
    evaluate,
    scenarios_for,
)
from adaptive_control.runs import checkpoint_path  # noqa: E402
from adaptive_control.training import loop as training  # noqa: E402
from adaptive_control.training.config import load_config  # noqa: E402
from sims.registry import get_family  # noqa: E402

FAMILY = "cheetah-cripple"
NOOP_TASKS = 200


def _noop(x: int) -> int:
    return x


def _comparable(episodes: list) -> str:
    return json.dumps([{k: v for k, v in asdict(e).items() if not k.startswith("latency")}
                       for e in episodes], sort_keys=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="steps per episode")
    ap.add_argument("--seeds", type=int, default=4, help="seeds per method and scenario")
    args = ap.parse_args()
    if args.steps < 60 or args.seeds < 1:
        raise SystemExit(f"--steps={args.steps}, --seeds={args.seeds}: allowed steps >= 60 "
                         "(the switch is at 0.3 s), seeds >= 1")
    import ray

    family = get_family(FAMILY)
    scenarios = scenarios_for(family, ["fixed", "switch"], 0.3)
    seeds = list(range(args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        for learner in ("grbal", "mb"):
            training.train(load_config(preset="tiny", overrides=[f"learner='{learner}'"]),
                           Path(tmp) / learner, progress=False)
        methods = [MethodSpec("random", RandomMethod())] + [
            MethodSpec(n, LearnerMethod(str(checkpoint_path(Path(tmp) / n))))
            for n in ("grbal", "mb")]
        tasks = len(methods) * len(scenarios) * len(seeds)

        def run(address: str | None) -> tuple[float, list]:
            t0 = time.perf_counter()
            eps = evaluate(methods, family, scenarios, seeds, args.steps, workers=1,
                           progress=False, ray=address)
            return time.perf_counter() - t0, eps

        walls: dict[str, float] = {}
        walls["serial"], reference = run(None)
        identical = True
        startup, noop_ms = {}, {}
        for cpus in (1, 2):
            t0 = time.perf_counter()
            connect("local", num_cpus=cpus, quiet=True)
            startup[cpus] = time.perf_counter() - t0
            for kind in ("cold", "warm"):
                walls[f"ray{cpus}_{kind}"], eps = run("local")
                identical &= _comparable(eps) == _comparable(reference)
            t0 = time.perf_counter()
            ray_map(_noop, range(NOOP_TASKS), progress=False)
            noop_ms[cpus] = (time.perf_counter() - t0) / NOOP_TASKS * 1e3
            ray.shutdown()

    serial = walls["serial"]
    print(f"{tasks} episodes ({len(methods)} methods x {len(scenarios)} scenarios x "
          f"{len(seeds)} seeds, {args.steps} steps)")
    print(f"{'run':<12} {'wall s':>8} {'speed-up':>9}")
    for name, wall in walls.items():
        print(f"{name:<12} {wall:8.2f} {serial / wall:8.2f}x")
    overhead = {k: (walls[f"ray1_{k}"] - serial) / tasks * 1e3 for k in ("cold", "warm")}
    print(f"Ray start: {startup[1]:.1f} s (1 CPU), {startup[2]:.1f} s (2 CPUs)")
    print(f"Ray overhead per task on 1 CPU: {overhead['cold']:.0f} ms cold, "
          f"{overhead['warm']:.0f} ms warm; a no-op task: {noop_ms[1]:.2f} ms (1 CPU), "
          f"{noop_ms[2]:.2f} ms (2 CPUs)")
    print(f"results identical to the serial run: {identical}")
    print(json.dumps({
        "episodes": tasks, "steps": args.steps,
        "wall_s": {k: round(v, 3) for k, v in walls.items()},
        "speedup": {k: round(serial / v, 3) for k, v in walls.items() if k != "serial"},
        "ray_start_s": {str(k): round(v, 2) for k, v in startup.items()},
        "overhead_ms_per_task": {k: round(v, 1) for k, v in overhead.items()},
        "noop_task_ms": {str(k): round(v, 3) for k, v in noop_ms.items()},
        "identical": identical,
    }))
    if not identical:
        raise SystemExit("Ray results differ from the serial run")


if __name__ == "__main__":
    main()
