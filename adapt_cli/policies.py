"""``adapt train-policy``, ``adapt eval-policy`` and ``adapt export-policy``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adapt_cli.export import interrupted_export
from adapt_cli.train import add_run_arguments, interrupted_run


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train-policy", help="meta-train a recurrent policy (DAgger from the "
                                            "adaptive-MPC teacher, or RL^2 with PPO)")
    add_run_arguments(t, "distill, distill-mlp, rl2-small, tiny",
                      "--set method=rl2 --set net.arch=lstm")
    t.set_defaults(func=cmd_train_policy,
                   interrupted=lambda args: interrupted_run(args, "train-policy"))

    e = sub.add_parser("eval-policy", help="held-out return and per-step compute of policies "
                                           "(and optionally their adaptive-MPC teacher)")
    e.add_argument("checkpoints", nargs="+", help="policy checkpoint.pt files (or run folders)")
    e.add_argument("--teacher", default=None, help="an `adapt train` checkpoint to compare with")
    e.add_argument("--episodes", type=int, default=3, help="episodes per evaluated condition")
    e.add_argument("--duration", type=float, default=5.0, metavar="SECONDS",
                   help="seconds per episode, in whole control steps of the policies' family "
                        "(default 5: 500 steps of the cheetah's 10 ms, 250 of the "
                        "quadruped's 20 ms)")
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
                        "research/label_noise.py's label variance (docs/policies.md)")
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
    x.set_defaults(func=cmd_export_policy, interrupted=interrupted_export)


def cmd_train_policy(args: argparse.Namespace) -> int:
    from policies.config import policy_config_from_arg
    from policies.training import train_policy

    cfg = policy_config_from_arg(args.config, args.overrides)
    ckpt = train_policy(cfg, args.out, resume=args.resume, progress=not args.quiet)
    print(f"checkpoint: {ckpt}")
    return 0


def cmd_eval_policy(args: argparse.Namespace) -> int:
    import torch

    from policies.compare import prepare_comparison, run_comparison, trial_stats
    from policies.config import check_action_std
    from sims.episode import episode_steps_of

    if args.episodes < 1:
        raise ValueError(f"--episodes={args.episodes}: allowed an integer >= 1")
    if args.conditions < 1:
        raise ValueError(f"--conditions={args.conditions}: allowed an integer >= 1")
    check_action_std(args.action_std, "--action-std")
    torch.set_num_threads(args.threads)
    comparison = prepare_comparison(args.checkpoints, args.teacher, args.split, args.conditions,
                                    args.seed, args.action_std)
    family, conditions = comparison.family, comparison.conditions
    # Seconds at the policies' control step: known once their family is read.
    steps = episode_steps_of(args.duration, family.robot.control_timestep)
    where = {"test": "held-out", "train": f"{len(conditions)} training conditions"}[args.split]
    where = f"switch to {where}" if args.switch else where
    noise = f", policy action noise {args.action_std:g} half-ranges" if args.action_std else ""
    print(f"{family.name} ({where}): {args.episodes} episodes x {steps} steps per "
          f"condition{noise}")

    def print_method(name: str, r, trial_returns: dict) -> None:
        print(f"{name:<50} return {r.mean_return:9.2f} ± {r.sem_return:6.2f}   "
              f"{r.ms_per_step:8.3f} ms/step (median {r.ms_median:.3f})")
        for carry, tr in trial_returns.items():
            st = trial_stats(tr)
            label = ("per episode of a trial (hidden carried)" if carry
                     else "same, hidden reset every episode")
            print(f"  {label:<48} "
                  + "  ".join(f"{m:.2f}±{e:.2f}" for m, e in zip(st.mean, st.sem, strict=True))
                  + f"   last-first {st.gain:+.2f}"
                  + (f"±{st.gain_sem:.2f}" if st.gain_sem is not None else ""))

    results = run_comparison(comparison, args.episodes, steps, args.seed, args.split,
                             switch=args.switch, action_std=args.action_std, trials=args.trials,
                             episodes_per_trial=args.episodes_per_trial, on_method=print_method)
    teacher = comparison.teacher
    if len(args.checkpoints) > len(results["groups"]):
        print("by method and architecture (mean over runs ± standard error across runs):")
        for g, row in results["groups"].items():
            print(f"  {g:<28} {row['runs']} runs  return {row['mean_return']:9.2f} ± "
                  f"{row['sem_across_runs']:6.2f}   median {row['ms_median']:.3f} ms/step"
                  + (f"   {100 * row['return_vs_teacher']:.0f} % of the teacher's return at "
                     f"1/{row['teacher_compute_ratio']:.0f} of its compute" if teacher else ""))
    for pair, row in results["paired"].items():
        print(f"  {pair:<36} paired by seed ({len(row['seeds'])}): "
              + ", ".join(f"{d:+.1f}" for d in row["differences"])
              + f"   mean {row['mean']:+.2f} ± {row['sem']:.2f}, {row['wins']} wins")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


def cmd_export_policy(args: argparse.Namespace) -> int:
    import time

    from adapt_cli.export import print_export
    from export.policy import export_policy

    t0 = time.perf_counter()
    result = export_policy(args.checkpoint, args.out, verify=not args.no_verify,
                           verify_steps=args.verify_steps, seed=args.seed, overwrite=args.force,
                           action_std=args.action_std, log=lambda s: print(s, flush=True))
    print_export(result.files, result.parity, result.out_dir, time.perf_counter() - t0)
    return 0
