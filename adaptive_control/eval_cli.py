"""``adapt eval`` (methods x held-out scenarios x seeds) and ``adapt quickstart``."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="evaluate methods on held-out conditions and switches")
    e.add_argument("--family", required=True, help="task family (see `adapt sims list`)")
    e.add_argument("--method", dest="methods", action="append", required=True,
                   metavar="NAME=CHECKPOINT|random",
                   help="repeatable: grbal=runs/grbal, rebal=runs/rebal, mb=runs/mb, "
                        "mbde=runs/mb (MB weights, online SGD), policy=runs/policy, random")
    e.add_argument("--scenarios", default="fixed,switch",
                   help="comma-separated: fixed (held-out condition all episode), "
                        "switch (healthy, then the held-out condition)")
    e.add_argument("--switch-at", type=float, default=None, help="switch time in seconds")
    e.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    e.add_argument("--episode-steps", type=int, default=1000)
    e.add_argument("--pred-k", type=int, default=10, help="k of the k-step prediction error")
    e.add_argument("--candidates", type=int, default=None, help="override planner candidates")
    e.add_argument("--horizon", type=int, default=None, help="override planner horizon")
    e.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    e.add_argument("--video", action="store_true", help="render MP4s of the first seed")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    e.set_defaults(func=cmd_eval)

    q = sub.add_parser("quickstart", help="meta-train a small GrBAL on cheetah-cripple, compare "
                                          "with MB on the held-out joint, write a report")
    q.add_argument("--out", default="reports/quickstart", help="report folder")
    q.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    q.add_argument("--seeds", type=int, default=2)
    q.add_argument("--episode-steps", type=int, default=500)
    q.add_argument("--preset", default="small", choices=["small", "tiny"],
                   help="meta-training preset (tiny: seconds, for a smoke test)")
    q.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    q.set_defaults(func=cmd_quickstart)


def _prepare_out(out: str, overwrite: bool) -> Path:
    path = Path(out)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(f"--out={out!r} exists and is not empty: pass --overwrite to "
                                  "replace it or choose another folder")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cmd_eval(args: argparse.Namespace) -> int:
    from adaptive_control.evaluation import (
        default_workers,
        evaluate,
        parse_method,
        scenarios_for,
    )
    from adaptive_control.report import write_report
    from sims.families import get_family

    # Everything is checked before any work starts.
    family = get_family(args.family)
    methods = [parse_method(m) for m in args.methods]
    _check_methods(methods, family)
    scenarios = scenarios_for(family, [s.strip() for s in args.scenarios.split(",")],
                              args.switch_at)
    if args.seeds < 1:
        raise ValueError(f"--seeds={args.seeds}: must be >= 1")
    if args.episode_steps < 2:
        raise ValueError(f"--episode-steps={args.episode_steps}: must be >= 2")
    duration = args.episode_steps * family.robot.control_timestep
    for sc in scenarios:
        if sc.switch_time_s is not None and not 0 < sc.switch_time_s < duration:
            raise ValueError(f"--switch-at={sc.switch_time_s:g} s must fall inside the episode "
                             f"(0, {duration:g}) s; lengthen --episode-steps or move the switch")
    overrides = {k: v for k, v in (("num_candidates", args.candidates),
                                   ("horizon", args.horizon)) if v is not None}
    out = _prepare_out(args.out, args.overwrite)
    seeds = list(range(args.seeds))
    episodes = evaluate(methods, family, scenarios, seeds, args.episode_steps,
                        args.workers or default_workers(), args.pred_k, overrides,
                        video_episodes=1 if args.video else 0)
    meta = _meta(family, methods, scenarios, seeds, args.episode_steps, args.pred_k)
    files = write_report(out, episodes, meta, family.robot.control_timestep, video=args.video,
                         robot=family.robot.name)
    print((out / "summary.md").read_text().split("\n\n![")[0])
    print("\n" + "\n".join(f"  {p}" for p in files.values()))
    return 0


def _meta(family, methods, scenarios, seeds, episode_steps, pred_k) -> dict:
    return {
        "family": family.name, "robot": family.robot.name,
        "methods": [m.__dict__ for m in methods], "scenarios": [s.name for s in scenarios],
        "schedules": {s.name: [[t, c.to_dict()] for t, c in s.schedule.segments]
                      for s in scenarios},
        "seeds": seeds, "episode_steps": episode_steps, "pred_k": pred_k,
    }


def _check_methods(methods, family) -> None:
    """Refuse checkpoints of another robot (or unreadable ones) before any work."""
    from adaptive_control.checkpoint import load_checkpoint

    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    for m in methods:
        if m.kind == "learner":
            ckpt = load_checkpoint(m.checkpoint, robot=family.robot.name)
            if m.learner == "mbde" and ckpt.get("learner_name") != "mb":
                raise ValueError(f"mbde={m.checkpoint}: MB+DE needs an MB checkpoint, this one "
                                 f"holds {ckpt.get('learner_name')!r}")
        elif m.kind == "policy":
            ckpt = load_checkpoint(m.checkpoint)
            if ckpt.get("robot") not in (None, family.robot.name):
                raise ValueError(f"{m.name}={m.checkpoint} is a policy for robot "
                                 f"{ckpt.get('robot')!r}, not {family.robot.name!r}")


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Train small GrBAL and MB on cheetah-cripple, compare them on the held-out back thigh."""
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.config import load_config
    from adaptive_control.evaluation import MethodSpec, default_workers, evaluate, scenarios_for
    from adaptive_control.model_eval import heldout_data, prediction_errors, reference_scale
    from adaptive_control.report import write_report
    from adaptive_control.training import learner_from_checkpoint, train
    from sims.families import get_family

    if args.seeds < 1 or args.episode_steps <= 300:
        raise ValueError(f"--seeds={args.seeds}, --episode-steps={args.episode_steps}: need "
                         "seeds >= 1 and more than 300 steps (the switch is at 3 s)")
    t0 = time.perf_counter()
    out = _prepare_out(args.out, args.overwrite)
    family = get_family("cheetah-cripple")
    runs = {}
    for learner in ("grbal", "mb"):
        cfg = load_config(preset=args.preset, overrides=[f"learner='{learner}'"])
        print(f"\n== meta-training {learner} ({args.preset} preset) ==", flush=True)
        runs[learner] = train(cfg, out / "runs" / learner)

    print("\n== prediction error on the held-out back thigh ==", flush=True)
    data = heldout_data(family, "test", 3, 300 if args.preset == "small" else 60, seed=1234)
    scale = reference_scale(family)
    model_rows = {}
    for name, path in runs.items():
        learner, cfg = learner_from_checkpoint(load_checkpoint(path))
        prior = prediction_errors(learner, data, cfg.m, (1, 10), 5, False, scale)
        adapted = prediction_errors(learner, data, cfg.m, (1, 10), 5, True, scale)
        model_rows[name] = (prior, adapted)

    print("\n== control on the held-out back thigh ==", flush=True)
    methods = [MethodSpec("grbal", "learner", str(runs["grbal"])),
               MethodSpec("mb", "learner", str(runs["mb"])),
               MethodSpec("random", "random")]
    scenarios = scenarios_for(family, ["fixed", "switch"])
    seeds = list(range(args.seeds))
    episodes = evaluate(methods, family, scenarios, seeds, args.episode_steps,
                        args.workers or default_workers(), video_episodes=1)
    meta = _meta(family, methods, scenarios, seeds, args.episode_steps, 10)
    write_report(out, episodes, meta, family.robot.control_timestep, video=True,
                 robot=family.robot.name)
    lines = ["", "## Model prediction error on held-out data (MSE, training-data std units)", "",
             "| model | 1-step prior | 1-step adapted | 10-step prior | 10-step adapted |",
             "|---|---|---|---|---|"]
    for name, (p, a) in model_rows.items():
        lines.append(f"| {name} | {p[1].mean:.4f} | {a[1].mean:.4f} | {p[10].mean:.4f} | "
                     f"{a[10].mean:.4f} |")
    with open(out / "summary.md", "a") as f:
        f.write("\n".join(lines) + "\n")
    export_line = _quickstart_export(runs["grbal"], out,
                                     steps=500 if args.preset == "small" else 50)
    elapsed = time.perf_counter() - t0
    print("\n" + "=" * 78)
    print(f"adapt quickstart: done in {elapsed / 60:.1f} min; report in {out}/")
    print((out / "summary.md").read_text().split("\n\n![")[0].split("\n", 2)[2])
    print("\n".join(lines[1:]))
    if export_line:
        print(export_line)
    print(f"plots: {out}/return_by_method.png, speed_over_time.png, pred_error_over_time.png")
    print("=" * 78)
    return 0


def _quickstart_export(checkpoint: Path, out: Path, steps: int) -> str:
    """Export the controller and run it through ONNX Runtime, when the export layer exists."""
    try:
        from export.quickstart import export_and_check
    except ImportError:
        return ""
    return export_and_check(checkpoint, out / "export", steps=steps)
