"""``adapt export``: a trained checkpoint to ONNX graphs, with parity checks against torch."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export", help="export a trained checkpoint to ONNX (dynamics, adaptation, controller)",
        description="Write dynamics.onnx, adapt_step.onnx (GrBAL, MB+DE) or encode.onnx "
                    "(ReBAL), controller.onnx and manifest.json, then check ONNX Runtime "
                    "against torch on random inputs and on a simulated trajectory.")
    e.add_argument("checkpoint", help="a checkpoint.pt (or the run folder holding it); "
                                      "RUN+RUN2+...: the learners of several runs as one "
                                      "ensemble, with RUN's planner")
    e.add_argument("--out", required=True, help="folder to write the ONNX files into")
    e.add_argument("--planner", default=None,
                   help="planner baked into controller.onnx, by its registered name "
                        "(default: the training config's; an unknown name is refused with "
                        "the registered ones listed)")
    e.add_argument("--candidates", type=int, default=None, help="candidate sequences N")
    e.add_argument("--horizon", type=int, default=None, help="planning horizon H")
    e.add_argument("--set", dest="planner_set", action="append", default=[],
                   metavar="FIELD=VALUE",
                   help="another planner config field, e.g. --set warm_start=true "
                        "--set num_iterations=3 (repeatable)")
    e.add_argument("--deploy-preset", action="store_true",
                   help="bake in the planner measured to fit the robot's control rate on one "
                        "core in this --precision (export/presets.py, docs/export.md); "
                        "--candidates / --horizon still override it")
    e.add_argument("--precision", choices=("fp32", "int8", "bf16"), default="fp32",
                   help="arithmetic of the dynamics weights on the planning path: fp32; int8 "
                        "(quantised per column, activations per call: faster on CPUs with "
                        "VNNI); bf16 (weights rounded to bfloat16, float32 arithmetic: "
                        "ONNX Runtime's CPU provider has no bfloat16 kernels). The "
                        "adaptation step stays fp32; the manifest records the error against "
                        "fp32")
    e.add_argument("--verify-steps", type=int, default=40,
                   help="simulated steps of the torch controller to check parity on (0: none)")
    e.add_argument("--no-verify", action="store_true", help="skip the parity checks")
    e.add_argument("--seed", type=int, default=0, help="seed of the parity inputs")
    e.add_argument("--force", action="store_true", help="overwrite an existing export")
    e.set_defaults(func=cmd_export, interrupted=interrupted_export)


def interrupted_export(args: argparse.Namespace) -> str:
    """What an interrupted export (`adapt export`, `adapt export-policy`) left in ``--out``."""
    return f"nothing written ({args.out} is as it was: an export is moved into place when complete)"



def cmd_export(args: argparse.Namespace) -> int:
    from adaptive_control.config_loader import parse_override
    from export.exporter import export_checkpoint

    for name in ("candidates", "horizon"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name}={v}: allowed an integer >= 1")
    if args.verify_steps < 0:
        raise ValueError(f"--verify-steps={args.verify_steps}: allowed >= 0")
    t0 = time.perf_counter()
    result = export_checkpoint(
        args.checkpoint, args.out, planner=args.planner, num_candidates=args.candidates,
        horizon=args.horizon, deploy_preset=args.deploy_preset,
        planner_overrides={".".join(k): v for k, v in map(parse_override, args.planner_set)},
        verify=not args.no_verify, record_steps=args.verify_steps, seed=args.seed,
        overwrite=args.force, log=lambda s: print(s, flush=True), precision=args.precision)
    print_export({role: g.path for role, g in result.graphs.items()}, result.parity,
                 result.out_dir, time.perf_counter() - t0)
    if args.deploy_preset:
        p = result.manifest["planner"]
        print(f"deploy preset in {args.precision}: {p['name']} {p['num_candidates']} x "
              f"{p['horizon']} ({result.manifest['deploy_preset']})")
    for role, err in result.manifest["precision"].get("error_vs_fp32", {}).items():
        print(f"  {args.precision} vs fp32, {role}: "
              + ", ".join(f"{k} {v:.3g}" for k, v in err.items()))
    lat = result.latency
    if lat is not None:
        print(f"controller step on this machine (1 thread): p50 {lat['p50_ms']:.2f} ms, p99 "
              f"{lat['p99_ms']:.2f} ms; deadline {lat['deadline_ms']:.2f} ms")
        if lat["p99_ms"] > lat["deadline_ms"]:
            print(f"warning: the controller's p99 step ({lat['p99_ms']:.2f} ms) exceeds the "
                  f"deadline at its control rate ({lat['deadline_ms']:.2f} ms, 90 % of the "
                  "period) on this machine: deploy would miss deadlines; choose fewer "
                  "candidates, a shorter horizon"
                  + (" or --precision int8" if args.precision != "int8" else ""),
                  file=sys.stderr)
    if args.precision != "fp32" and result.parity:
        print(f"(parity with torch was checked on the fp32 graphs before the {args.precision} "
              "conversion)")
    return 0


def print_export(files: Mapping[str, Path], parity: Mapping[str, Mapping[str, float]],
                 out_dir: Path, seconds: float) -> None:
    """What an export wrote and how far each graph is from torch (controllers and policies)."""
    from export.parity import PARITY_TOL, max_parity_error

    for role, path in files.items():
        figures = ", ".join(f"{k} {v:.2g}" for k, v in parity.get(role, {}).items())
        print(f"  {path}  max abs error vs torch: {figures or 'not checked'}")
    if parity:
        print(f"parity: max abs error {max_parity_error(parity):.2g} (tolerance {PARITY_TOL:g})")
    print(f"wrote {out_dir} in {seconds:.0f} s")


