"""``adapt train-policy``, ``adapt eval-policy`` and ``adapt export-policy``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from policies.config import PolicyTrainConfig
    from sims.conditions import Condition
    from sims.families import TaskFamily


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train-policy", help="meta-train a recurrent policy (DAgger from the "
                                            "adaptive-MPC teacher, or RL^2 with PPO)")
    t.add_argument("config", help="a TOML/YAML config file, or a preset name: "
                                  "distill, distill-mlp, rl2-small, tiny")
    t.add_argument("--out", required=True, help="run folder (checkpoint, data, metrics)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set method=rl2 --set net.arch=lstm "
                        "(repeatable)")
    t.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train_policy)

    e = sub.add_parser("eval-policy", help="held-out return and per-step compute of policies "
                                           "(and optionally their adaptive-MPC teacher)")
    e.add_argument("checkpoints", nargs="+", help="policy checkpoint.pt files (or run folders)")
    e.add_argument("--teacher", default=None, help="an `adapt train` checkpoint to compare with")
    e.add_argument("--episodes", type=int, default=3, help="episodes per evaluated condition")
    e.add_argument("--steps", type=int, default=500, help="steps per episode")
    e.add_argument("--switch", action="store_true",
                   help="reach each condition mid-episode, healthy before (family.switch_scenario)")
    e.add_argument("--split", choices=("test", "train"), default="test",
                   help="test: the family's held-out conditions (default); train: draws of the "
                        "training distribution, to tell imitation from generalisation")
    e.add_argument("--conditions", type=int, default=20, metavar="N",
                   help="with --split train: this many training conditions, drawn with --seed "
                        "(the same for every method), each run --episodes times")
    e.add_argument("--trials", type=int, default=0,
                   help="also report RL^2 trials: this many trials per condition")
    e.add_argument("--episodes-per-trial", type=int, default=3)
    e.add_argument("--action-std", type=float, default=0.0, metavar="S",
                   help="act with each policy's mean plus Gaussian noise of standard deviation "
                        "S action half-ranges (default 0: the mean). For students of a "
                        "sampling planner: the teacher's label spread, sqrt of "
                        "examples/label_noise.py's label variance (docs/policies.md)")
    e.add_argument("--seed", type=int, default=1234,
                   help="seed of the initial states (and of the action noise)")
    e.add_argument("--threads", type=int, default=1, help="torch threads")
    e.add_argument("--out", default=None, help="write results JSON here")
    e.set_defaults(func=cmd_eval_policy)

    x = sub.add_parser(
        "export-policy", help="export a policy checkpoint to an ONNX folder for `adapt deploy`",
        description="Write policy.onnx (one step, hidden state in and out), reward.onnx (the "
                    "task reward the policy reads) and manifest.json, then check ONNX Runtime "
                    "against torch on random inputs and in closed loop in simulation.")
    x.add_argument("checkpoint", help="policy checkpoint.pt (or run folder)")
    x.add_argument("--out", required=True, help="the deploy folder to write")
    x.add_argument("--verify-steps", type=int, default=40,
                   help="simulated steps of the closed-loop parity check (0: random inputs only)")
    x.add_argument("--no-verify", action="store_true", help="skip the parity checks")
    x.add_argument("--seed", type=int, default=0, help="seed of the parity inputs")
    x.add_argument("--force", action="store_true", help="overwrite a non-empty --out folder")
    x.add_argument("--action-std", type=float, default=0.0, metavar="S",
                   help="the deployed policy acts with its mean plus Gaussian noise of standard "
                        "deviation S action half-ranges (default 0: the mean); written to the "
                        "manifest, as for `adapt eval-policy --action-std`")
    x.set_defaults(func=cmd_export_policy)


def cmd_train_policy(args: argparse.Namespace) -> int:
    from policies.config import policy_config_from_arg
    from policies.training import train_policy

    cfg = policy_config_from_arg(args.config, args.overrides)
    ckpt = train_policy(cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(f"checkpoint: {ckpt}")
    return 0


def cmd_eval_policy(args: argparse.Namespace) -> int:
    import torch

    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.runs import checkpoint_path
    from policies.config import check_action_std, policy_config_from_json
    from policies.evaluate import (
        evaluate,
        evaluate_trials,
        policy_controller,
        teacher_controller,
    )
    from sims.families import get_family

    if args.episodes < 1 or args.steps < 1:
        raise ValueError("--episodes and --steps must be >= 1")
    if args.conditions < 1:
        raise ValueError(f"--conditions={args.conditions}: allowed an integer >= 1")
    check_action_std(args.action_std, "--action-std")
    torch.set_num_threads(args.threads)
    methods = {}
    configs = []
    group_of: dict[str, str] = {}  # policy name -> group_name: runs that differ by seed only
    seed_of: dict[str, int] = {}  # policy name -> training seed (pairs runs across groups)
    for path in args.checkpoints:
        ckpt = load_checkpoint(checkpoint_path(path))
        # One noise seed for all: the policies meet the same noise draws (common random numbers).
        methods[str(path)] = policy_controller(ckpt, action_std=args.action_std,
                                               noise_seed=args.seed)
        configs.append(policy_config_from_json(ckpt["config"]))
        group_of[str(path)] = group_name(configs[-1])
        seed_of[str(path)] = configs[-1].seed
    families = {c.family for c in configs}
    if len(families) != 1:
        raise ValueError(f"policies come from different families {sorted(families)}")
    family = get_family(families.pop())
    if args.teacher:
        # The teacher plans as it did when it labelled the distilled policies.
        labelling = {c.distill.teacher_planner: c.distill
                     for c in configs if c.method == "distill"}
        if len(labelling) > 1:
            raise ValueError("--teacher: the distilled policies were labelled by differently "
                             "configured teachers (distill.teacher_planner) = "
                             f"{sorted(map(repr, labelling))}")
        distill = next(iter(labelling.values()), None)
        methods[f"teacher:{args.teacher}"] = teacher_controller(args.teacher, distill=distill)
    conditions = eval_conditions(family, args.split, args.conditions, args.seed)
    where = {"test": "held-out", "train": f"{len(conditions)} training conditions"}[args.split]
    where = f"switch to {where}" if args.switch else where
    noise = f", policy action noise {args.action_std:g} half-ranges" if args.action_std else ""
    print(f"{family.name} ({where}): {args.episodes} episodes x {args.steps} steps per "
          f"condition{noise}")
    results: dict = {"family": family.name, "split": args.split,
                     "conditions": [c.label for c in conditions], "switch": args.switch,
                     "action_std": args.action_std, "methods": {}}
    for name, ctrl in methods.items():
        r = evaluate(ctrl, family, args.episodes, args.steps, args.seed, switch=args.switch,
                     conditions=conditions)
        results["methods"][name] = r.to_dict()
        print(f"{name:<50} return {r.mean_return:9.2f} ± {r.sem_return:6.2f}   "
              f"{r.ms_per_step:8.3f} ms/step (median {r.ms_median:.3f})")
        if args.trials and hasattr(ctrl, "new_condition"):
            for carry in (True, False):
                tr = evaluate_trials(ctrl, family, args.trials, args.episodes_per_trial,
                                     args.steps, args.seed, conditions=conditions, carry=carry)
                key = "trial_returns" if carry else "trial_returns_reset_each_episode"
                results["methods"][name][key] = tr.tolist()
                # paired over trials (same initial states): last episode minus first
                gain = tr[:, -1] - tr[:, 0]
                sem = tr.std(axis=0, ddof=1) / np.sqrt(len(tr)) if len(tr) > 1 else 0 * tr[0]
                label = ("per episode of a trial (hidden carried)" if carry
                         else "same, hidden reset every episode")
                print(f"  {label:<48} "
                      + "  ".join(f"{m:.2f}±{e:.2f}" for m, e in zip(tr.mean(0), sem, strict=True))
                      + f"   last-first {gain.mean():+.2f}"
                      + (f"±{gain.std(ddof=1) / np.sqrt(len(gain)):.2f}" if len(gain) > 1 else ""))
    teacher = results["methods"].get(f"teacher:{args.teacher}") if args.teacher else None
    results["groups"] = summarize_groups(results["methods"], group_of, teacher)
    if len(args.checkpoints) > len(results["groups"]):
        print("by method and architecture (mean over runs ± standard error across runs):")
        for g, row in results["groups"].items():
            print(f"  {g:<28} {row['runs']} runs  return {row['mean_return']:9.2f} ± "
                  f"{row['sem_across_runs']:6.2f}   median {row['ms_median']:.3f} ms/step"
                  + (f"   {100 * row['return_vs_teacher']:.0f} % of the teacher's return at "
                     f"1/{row['teacher_compute_ratio']:.0f} of its compute" if teacher else ""))
    results["paired"] = paired_differences(results["methods"], group_of, seed_of)
    for pair, row in results["paired"].items():
        print(f"  {pair:<36} paired by seed ({len(row['seeds'])}): "
              + ", ".join(f"{d:+.1f}" for d in row["differences"])
              + f"   mean {row['mean']:+.2f} ± {row['sem']:.2f}, {row['wins']} wins")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


def eval_conditions(family: TaskFamily, split: str, n: int, seed: int) -> list[Condition]:
    """The conditions `eval-policy` runs every method on: the held-out set, or ``n`` draws of
    the training distribution. The draws have their own stream (``(seed, 1)``), apart from the
    initial states' (``seed``), and are the same for every method."""
    return family.conditions(split, np.random.default_rng((seed, 1)), n)


def group_name(cfg: PolicyTrainConfig) -> str:
    """Runs pooled (and paired by seed) in `eval-policy`: method, architecture and, if set, the
    DAgger rollout noise, so plain and noise-trained students are compared, not pooled."""
    name = f"{cfg.method} {cfg.net.arch}"
    if cfg.method == "distill" and cfg.distill.rollout_action_std:
        name += f" noise {cfg.distill.rollout_action_std:g}"
    return name


def summarize_groups(methods: dict, group_of: dict[str, str],
                     teacher: dict | None) -> dict[str, dict]:
    """Pool runs of one method and architecture (e.g. training seeds): mean of their mean
    returns, standard error across runs, and the ratios against the teacher."""
    groups: dict[str, dict] = {}
    for g in dict.fromkeys(group_of.values()):
        rows = [methods[name] for name, gg in group_of.items() if gg == g]
        means = np.array([r["mean_return"] for r in rows])
        row = {"runs": len(rows), "mean_return": float(means.mean()),
               "sem_across_runs": float(means.std(ddof=1) / np.sqrt(len(means)))
               if len(means) > 1 else float("nan"),
               "ms_median": float(np.median([r["ms_median"] for r in rows])),
               "members": [name for name, gg in group_of.items() if gg == g]}
        if teacher is not None:
            row["return_vs_teacher"] = row["mean_return"] / teacher["mean_return"]
            row["teacher_compute_ratio"] = teacher["ms_median"] / row["ms_median"]
        groups[g] = row
    return groups


def paired_differences(methods: dict, group_of: dict[str, str],
                       seed_of: dict[str, int]) -> dict[str, dict]:
    """For every two groups, the difference of mean returns between their runs of the same
    training seed. Same seed = same DAgger conditions and initial states (round 0 is the
    teacher's own rollouts), so pairing removes what the seed does to both."""
    by_group: dict[str, dict[int, float]] = {}
    ambiguous: set[str] = set()  # two runs of one group with one seed: no unique partner
    for name, g in group_of.items():
        runs = by_group.setdefault(g, {})
        if seed_of[name] in runs:
            ambiguous.add(g)
        runs[seed_of[name]] = methods[name]["mean_return"]
    names = [g for g in by_group if g not in ambiguous]
    out: dict[str, dict] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            seeds = sorted(set(by_group[a]) & set(by_group[b]))
            if len(seeds) < 2:
                continue
            d = np.array([by_group[a][s] - by_group[b][s] for s in seeds])
            out[f"{a} - {b}"] = {"seeds": seeds, "differences": d.tolist(),
                                 "mean": float(d.mean()),
                                 "sem": float(d.std(ddof=1) / np.sqrt(len(d))),
                                 "wins": int((d > 0).sum())}
    return out


def cmd_export_policy(args: argparse.Namespace) -> int:
    import time

    from adaptive_control.cli.export import print_export
    from export.policy_export import export_policy

    t0 = time.perf_counter()
    result = export_policy(args.checkpoint, args.out, verify=not args.no_verify,
                           verify_steps=args.verify_steps, seed=args.seed, overwrite=args.force,
                           action_std=args.action_std, log=lambda s: print(s, flush=True))
    print_export(result.files, result.parity, result.out_dir, time.perf_counter() - t0)
    return 0
