"""Simulation throughput: batched ``mujoco.rollout`` collection vs a plain Python ``mj_step`` loop.

Both sides run the same compiled models (one per condition, drawn from a training family), the
same initial states and the same random actions, and record the observation after every
control step:

- batched: ``sims.collect.rollout_states`` — ``mujoco.rollout`` on native threads, one model
  per trajectory (and, end to end, ``sims.collect.collect_open_loop``, which adds the initial
  states, the labels and the float32 dataset);
- loop: for each condition, ``mj_setState`` then ``mj_step`` in Python, copying ``qpos`` and
  ``qvel`` into preallocated arrays once per control step (the least work that still records
  the observations).

Steps/s count physics steps (``mj_step`` calls); the quadruped holds each control for 2 of
them. The methods run interleaved ``--repeats`` times and the best time of each is reported
(the median ratio too): on a shared machine, background load only ever slows a run down.
The two sides must agree exactly; the maximum absolute difference of the final observations
(and of the whole trajectories) is printed.

On 2 cores the speed-up over the loop is bounded by about 2 x (loop time / 1-thread rollout
time): ``mj_step`` itself dominates both, and the loop's Python overhead per step is small.

Human-readable lines first; the last line is one JSON object. Runs in about 20 s.

    python bench/sim_throughput.py [--robot cheetah|quadruped|all] [--conditions 64]
                                   [--steps 1000] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import mujoco
import numpy as np

from sims.collect import (
    collect_open_loop,
    default_threads,
    initial_states,
    random_actions,
    rollout_states,
)
from sims.registry import get_family, get_robot
from sims.robots import Robot

FAMILY = {"cheetah": "cheetah-cripple", "quadruped": "quadruped-leg-failure"}
TARGET_RATIO = 3.0
_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


def python_loop(robot: Robot, models: list, init: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Observations ``[B, T+1, obs_dim]`` from a plain per-step Python loop."""
    b, t, _ = actions.shape
    sub = robot.n_substeps
    idx = robot.obs_qpos_index
    out = []
    for i in range(b):
        m = models[i]
        d = mujoco.MjData(m)
        mujoco.mj_setState(m, d, init[i], _FULL)
        qpos = np.empty((t + 1, m.nq))
        qvel = np.empty((t + 1, m.nv))
        qpos[0] = d.qpos
        qvel[0] = d.qvel
        ctrl = d.ctrl
        for k in range(t):
            ctrl[:] = actions[i, k]
            for _ in range(sub):
                mujoco.mj_step(m, d)
            qpos[k + 1] = d.qpos
            qvel[k + 1] = d.qvel
        out.append(np.concatenate([qpos[:, idx], qvel], axis=1))
    return np.stack(out)


def _timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def bench_robot(name: str, n_cond: int, steps: int, threads: int, repeats: int,
                seed: int) -> dict:
    robot = get_robot(name)
    family = get_family(FAMILY[name])
    rng = np.random.default_rng(seed)
    conds = family.conditions("train", rng, n=n_cond)
    models = [c.build(robot) for c in conds]
    init = initial_states(robot, models, conds, rng)
    actions = random_actions(robot, n_cond, steps, rng)
    physics_steps = n_cond * steps * robot.n_substeps

    # warm up both paths (thread pool start, caches) on a small slice
    rollout_states(robot, models[:2], init[:2], actions[:2, :10], threads)
    python_loop(robot, models[:1], init[:1], actions[:1, :10])

    # Interleave the methods so that any background load hits them alike.
    times: dict[str, list[float]] = {"batched": [], "batched_1thread": [], "python_loop": []}
    for _ in range(repeats):
        t, (obs_b, div_b) = _timed(lambda: rollout_states(robot, models, init, actions, threads))
        times["batched"].append(t)
        t, (obs_1, _) = _timed(lambda: rollout_states(robot, models, init, actions, 1))
        times["batched_1thread"].append(t)
        t, obs_p = _timed(lambda: python_loop(robot, models, init, actions))
        times["python_loop"].append(t)
    t_collect, ds = _timed(lambda: collect_open_loop(
        robot, conds, steps, np.random.default_rng(seed + 1), actions=actions, nthread=threads,
        progress=False, family=family.name))

    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "robot": name,
        "family": family.name,
        "conditions": n_cond,
        "distinct_conditions": len({c.to_json() for c in conds}),
        "control_steps": steps,
        "n_substeps": robot.n_substeps,
        "physics_steps": physics_steps,
        "batched_seconds": best["batched"],
        "batched_steps_per_s": physics_steps / best["batched"],
        "batched_1thread_steps_per_s": physics_steps / best["batched_1thread"],
        "collect_open_loop_steps_per_s": physics_steps / t_collect,
        "python_loop_seconds": best["python_loop"],
        "python_loop_steps_per_s": physics_steps / best["python_loop"],
        "ratio": best["python_loop"] / best["batched"],
        "ratio_median": med["python_loop"] / med["batched"],
        "ratio_1thread": best["python_loop"] / best["batched_1thread"],
        "thread_scaling": best["batched_1thread"] / best["batched"],
        "final_state_max_abs_diff": float(np.max(np.abs(obs_b[:, -1] - obs_p[:, -1]))),
        "trajectory_max_abs_diff": float(np.max(np.abs(obs_b - obs_p))),
        "threads_vs_1thread_max_abs_diff": float(np.max(np.abs(obs_b - obs_1))),
        "diverged": int(div_b.sum()),
        "dataset_kept": ds.n_trajectories,
        "seconds_all_runs": {k: [round(x, 4) for x in v] for k, v in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--robot", default="all", choices=["all", *FAMILY])
    p.add_argument("--conditions", type=int, default=64, help="trajectories (one per condition)")
    p.add_argument("--steps", type=int, default=1000, help="control steps per trajectory")
    p.add_argument("--threads", type=int, default=None,
                   help=f"rollout threads (default: all cores = {default_threads()})")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed runs per method, interleaved; the best is reported")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for field in ("conditions", "steps", "repeats"):
        if getattr(args, field) < 1:
            p.error(f"--{field}={getattr(args, field)}: must be >= 1")
    threads = args.threads or default_threads()
    if threads < 1:
        p.error(f"--threads={threads}: must be >= 1")
    names = list(FAMILY) if args.robot == "all" else [args.robot]

    print(f"mujoco {mujoco.__version__}, {os.cpu_count()} cores, rollout threads {threads}, "
          f"{args.conditions} conditions x {args.steps} control steps, best of "
          f"{args.repeats}; load average before {os.getloadavg()[0]:.2f}")
    load_before = os.getloadavg()[0]
    results = {}
    for name in names:
        r = bench_robot(name, args.conditions, args.steps, threads, args.repeats, args.seed)
        results[name] = r
        print(f"\n{name} ({r['family']}, {r['distinct_conditions']} distinct conditions, "
              f"{r['physics_steps']:,} physics steps)")
        print(f"  batched rollout, {threads} threads : {r['batched_steps_per_s']:>11,.0f} steps/s")
        print(f"  batched rollout, 1 thread    : {r['batched_1thread_steps_per_s']:>11,.0f} steps/s"
              f"  (thread scaling {r['thread_scaling']:.2f}x)")
        print(f"  collect_open_loop end to end : {r['collect_open_loop_steps_per_s']:>11,.0f} "
              "steps/s")
        print(f"  python mj_step loop          : {r['python_loop_steps_per_s']:>11,.0f} steps/s")
        print(f"  speed-up batched / loop      : {r['ratio']:>11.2f}x  (target >= "
              f"{TARGET_RATIO:g}x: {'met' if r['ratio'] >= TARGET_RATIO else 'NOT met'}; "
              f"median {r['ratio_median']:.2f}x; 1 thread {r['ratio_1thread']:.2f}x)")
        print(f"  final state max |diff|       : {r['final_state_max_abs_diff']:.3g} "
              f"(whole trajectories {r['trajectory_max_abs_diff']:.3g}, "
              f"{threads} vs 1 thread {r['threads_vs_1thread_max_abs_diff']:.3g})")
    summary = {
        "bench": "sim_throughput",
        "mujoco": mujoco.__version__,
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "conditions": args.conditions,
        "steps": args.steps,
        "repeats": args.repeats,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "target_ratio": TARGET_RATIO,
        "meets_target": all(r["ratio"] >= TARGET_RATIO for r in results.values()),
        "identical": all(r["trajectory_max_abs_diff"] == 0.0 for r in results.values()),
        "robots": results,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
