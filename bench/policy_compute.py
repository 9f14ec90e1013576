"""Per-step compute of distilled policies against their teacher, in one process.

Drives one held-out episode with the teacher (the first policy's, as it labelled: the
privileged oracle or an adaptive MPC, deciding every K control steps; or ``--teacher``, an
`adapt train` checkpoint planning with the labelling planner), then steps each policy (torch,
and ONNX Runtime through the deploy runtime's ``PolicySession``) along the same observations,
one thread each. Reports the teacher's median time per decision and its compute per control
step (a decision's time over the K steps it lasts), each policy's median time per step, and
the ratio teacher per control step / policy (a policy should cost ≤ 1/50 of its teacher).

    python bench/policy_compute.py --policy RUN [--policy RUN ...] [--teacher T.pt] [--steps N]

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
from policies.teachers import HeldDecisions, make_teachers  # noqa: E402
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
    ap.add_argument("--teacher", default=None,
                    help="an `adapt train` checkpoint (default: the first policy's own teacher)")
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
    if args.teacher:
        teacher = HeldDecisions(teacher_controller(args.teacher, distill=cfgs[0].distill), 1)
    else:
        (teacher,) = make_teachers(family, cfgs[0].distill, [0])

    # One held-out episode driven by the teacher: every policy is timed on its observations.
    rng = np.random.default_rng(0)
    env = AdaptEnv(family.robot, family.test_conditions[0], episode_steps=args.steps, seed=rng)
    teacher.bind_env(env)
    observations = list(run_episode(env, teacher).observations[:-1])
    decision = statistics.median(teacher.latencies)
    rows = {"teacher (torch)": decision / teacher.k}

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
    planner = teacher.teacher.planner
    print(f"{family.name}, held-out {family.test_conditions[0].label}, {args.steps} steps, "
          f"1 thread; teacher {cfgs[0].distill.teacher if not args.teacher else args.teacher}: "
          f"{type(planner).__name__} {planner.config.num_candidates} candidates x "
          f"{planner.config.horizon} steps, a decision every {teacher.k} control steps, "
          f"{1e3 * decision:.1f} ms a decision (the teacher's row: per control step)")
    print(f"{'method':<40} {'median ms/step':>15} {'teacher / this':>15}")
    for name, sec in rows.items():
        print(f"{name:<40} {1e3 * sec:15.3f} {base / sec:15.1f}")
    print(json.dumps({"family": family.name, "teacher_ms_per_decision": 1e3 * decision,
                      "teacher_decision_steps": teacher.k,
                      "ms_per_step": {k: 1e3 * v for k, v in rows.items()},
                      "teacher_over_policy": {k: base / v for k, v in rows.items()
                                              if not k.startswith("teacher")}}))


if __name__ == "__main__":
    main()
