"""``adapt train`` and ``adapt eval-model``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="meta-train a dynamics model (GrBAL, ReBAL, MB, MB+DE)")
    t.add_argument("config", help="a TOML/YAML config file, or a preset name: "
                                  "paper, small, tiny")
    t.add_argument("--out", required=True, help="run folder (checkpoint, data, metrics)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set learner=rebal "
                        "--set optim.max_epochs=5 (repeatable)")
    t.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval-model", help="k-step prediction error on held-out conditions")
    e.add_argument("checkpoints", nargs="+", help="checkpoint.pt files (or run folders)")
    e.add_argument("--split", default="test", choices=["test", "train"])
    e.add_argument("--trajectories", type=int, default=3,
                   help="random-action trajectories per condition")
    e.add_argument("--steps", type=int, default=300, help="steps per trajectory")
    e.add_argument("--horizons", default="1,10", help="comma-separated k values")
    e.add_argument("--stride", type=int, default=5, help="steps between evaluated windows")
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--out", default=None, help="write results JSON here")
    e.set_defaults(func=cmd_eval_model)


def cmd_train(args: argparse.Namespace) -> int:
    from adaptive_control.training.config import PRESETS, load_config
    from adaptive_control.training.loop import train

    if args.config in PRESETS:
        cfg = load_config(preset=args.config, overrides=args.overrides)
    else:
        cfg = load_config(args.config, overrides=args.overrides)
    ckpt = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(f"checkpoint: {ckpt}")
    return 0


def cmd_eval_model(args: argparse.Namespace) -> int:
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.evaluation.model_eval import (
        heldout_data,
        prediction_errors,
        reference_scale,
    )
    from adaptive_control.runs import checkpoint_path
    from adaptive_control.training.loop import learner_from_checkpoint, mbde_from_mb
    from sims.families import get_family

    horizons = tuple(int(h) for h in args.horizons.split(","))
    if min(horizons) < 1:
        raise ValueError(f"--horizons={args.horizons!r}: every k must be >= 1")
    loaded = []
    for path in args.checkpoints:
        ckpt = load_checkpoint(checkpoint_path(path))
        learner, cfg = learner_from_checkpoint(ckpt)
        loaded.append((path, cfg.learner, learner, cfg))
        if cfg.learner == "mb":  # MB+DE is MB's weights updated online: evaluate it too
            loaded.append((path, "mbde", mbde_from_mb(learner, cfg), cfg))
    families = {cfg.family for *_, cfg in loaded}
    if len(families) != 1:
        raise ValueError(f"checkpoints come from different families {sorted(families)}: "
                         "compare models of one family at a time")
    family = get_family(families.pop())
    data = heldout_data(family, args.split, args.trajectories, args.steps, args.seed)
    scale = reference_scale(family)
    results = {"family": family.name, "split": args.split, "m": loaded[0][3].m,
               "horizons": list(horizons),
               "conditions": [c for c in data.conditions], "methods": {}}
    print(f"{family.name} ({args.split}): {data.n_trajectories} trajectories x "
          f"{data.horizon} steps; error = MSE in units of the training data's std")
    header = f"{'method':<10}" + "".join(
        f"{f'{k}-step prior':>16}{f'{k}-step adapted':>18}{'(median)':>10}" for k in horizons)
    print(header)
    for path, name, learner, cfg in loaded:
        prior = prediction_errors(learner, data, cfg.m, horizons, args.stride, False, scale)
        adapted = prediction_errors(learner, data, cfg.m, horizons, args.stride, True, scale)
        results["methods"][name] = {
            "checkpoint": str(path),
            "prior": {k: v.to_dict() for k, v in prior.items()},
            "adapted": {k: v.to_dict() for k, v in adapted.items()},
        }
        print(f"{name:<10}" + "".join(
            f"{prior[k].mean:>10.4f}±{prior[k].sem:<5.3f}{adapted[k].mean:>12.4f}"
            f"±{adapted[k].sem:<5.3f}{adapted[k].median:>10.4f}" for k in horizons))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0
