"""Which planner fits the control rate? For each precision, every MPPI size of a grid is timed
as an exported controller (one thread, p99 of the step) against the deadline (90 % of the
period) with headroom (``--headroom``: the p99 within 70 % of it, since the same machine runs
10-20 % slower at other moments); the largest-work sizes that fit are then scored on the
held-out episodes of trained runs (exported controller in ONNX Runtime, normalised with the
oracle and random returns of the runs' ``adapt eval`` reports). The best mean score per
precision is the deploy preset.

    python research/deploy_presets.py --run RUN_0 --report EVAL_0 ... [--precisions fp32,int8]
        [--keep 3] [--steps 1000] [--out presets.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _helpers import ci, onnx_episode, reference_returns, write_result

from adaptive_control.builders import learner_from_checkpoint
from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.runs import checkpoint_path
from export.exporter import export_checkpoint, export_controller, export_planner, step_latency
from sims.conditions import Schedule, parse_condition
from sims.registry import get_family

GRID_N = (64, 96, 128, 192, 256)
GRID_H = (10, 15, 20, 30)
SCENARIO = "fixed:disabled(bthigh)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--report", action="append", required=True)
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--keep", type=int, default=3, help="fitting sizes scored per precision")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing per size")
    ap.add_argument("--headroom", type=float, default=0.7,
                    help="a size fits when its p99 is within this share of the deadline (the "
                         "same machine runs 10-20 %% slower at other moments)")
    ap.add_argument("--timing-only", action="store_true", help="time the grid, score nothing")
    ap.add_argument("--score", default=None, metavar="P:NxH,...",
                    help="skip the timing and score these sizes, e.g. fp32:96x30,int8:128x30")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    learner, cfg = learner_from_checkpoint(load_checkpoint(checkpoint_path(args.run[0])))
    robot = get_family(cfg.family).robot
    deadline = 0.9e3 * robot.control_timestep
    timing, scored = [], []
    with tempfile.TemporaryDirectory() as tmp:
        chosen: dict[str, list[dict]] = {}
        if args.score:
            for item in args.score.split(","):
                p, size = item.split(":")
                n, h = (int(v) for v in size.split("x"))
                chosen.setdefault(p, []).append({"precision": p, "candidates": n, "horizon": h,
                                                 "p50_ms": None, "p99_ms": None})
        for p in ([] if args.score else args.precisions.split(",")):
            fits = []
            for n in GRID_N:
                for h in GRID_H:
                    spec = export_planner(cfg.planner, "mppi", n, h)
                    path = Path(tmp) / f"{p}-{n}-{h}.onnx"
                    export_controller(learner, cfg, path, spec, precision=p)
                    lat = step_latency(path, args.seconds)
                    row = {"precision": p, "candidates": n, "horizon": h, **lat,
                           "fits": lat["p99_ms"] <= args.headroom * deadline}
                    timing.append(row)
                    print(f"{p:5s} N={n:4d} H={h:3d}  p50 {lat['p50_ms']:6.2f}  p99 "
                          f"{lat['p99_ms']:6.2f} ms  {'fits' if row['fits'] else 'over'} "
                          f"{args.headroom:g} x {deadline:.1f} ms", flush=True)
                    if row["fits"]:
                        fits.append(row)
            if not args.timing_only:
                chosen[p] = sorted(fits, key=lambda r: -r["candidates"] * r["horizon"])[
                    :args.keep]
        for p, rows in chosen.items():
            for row in rows:
                per_run = []
                for run, report in zip(args.run, args.report, strict=True):
                    out = Path(tmp) / f"x-{p}-{row['candidates']}-{row['horizon']}"
                    export_checkpoint(run, out, planner="mppi", num_candidates=row["candidates"],
                                      horizon=row["horizon"], precision=p, verify=False,
                                      record_steps=8, latency_seconds=0, overwrite=True)
                    t0 = time.perf_counter()
                    schedule = Schedule.fixed(parse_condition("disabled:bthigh", robot))
                    ep = onnx_episode(out, schedule, args.steps, args.seed)
                    floor, top = reference_returns(report, SCENARIO, args.seed)
                    per_run.append({"run": run, **ep,
                                    "score": (ep["return"] - floor) / (top - floor),
                                    "seconds": time.perf_counter() - t0})
                summary = {k: ci([r[k] for r in per_run]) for k in ("score", "speed", "flipped")}
                scored.append({**{k: row[k] for k in ("precision", "candidates", "horizon",
                                                      "p50_ms", "p99_ms")},
                               **summary, "runs": per_run})
                print(f"{p:5s} N={row['candidates']:4d} H={row['horizon']:3d}  score "
                      f"{summary['score']['mean']:.3f} ± "
                      f"{summary['score']['ci95']:.3f}  speed {summary['speed']['mean']:.2f} "
                      f"m/s  flipped {summary['flipped']['mean']:.0%}", flush=True)
    best = {}
    for p in args.precisions.split(","):
        cands = [s for s in scored if s["precision"] == p]
        if cands:
            b = max(cands, key=lambda s: s["score"]["mean"])
            best[p] = {k: b[k] for k in ("candidates", "horizon", "p50_ms", "p99_ms", "score",
                                          "speed", "flipped")}
    write_result(args.out, {"robot": robot.name, "family": cfg.family, "deadline_ms": deadline,
                            "scenario": SCENARIO, "steps": args.steps, "timing": timing,
                            "scored": scored, "best": best}, {"best": best})


if __name__ == "__main__":
    main()
