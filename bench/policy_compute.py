"""Per-step compute of distilled policies against their adaptive-MPC teacher, in one process.

Steps the teacher (adapt + plan, torch) and each policy (torch, and ONNX Runtime through the
deploy runtime's ``PolicySession``) along the same held-out episode, one thread each, and
reports the median time per step and the ratio teacher / policy (issue #6 asks for a policy at
≤ 1/50 of its teacher's per-step compute). The teacher plans with the labelling planner the
first distilled policy was trained with (``distill.teacher_*``).

    python bench/policy_compute.py --teacher T.pt --policy RUN [--policy RUN ...] [--steps N]

Prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adaptive_control.checkpoint import load_checkpoint  # noqa: E402
from adaptive_control.runs import checkpoint_path  # noqa: E402
from policies.config import policy_config_from_json  # noqa: E402
from policies.evaluate import policy_controller, teacher_controller  # noqa: E402
from sims.env import AdaptEnv  # noqa: E402
from sims.episode import run_episode  # noqa: E402
from sims.registry import get_family  # noqa: E402


def time_steps(step, observations: list[np.ndarray], warmup: int = 20) -> float:
    """Median seconds per call of ``step(obs)`` over ``observations`` (after a warm-up)."""
    for obs in observations[:warmup]:
        step(obs)
    times = []
    for obs in observations:
        t0 = time.perf_counter()
        step(obs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", required=True, help="an `adapt train` checkpoint")
    ap.add_argument("--policy", action="append", required=True,
                    help="a policy run folder or checkpoint distilled from it (repeatable)")
    ap.add_argument("--steps", type=int, default=300, help="steps timed per method")
    args = ap.parse_args()
    if args.steps < 1:
        raise SystemExit(f"--steps={args.steps}: allowed >= 1")
    torch.set_num_threads(1)
    ckpts = [load_checkpoint(checkpoint_path(p)) for p in args.policy]
    cfgs = [policy_config_from_json(c["config"]) for c in ckpts]
    family = get_family(cfgs[0].family)
    teacher = teacher_controller(args.teacher, distill=cfgs[0].distill)

    # One held-out episode driven by the teacher: every method is timed on its observations.
    rng = np.random.default_rng(0)
    env = AdaptEnv(family.robot, family.test_conditions[0], episode_steps=args.steps, seed=rng)
    observations = list(run_episode(env, teacher).observations[:-1])
    teacher.reset()
    rows = {"teacher (torch)": time_steps(teacher, observations)}

    from export.policy import export_policy
    from export.runtime.policy import PolicySession

    with tempfile.TemporaryDirectory() as tmp:
        for path, ckpt, cfg in zip(args.policy, ckpts, cfgs, strict=True):
            name = f"{cfg.net.arch} {Path(path).name}"
            ctrl = policy_controller(ckpt)
            rows[f"{name} (torch)"] = time_steps(ctrl, observations)
            folder = export_policy(ckpt, Path(tmp) / name.replace(" ", "_"), verify=False).out_dir
            session = PolicySession(folder, robot=family.robot.name)
            session.warm_up()
            rows[f"{name} (ONNX Runtime)"] = time_steps(session.step, observations)
            session.close()

    base = rows["teacher (torch)"]
    print(f"{family.name}, held-out {family.test_conditions[0].label}, {args.steps} steps, "
          f"1 thread; teacher planner {type(teacher.planner).__name__} "
          f"{teacher.planner.config.num_candidates} candidates")
    print(f"{'method':<40} {'median ms/step':>15} {'teacher / this':>15}")
    for name, sec in rows.items():
        print(f"{name:<40} {1e3 * sec:15.3f} {base / sec:15.1f}")
    print(json.dumps({"family": family.name, "ms_per_step": {k: 1e3 * v for k, v in rows.items()},
                      "teacher_over_policy": {k: base / v for k, v in rows.items()
                                              if not k.startswith("teacher")}}))


if __name__ == "__main__":
    main()
