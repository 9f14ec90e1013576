"""Control quality of reduced-precision controllers against fp32 on the same episodes.

For every trained run given: export it in each precision (``adapt export --precision``, same
planner), drive the held-out scenarios with the exported controller in ONNX Runtime (the
torch-free runtime's ``ControllerSession``, its noise seeded like the episode), and normalise
the return with the oracle and random-floor returns of the same episodes taken from an
``adapt eval`` report (one per run, e.g. from ``examples/seed_comparison.sh``). Prints a table
and the paired difference int8 − fp32 over runs (mean and 95 % interval); last line JSON.

    python research/precision_quality.py --run RUN_0 --report EVAL_0 ... \
        [--precisions fp32,int8,bf16] [--steps 1000] [--out quality.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _helpers import ci, onnx_episode, reference_returns, write_result

from export.exporter import export_checkpoint
from sims.conditions import Schedule, parse_condition
from sims.registry import get_robot

SCENARIOS = {  # the eval report's scenario names -> schedule over (robot, seconds)
    "fixed:disabled(bthigh)": lambda r: Schedule.fixed(parse_condition("disabled:bthigh", r)),
    "switch@3s:disabled(bthigh)": lambda r: Schedule.switch(
        parse_condition("healthy", r), parse_condition("disabled:bthigh", r), 3.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="a trained run (repeat)")
    ap.add_argument("--report", action="append", required=True,
                    help="its adapt eval report with oracle and random (same order)")
    ap.add_argument("--precisions", default="fp32,int8,bf16")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="episode seed (as in the report)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    precisions = args.precisions.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (run, report) in enumerate(zip(args.run, args.report, strict=True)):
            for p in precisions:
                out = Path(tmp) / f"{i}-{p}"
                res = export_checkpoint(run, out, precision=p, latency_seconds=2.0)
                robot = get_robot(res.manifest["robot"])
                for scenario, schedule in SCENARIOS.items():
                    t0 = time.perf_counter()
                    ep = onnx_episode(out, schedule(robot), args.steps, args.seed)
                    lo, hi = reference_returns(report, scenario, args.seed)
                    ret = ep["return"]
                    row = {"run": run, "precision": p, "scenario": scenario, "return": ret,
                           "score": (ret - lo) / (hi - lo), "random": lo, "oracle": hi,
                           "speed": ep["speed"], "flipped": ep["flipped"],
                           "step_p50_ms": res.latency["p50_ms"],
                           "step_p99_ms": res.latency["p99_ms"],
                           "error_vs_fp32": res.manifest["precision"].get("error_vs_fp32"),
                           "seconds": time.perf_counter() - t0}
                    rows.append(row)
                    print(f"{run} {p:5s} {scenario:38s} return {ret:9.1f} score "
                          f"{row['score']:6.3f} speed {row['speed']:5.2f} m/s flipped "
                          f"{row['flipped']:.0%}  step p50 {row['step_p50_ms']:.2f} ms",
                          flush=True)
    summary = {}
    for scenario in SCENARIOS:
        for p in precisions:
            sel = [r for r in rows if r["scenario"] == scenario and r["precision"] == p]
            summary[f"{scenario} {p}"] = {k: ci([r[k] for r in sel])
                                          for k in ("score", "speed", "flipped", "step_p50_ms")}
        base = {r["run"]: r for r in rows if r["scenario"] == scenario and r["precision"] == "fp32"}
        for p in precisions:
            if p == "fp32" or not base:
                continue
            sel = [r for r in rows if r["scenario"] == scenario and r["precision"] == p]
            summary[f"{scenario} {p} - fp32"] = {
                k: ci([r[k] - base[r["run"]][k] for r in sel]) for k in ("score", "speed")}
    for k, v in summary.items():
        print(f"{k:55s} " + "  ".join(f"{m} {s['mean']:.3f} ± {s['ci95']:.3f}"
                                      for m, s in v.items()))
    write_result(args.out, {"steps": args.steps, "seed": args.seed, "rows": rows,
                            "summary": summary}, {"summary": summary})


if __name__ == "__main__":
    main()
