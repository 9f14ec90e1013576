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
    r.add_argument("--duration", type=float, default=0.5, metavar="SECONDS",
                   help="seconds to simulate before the frame, or the video's length (default "
                        "0.5: 50 control steps of the cheetah's 10 ms)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--width", type=int, default=640)
    r.add_argument("--height", type=int, default=480)
    r.add_argument("--camera", default="track", metavar="VIEW",
                   help="track (three-quarter view), side or top; each follows the robot "
                        "(default track)")
    r.add_argument("--distance", type=float, default=None, metavar="METRES",
                   help="camera distance from the robot (default: framed by the robot's size)")
    r.set_defaults(func=cmd_render, interrupted=lambda args: (
        f"{args.out} may be incomplete (it is written last): render it again"
        if Path(args.out).exists() else "nothing written"))

    c = ss.add_parser("collect", help="collect a random-action dataset (.npz) with mujoco.rollout")
    c.add_argument("--family", required=True,
                   help="task family (see `adapt sims list`) or spec file PATH.toml[#FAMILY]")
    c.add_argument("--split", default="train", choices=["train", "test"])
    c.add_argument("--trajectories", type=int, default=64, help="number of trajectories")
    c.add_argument("--duration", type=float, default=2.0, metavar="SECONDS",
                   help="seconds per trajectory, in whole steps of the family's control step "
                        "(its decision period for FAMILY@K) (default 2: 200 steps of the "
                        "cheetah's 10 ms)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=None, help="rollout threads (default: all)")
    c.add_argument("--action-beta", type=float, default=0.0, metavar="BETA",
                   help="AR(1) correlation of the random actions from one control step to the "
                        "next, in [0, 1): smoother exploration, each action still uniform over "
                        "the range (default 0: i.i.d. uniform)")
    c.add_argument("--fall-reset", choices=["off", "on", "auto"], default="off",
                   help="end a trajectory once the torso has been upside down for "
                        "--fall-seconds and spend the rest of its steps on fresh resets in the "
                        "same condition (auto: the robot's default, on for the quadruped; "
                        "default off)")
    c.add_argument("--fall-seconds", type=float, default=0.2,
                   help="with --fall-reset: seconds upside down that end a trajectory")
    c.add_argument("--min-steps", type=int, default=32,
                   help="with --fall-reset: drop trajectories shorter than this many "
                        "transitions (a training run's m + k, counted in steps as the run "
                        "counts them; default 32, the paper's)")
    c.add_argument("--out", required=True, help="output .npz path")
    c.set_defaults(func=cmd_collect, interrupted=lambda args: (
        f"nothing written ({args.out} is written when collection ends)"))


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
    from sims.episode import episode_steps_of
    from sims.registry import get_robot
    from sims.render import check_camera, render_frame, save_image, save_video

    check_camera(args.camera, args.distance)
    for name in ("width", "height"):
        v = getattr(args, name)
        if not 16 <= v <= 4096:
            raise ValueError(f"--{name}={v}: allowed 16..4096 pixels")
    robot = get_robot(args.robot)
    steps = episode_steps_of(args.duration, robot.control_timestep)
    cond = parse_condition(args.condition, robot)  # validated before any simulation
    out = Path(args.out)
    if out.suffix not in (".png", ".mp4", ".gif"):
        raise ValueError(f"--out={args.out!r}: allowed suffixes .png, .mp4, .gif")
    env = AdaptEnv(robot, cond, episode_steps=steps, seed=args.seed)
    env.reset()
    rng = np.random.default_rng(args.seed)
    lo, hi = robot.action_bounds
    frames = []
    import mujoco

    renderer = mujoco.Renderer(env.physics.model, height=args.height, width=args.width)
    for _ in range(steps):
        env.step(rng.uniform(lo, hi))
        if out.suffix != ".png":
            frames.append(render_frame(env.physics, camera=args.camera,
                                       distance=args.distance, renderer=renderer))
    if out.suffix == ".png":
        save_image(render_frame(env.physics, camera=args.camera, distance=args.distance,
                                renderer=renderer), out)
    else:
        save_video(frames, out, fps=int(round(1 / robot.control_timestep)))
    renderer.close()
    print(f"wrote {out} ({robot.name}, {cond.label})")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from sims.collect import FallReset, collect_open_loop
    from sims.episode import episode_steps_of
    from sims.registry import get_family

    family = get_family(args.family)
    if args.trajectories < 1:
        raise ValueError(f"--trajectories={args.trajectories}: must be >= 1")
    steps = episode_steps_of(args.duration, family.robot.control_timestep)
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads={args.threads}: must be >= 1")
    if not args.out.endswith(".npz"):
        raise ValueError(f"--out={args.out!r}: datasets are .npz files")
    if not 0.0 <= args.action_beta < 1.0:
        raise ValueError(f"--action-beta={args.action_beta}: allowed [0, 1) (0: i.i.d. uniform)")
    fall_reset = None
    on = family.robot.fall_reset if args.fall_reset == "auto" else args.fall_reset == "on"
    if on:
        try:
            fall_reset = FallReset(seconds=args.fall_seconds, min_steps=args.min_steps)
            fall_reset.upright_fn(family.robot)
        except ValueError as e:
            raise ValueError(f"--fall-reset={args.fall_reset} (--fall-seconds "
                             f"{args.fall_seconds}, --min-steps {args.min_steps}): {e}") from e
    rng = np.random.default_rng(args.seed)
    conds = [family.sample(rng, args.split) for _ in range(args.trajectories)]
    ds = collect_open_loop(family.robot, conds, steps, rng, nthread=args.threads,
                           family=family.name, action_beta=args.action_beta,
                           fall_reset=fall_reset)
    if not ds.n_trajectories:
        raise ValueError(f"every trajectory fell within --min-steps {args.min_steps} steps of "
                         "its reset or diverged: nothing to write")
    ds.save(args.out)
    s = ds.stats
    falls = (f"; {s['fall_resets']} fall resets, dropped {s['dropped_short']} shorter than "
             f"{args.min_steps} steps" if fall_reset else "")
    print(f"wrote {args.out}: {ds.n_trajectories} trajectories ({ds.n_transitions} "
          f"transitions) of up to {ds.horizon} steps, {len(ds.conditions)} conditions; dropped "
          f"{s['dropped_diverged']} diverged{falls}; "
          f"{ds.n_transitions / max(s['seconds'], 1e-9):,.0f} steps/s")
    return 0
