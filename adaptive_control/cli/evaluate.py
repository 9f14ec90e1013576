"""``adapt eval`` (methods x held-out scenarios x seeds), ``adapt report`` and
``adapt quickstart``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adaptive_control.evaluation.episodes import MethodSpec
    from sims.families import TaskFamily


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("eval", help="evaluate methods on held-out conditions and switches")
    e.add_argument("--family", required=True, help="task family (see `adapt sims list`)")
    e.add_argument("--method", dest="methods", action="append", required=True,
                   metavar="NAME=CHECKPOINT|random",
                   help="repeatable: grbal=runs/grbal, rebal=runs/rebal, mb=runs/mb, "
                        "mbde=runs/mb (MB weights, online SGD), policy=runs/policy, random, "
                        "oracle=runs/grbal (that planner on the true simulator)")
    e.add_argument("--scenarios", default="fixed,switch",
                   help="comma-separated: fixed (held-out condition all episode), "
                        "switch (healthy, then the held-out condition), healthy (nothing "
                        "broken)")
    e.add_argument("--switch-at", type=float, default=None, help="switch time in seconds")
    e.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    e.add_argument("--episode-steps", type=int, default=1000)
    e.add_argument("--pred-k", type=int, default=10, help="k of the k-step prediction error")
    e.add_argument("--candidates", type=int, default=None, help="override planner candidates")
    e.add_argument("--horizon", type=int, default=None, help="override planner horizon")
    e.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    e.add_argument("--device", default="cpu",
                   help="where learners adapt and plan: cpu, cuda, cuda:N or auto (policies "
                        "and simulation stay on the CPU)")
    e.add_argument("--video", action="store_true", help="render MP4s of the first seed")
    e.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="one Ray task per episode on the cluster at ADDRESS (HOST:PORT, "
                        "ray://HOST:PORT, auto; alone: a local Ray), instead of --workers; "
                        "see docs/scale-out.md")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("report", help="rebuild a report folder's table and plots from its "
                                      "results.json")
    r.add_argument("folder", help="a folder written by `adapt eval` or `adapt quickstart`")
    r.set_defaults(func=cmd_report)

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
    from adaptive_control.devices import resolve_device
    from adaptive_control.evaluation.episodes import (
        PlannerSizes,
        default_workers,
        evaluate,
        scenarios_for,
    )
    from adaptive_control.evaluation.report import report_meta, write_report
    from sims.families import get_family

    # Everything is checked before any work starts.
    family = get_family(args.family)
    device = str(resolve_device(args.device))
    methods = [parse_method(m, device) for m in args.methods]
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
    planner = PlannerSizes(num_candidates=args.candidates, horizon=args.horizon)
    if args.ray is not None:
        from adaptive_control.distributed import check_address

        check_address(args.ray)  # a malformed or silent address: refused before any work
    out = _prepare_out(args.out, args.overwrite)
    seeds = list(range(args.seeds))
    episodes = evaluate(methods, family, scenarios, seeds, args.episode_steps,
                        args.workers or default_workers(), args.pred_k, planner,
                        video_episodes=1 if args.video else 0, ray=args.ray)
    meta = report_meta(family, methods, scenarios, seeds, args.episode_steps, args.pred_k)
    files = write_report(out, episodes, meta, family.robot.control_timestep, video=args.video,
                         robot=family.robot.name)
    print((out / "summary.md").read_text().split("\n\n![")[0])
    print("\n" + "\n".join(f"  {p}" for p in files.values()))
    return 0


def parse_method(text: str, device: str = "cpu") -> MethodSpec:
    """``random``, ``NAME=CHECKPOINT`` (learner checkpoints, run on ``device``),
    ``mbde=MB_CHECKPOINT``, ``policy=POLICY_CHECKPOINT``, ``oracle=LEARNER_CHECKPOINT``."""
    from adaptive_control.evaluation.episodes import LearnerMethod, MethodSpec, RandomMethod
    from adaptive_control.runs import checkpoint_path
    from policies.evaluate import PolicyMethod

    if text == "random":
        return MethodSpec("random", RandomMethod())
    if "=" not in text:
        raise ValueError(f"method {text!r}: allowed 'random' or NAME=CHECKPOINT "
                         "(e.g. grbal=runs/grbal, mbde=runs/mb, policy=runs/policy)")
    name, path = text.split("=", 1)
    p = checkpoint_path(path)
    if not p.is_file():
        raise ValueError(f"method {name!r}: checkpoint {path!r} not found")
    if name == "policy" or name.startswith("policy"):
        return MethodSpec(name, PolicyMethod(str(p)))
    if name.startswith("oracle"):
        from adaptive_control.evaluation.oracle import OracleMethod

        return MethodSpec(name, OracleMethod(str(p)))
    return MethodSpec(name, LearnerMethod(str(p), mbde=name == "mbde", device=device))


def _check_methods(methods: list[MethodSpec], family: TaskFamily) -> None:
    """Refuse checkpoints of another robot (or unreadable ones) before any work."""
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.evaluation.episodes import LearnerMethod
    from adaptive_control.evaluation.oracle import OracleMethod
    from policies.evaluate import PolicyMethod

    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    for m in methods:
        f = m.factory
        if isinstance(f, OracleMethod):
            load_checkpoint(f.checkpoint, robot=family.robot.name)
        elif isinstance(f, LearnerMethod):
            ckpt = load_checkpoint(f.checkpoint, robot=family.robot.name)
            if f.mbde and ckpt.get("learner_name") != "mb":
                raise ValueError(f"mbde={f.checkpoint}: MB+DE needs an MB checkpoint, this one "
                                 f"holds {ckpt.get('learner_name')!r}")
        elif isinstance(f, PolicyMethod):
            ckpt = load_checkpoint(f.checkpoint)
            if ckpt.get("robot") not in (None, family.robot.name):
                raise ValueError(f"{m.name}={f.checkpoint} is a policy for robot "
                                 f"{ckpt.get('robot')!r}, not {family.robot.name!r}")


def cmd_report(args: argparse.Namespace) -> int:
    from adaptive_control.evaluation.report import rebuild_report

    summary = rebuild_report(Path(args.folder))
    print(summary.read_text().split("\n\n![")[0])
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Train small GrBAL and MB on cheetah-cripple, compare them on the held-out back thigh."""
    from export.quickstart import quickstart

    if args.seeds < 1 or args.episode_steps <= 300:
        raise ValueError(f"--seeds={args.seeds}, --episode-steps={args.episode_steps}: need "
                         "seeds >= 1 and more than 300 steps (the switch is at 3 s)")
    quickstart(_prepare_out(args.out, args.overwrite), args.preset, args.seeds,
               args.episode_steps, args.workers)
    return 0
