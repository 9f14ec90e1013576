"""``adapt sims ...``: list robots, conditions and families; render; collect datasets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sims", help="robots, conditions, families: list, render, collect")
    ss = p.add_subparsers(dest="sims_cmd", required=True)

    ls = ss.add_parser("list", help="robots, condition kinds, families and their splits")
    ls.add_argument("specs", nargs="*", metavar="SPEC",
                    help="robot / family spec files (.toml) to load and list as well")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_list)

    r = ss.add_parser("render", help="render a robot under a condition to PNG (or MP4/GIF)")
    r.add_argument("robot", help="robot name, robot spec file (.toml) or MJCF file (.xml)")
    r.add_argument("--condition", default="healthy", help="e.g. 'disabled:bthigh+payload:2'")
    r.add_argument("--out", required=True, help=".png for a frame, .mp4/.gif for a video")
    r.add_argument("--steps", type=int, default=50, help="control steps to simulate first")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--width", type=int, default=640)
    r.add_argument("--height", type=int, default=480)
    r.set_defaults(func=cmd_render)

    c = ss.add_parser("collect", help="collect a random-action dataset (.npz) with mujoco.rollout")
    c.add_argument("--family", required=True,
                   help="task family (see `adapt sims list`) or spec file PATH.toml[#FAMILY]")
    c.add_argument("--split", default="train", choices=["train", "test"])
    c.add_argument("--trajectories", type=int, default=64, help="number of trajectories")
    c.add_argument("--steps", type=int, default=200, help="control steps per trajectory")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=None, help="rollout threads (default: all)")
    c.add_argument("--out", required=True, help="output .npz path")
    c.set_defaults(func=cmd_collect)


def cmd_list(args: argparse.Namespace) -> int:
    from sims.conditions import MODIFIERS
    from sims.registry import FAMILIES, ROBOTS, load_spec_file

    for spec in args.specs:
        load_spec_file(spec)  # registers its robot and families
    robots = {
        r.name: {
            "description": r.description, "obs_dim": r.obs_dim, "act_dim": r.act_dim,
            "control_timestep_s": r.control_timestep, "actuators": list(r.actuator_names),
            "legs": list(r.leg_names), "observation": [p.name for p in r.obs_parts],
        }
        for r in ROBOTS.values()
    }
    conditions = {k: m.syntax for k, m in MODIFIERS.items()}
    families = {
        f.name: {"robot": f.robot.name, "description": f.description,
                 "held_out": [c.label for c in f.test_conditions]}
        for f in FAMILIES.values()
    }
    if args.json:
        print(json.dumps({"robots": robots, "conditions": conditions, "families": families},
                         indent=2))
        return 0
    print("Robots")
    for name, r in robots.items():
        print(f"  {name:<10} obs {r['obs_dim']:>2}  act {r['act_dim']}  "
              f"dt {r['control_timestep_s']:.3f} s  {r['description']}")
        print(f"  {'':<10} actuators: {', '.join(r['actuators'])}")
        print(f"  {'':<10} legs: {', '.join(r['legs'])}")
    print("\nConditions (join with '+', e.g. disabled:bthigh+payload:2)")
    for syntax in conditions.values():
        print(f"  {syntax}")
    print("\nFamilies (train / held-out splits)")
    for name, f in families.items():
        print(f"  {name:<22} [{f['robot']}] {f['description']}")
        print(f"  {'':<22} held out: {'; '.join(f['held_out'])}")
    print("\nYour own robot: a spec file (robot.toml: MJCF, legs, control rate, families; see "
          "docs/own-robot.md) goes wherever a robot or family name goes (robot.toml#FAMILY); "
          "a bare robot.xml wherever a robot name goes.")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from sims.conditions import parse_condition
    from sims.env import AdaptEnv
    from sims.registry import get_robot
    from sims.render import render_frame, save_image, save_video

    for name in ("width", "height"):
        v = getattr(args, name)
        if not 16 <= v <= 4096:
            raise ValueError(f"--{name}={v}: allowed 16..4096 pixels")
    if args.steps < 1:
        raise ValueError(f"--steps={args.steps}: must be >= 1")
    robot = get_robot(args.robot)
    cond = parse_condition(args.condition, robot)  # validated before any simulation
    out = Path(args.out)
    if out.suffix not in (".png", ".mp4", ".gif"):
        raise ValueError(f"--out={args.out!r}: allowed suffixes .png, .mp4, .gif")
    env = AdaptEnv(robot, cond, episode_steps=max(args.steps, 1), seed=args.seed)
    env.reset()
    rng = np.random.default_rng(args.seed)
    lo, hi = robot.action_bounds
    frames = []
    import mujoco

    renderer = mujoco.Renderer(env.physics.model, height=args.height, width=args.width)
    for _ in range(args.steps):
        env.step(rng.uniform(lo, hi))
        if out.suffix != ".png":
            frames.append(render_frame(env.physics, renderer=renderer))
    if out.suffix == ".png":
        save_image(render_frame(env.physics, renderer=renderer), out)
    else:
        save_video(frames, out, fps=int(round(1 / robot.control_timestep)))
    renderer.close()
    print(f"wrote {out} ({robot.name}, {cond.label})")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from sims.collect import collect_open_loop
    from sims.registry import get_family

    family = get_family(args.family)
    if args.trajectories < 1:
        raise ValueError(f"--trajectories={args.trajectories}: must be >= 1")
    if args.steps < 1:
        raise ValueError(f"--steps={args.steps}: must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads={args.threads}: must be >= 1")
    if not args.out.endswith(".npz"):
        raise ValueError(f"--out={args.out!r}: datasets are .npz files")
    rng = np.random.default_rng(args.seed)
    conds = [family.sample(rng, args.split) for _ in range(args.trajectories)]
    ds = collect_open_loop(family.robot, conds, args.steps, rng, nthread=args.threads,
                           family=family.name)
    ds.save(args.out)
    s = ds.stats
    print(f"wrote {args.out}: {ds.n_trajectories} trajectories x {ds.horizon} steps, "
          f"{len(ds.conditions)} conditions; dropped {s['dropped_diverged']} diverged; "
          f"{s['kept'] * s['steps'] / max(s['seconds'], 1e-9):,.0f} steps/s")
    return 0
