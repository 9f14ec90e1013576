"""``adapt train`` and ``adapt eval-model``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="meta-train a dynamics model (GrBAL, ReBAL, MB, MB+DE)")
    add_run_arguments(t, "paper, small, tiny", "--set learner=rebal --set optim.max_epochs=5")
    add_ray_argument(t, "collect each iteration's rollouts as Ray tasks (reproducible on any "
                        "cluster size; the draws differ from a run without --ray)")
    # The config field `device`, spelled as the flag evaluation takes too.
    t.add_argument("--device", dest="overrides", action="append", metavar="DEVICE",
                   type=lambda v: f"device={v!r}",
                   help="where the model trains and plans: cpu, cuda, cuda:N or auto (the same "
                        "as --set device=DEVICE)")
    t.add_argument("--data", action="append", default=None, metavar="FILE.npz",
                   help="train on this dataset (from `adapt sims collect` or your own logger, "
                        "docs/data.md) instead of iteration 0's random rollouts; later "
                        "iterations still collect on-policy (iterations=1: offline only); "
                        "repeatable")
    t.set_defaults(func=cmd_train, interrupted=lambda args: interrupted_run(args, "train"))

    s = sub.add_parser("sweep", help="one training run per grid point (seeds x --set values), "
                                     "locally or on Ray; re-submit to resume")
    add_run_arguments(s, "paper, small, tiny",
                      "learner=grbal,mb (one run per comma-separated value; [32,32] is one "
                      "value, [32,32],[64,64] two)",
                      out_help="the sweep's root: sweep.json, summary.csv, one run folder per "
                               "grid point", resume=False)
    s.add_argument("--seeds", default=None, metavar="LIST",
                   help="seeds and ranges, e.g. 0-4 or 0,3,7-9 (default: the config's seed)")
    add_ray_argument(s, "one Ray task per run (on a cluster, --out must be a shared path)")
    s.add_argument("--workers", type=int, default=1,
                   help="local runs at once, as processes (with --ray local: its CPUs)")
    s.set_defaults(func=cmd_sweep, interrupted=lambda args: (
        f"each run's saved iterations are kept in {args.out}; the same command resumes the "
        "sweep"))

    e = sub.add_parser("eval-model", help="k-step prediction error on held-out conditions")
    e.add_argument("checkpoints", nargs="+", help="checkpoint.pt files (or run folders)")
    e.add_argument("--split", default="test", choices=["test", "train"])
    e.add_argument("--trajectories", type=int, default=3,
                   help="random-action trajectories per condition")
    e.add_argument("--duration", type=float, default=15.0, metavar="SECONDS",
                   help="seconds per trajectory, in whole decisions of the run's family "
                        "(default 15: 300 decisions of a cheetah run's 50 ms)")
    e.add_argument("--horizons", default="1,10", help="comma-separated k values")
    e.add_argument("--stride", type=int, default=5, help="steps between evaluated windows")
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--device", default="cpu",
                   help="where the models run: cpu, cuda, cuda:N or auto")
    e.add_argument("--out", default=None, help="write results JSON here")
    e.set_defaults(func=cmd_eval_model)


def add_run_arguments(p: argparse.ArgumentParser, presets: str, example: str,
                      out_help: str = "run folder (checkpoint, data, metrics)",
                      resume: bool = True) -> None:
    """The arguments of a training run: its config, run folder, overrides and resume."""
    p.add_argument("config", help=f"a TOML/YAML config file, or a preset name: {presets}")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config field, e.g. {example} (repeatable)")
    if resume:
        p.add_argument("--resume", action="store_true",
                       help="continue a killed run from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def interrupted_run(args: argparse.Namespace, command: str) -> str:
    """What an interrupted ``adapt COMMAND`` run kept in ``--out``, and the command line (these
    arguments with ``--resume``) that continues it."""
    import shlex
    import sys

    # Only what is imported already: an interrupt that landed while torch was being imported
    # leaves it half-loaded, and a second import of torch then crashes the process.
    runs = sys.modules.get("adaptive_control.runs")
    if runs is None:  # the run's code was not even loaded: nothing was written
        return "nothing written"
    again = ["adapt", command, args.config, "--out", args.out]
    for value in args.overrides or []:
        again += ["--set", value]
    for path in getattr(args, "data", None) or []:
        again += ["--data", path]
    if getattr(args, "ray", None) is not None:
        again += ["--ray", args.ray]
    if args.quiet:
        again.append("--quiet")
    return runs.interrupted_note(args.out, shlex.join([*again, "--resume"]))


def add_ray_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--ray [ADDRESS]``: local (the default when bare), auto, HOST:PORT or ray://HOST:PORT."""
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help=f"{what}; ADDRESS: local (default), auto, HOST:PORT or ray://HOST:PORT")


def cmd_train(args: argparse.Namespace) -> int:
    from adaptive_control.training.config import config_from_arg
    from adaptive_control.training.loop import train

    cfg = config_from_arg(args.config, args.overrides)
    data = None
    if args.data:  # read and checked before anything is written
        from adaptive_control.training.data import load_training_data

        data = load_training_data(args.data, cfg.family, cfg.m, cfg.k)
    collector = None
    if args.ray is not None:
        from adaptive_control.training.ray_collect import RayCollector

        collector = RayCollector(args.ray)
    ckpt = train(cfg, args.out, resume=args.resume, progress=not args.quiet, collector=collector,
                 initial_data=data)
    print(f"checkpoint: {ckpt}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from adaptive_control.training.sweep import format_summary, run_sweep

    results = run_sweep(args.config, args.out, args.overrides, args.seeds, ray=args.ray,
                        workers=args.workers, progress=not args.quiet)
    print(format_summary(results))
    return 1 if any(r.status == "failed" for r in results) else 0


def cmd_eval_model(args: argparse.Namespace) -> int:
    from adaptive_control.devices import resolve_device
    from adaptive_control.evaluation.model_eval import compare_models, load_models
    from sims.episode import episode_steps_of

    device = resolve_device(args.device)
    horizons = tuple(int(h) for h in args.horizons.split(","))
    if min(horizons) < 1:
        raise ValueError(f"--horizons={args.horizons!r}: every k must be >= 1")
    models = load_models(args.checkpoints, device)
    # Seconds at the runs' decision step: known once their family is read.
    steps = episode_steps_of(args.duration, models.family.robot.control_timestep)
    res = compare_models(models, args.split, args.trajectories, steps, horizons, args.stride,
                         args.seed)
    print(f"{res.family} ({args.split}): {res.trajectories} trajectories x "
          f"{res.steps} steps; error = MSE in units of the training data's std")
    header = f"{'method':<10}" + "".join(
        f"{f'{k}-step prior':>16}{f'{k}-step adapted':>18}{'(median)':>10}" for k in horizons)
    print(header)
    for r in res.models:
        prior, adapted = r.prior, r.adapted
        print(f"{r.name:<10}" + "".join(
            f"{prior[k].mean:>10.4f}±{prior[k].sem:<5.3f}{adapted[k].mean:>12.4f}"
            f"±{adapted[k].sem:<5.3f}{adapted[k].median:>10.4f}" for k in horizons))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res.to_dict(), indent=2))
        print(f"wrote {args.out}")
    return 0
