"""The simulated robot behind :mod:`export.runtime.dds`: a MuJoCo robot (:class:`SimRobot`,
any built-in or spec-file robot, condition and ``--switch`` schedule) in a process of its own
that speaks the ROS 2 topics at its control rate, so ``adapt deploy EXPORT --robot dds:CONFIG``
runs across two processes as it would against a real robot::

    adapt dds-robot --config robot.toml --robot cheetah --switch 3=disabled:bthigh
    python -m export.runtime.dds_sim --config robot.toml --robot cheetah   # without torch

Every period it applies the newest command (holding the previous one when none came, as a
ros2_control ``forward_command_controller`` does; counted), advances one control step and
publishes the observation it would give the in-process :class:`SimRobot` (noise included),
stamped with the wall clock. Until the first command it publishes its reset state without
stepping, so an episode starts when a controller connects. ``--summary`` writes return (and
its curve, step by step), steps, the commands received, held (and the first step that held
one) and out of limits, and the latency state stamped -> command received (against the newest
state published) when it stops (``--duration`` reached, SIGTERM
or Ctrl-C).

Imports ``sims`` and mujoco (through :mod:`export.runtime.sim_robot`) and ``cyclonedds``; no
torch.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Ticks to reserve latency storage for up front (it doubles beyond).
_CAPACITY = 1 << 14


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dds-robot", help="serve a simulated robot over ROS 2-compatible DDS topics",
        description="Runs a MuJoCo robot at its control rate and speaks the topics of a "
                    "dds: config (sensor_msgs/JointState out, std_msgs/Float64MultiArray "
                    "commands in), the robot side of `adapt deploy EXPORT --robot dds:CONFIG`.")
    p.add_argument("--config", required=True, help="the dds config (TOML or JSON) the deploy "
                                                   "uses: domain, topics, command joints")
    p.add_argument("--robot", required=True,
                   help="a built-in robot (cheetah, quadruped) or a spec file (my_robot.toml)")
    p.add_argument("--condition", default="healthy", help="condition (see `adapt sims list`)")
    p.add_argument("--switch", action="append", default=[], metavar="T=COND",
                   help="from T seconds of robot time on, condition COND; repeatable")
    p.add_argument("--seed", type=int, default=0, help="initial-state and observation seed")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds of robot time once commands come "
                        "(default: run until stopped)")
    p.add_argument("--summary", default=None, help="write a JSON summary here when stopping")
    p.add_argument("--quiet", action="store_true", help="no start and stop lines")
    p.set_defaults(func=cmd_dds_robot)


class _Commands:
    """The newest command, kept by a DDS listener on arrival, with its arrival time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latest: tuple[np.ndarray, int] | None = None
        self.received = 0
        self.reader: Any = None

    def on_data(self, reader: Any) -> None:
        from export.runtime.dds import take_valid

        for s in take_valid(reader):
            now = time.time_ns()
            with self.lock:
                self.latest = (np.asarray(s.data, dtype=float), now)
                self.received += 1

    def pop(self) -> tuple[np.ndarray, int] | None:
        with self.lock:
            got, self.latest = self.latest, None
        return got


def cmd_dds_robot(args: argparse.Namespace) -> int:
    import mujoco

    from export.runtime.dds import (
        ObservationMap,
        command_qos,
        load_config,
        open_participant,
        sensor_qos,
    )
    from export.runtime.sim_robot import SimRobot
    from export.runtime.switches import parse_switches, switch_conditions
    from export.runtime.timeline import LatencyLog
    from sims.registry import get_robot

    config = load_config(args.config)
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise ValueError(f"--duration={args.duration}: allowed a number of seconds > 0")
    spec = get_robot(args.robot)
    switches = switch_conditions(
        parse_switches(args.switch, math.inf if args.duration is None else args.duration),
        spec)
    robot = SimRobot(spec, args.condition, seed=args.seed, switches=switches)
    model = spec.base_model()
    actuated = [model.joint(int(model.actuator_trnid[i, 0])).name for i in range(model.nu)]
    if list(config.command_joints) != actuated:
        raise ValueError(f"{args.config}: command_joints={list(config.command_joints)}: robot "
                         f"{spec.name!r} takes commands for {actuated} in that order")
    one_dof = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    joints = [j for j in range(model.njnt) if int(model.jnt_type[j]) in one_dof]
    names = [model.joint(j).name for j in joints]
    qadr = np.array([model.jnt_qposadr[j] for j in joints], dtype=np.int64)
    effort_of = {n: i for i, n in enumerate(actuated)}
    obs_map = ObservationMap.of([{"name": p.name, "start": p.start, "size": p.size}
                                 for p in spec.obs_parts], spec.obs_dim)
    base_adr = None
    if obs_map.base is not None:
        base_adr = int(model.jnt_qposadr[model.joint(obs_map.base[0]).id])
    low, high = robot.low, robot.high

    from cyclonedds.core import Listener
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from export.runtime.dds_types import Float64MultiArray, JointState, Odometry

    participant = open_participant(config)
    state_writer = DataWriter(participant, Topic(participant, config.topic("state_topic"),
                                                 JointState), qos=command_qos())
    odom_writer = (DataWriter(participant, Topic(participant, config.topic("odom_topic"),
                                                 Odometry), qos=command_qos())
                   if obs_map.base is not None else None)
    commands = _Commands()
    # Held by ``commands``: a reader that is garbage-collected leaves the topic.
    commands.reader = DataReader(participant, Topic(participant, config.topic("command_topic"),
                                           Float64MultiArray),
                        qos=sensor_qos(1), listener=Listener(on_data_available=commands.on_data))

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    period = robot.control_timestep
    n_steps = None if args.duration is None else int(round(args.duration / period))
    counts = dict.fromkeys(("commands", "held", "out_of_limits", "bad_commands",
                            "overruns", "published"), 0)
    latency = LatencyLog(_CAPACITY)
    last_stamp = 0
    ctrl = np.clip(np.zeros(robot.act_dim), low, high)
    obs = robot.reset()
    started = False
    curve: list[float] = []  # the return after each control step
    first_held: int | None = None

    def publish(obs: np.ndarray) -> int:
        physics = robot.sim.physics
        qpos = physics.data.qpos
        forces = physics.actuator_forces()
        efforts = np.array([forces[effort_of[n]] if n in effort_of else 0.0 for n in names])
        xy = (0.0, 0.0) if base_adr is None else (float(qpos[base_adr]),
                                                   float(qpos[base_adr + 1]))
        stamp = time.time_ns()
        js, odom = obs_map.messages(obs, names, qpos[qadr], stamp, config.frame_id, efforts,
                                    xy)
        if odom_writer is not None:
            odom_writer.write(odom)  # before its joint states: the pair is complete on arrival
        state_writer.write(js)
        counts["published"] += 1
        return stamp

    if not args.quiet:
        print(f"dds robot sim:{spec.name} [{robot.schedule.label}] at {1 / period:g} Hz: "
              f"{config.topic('state_topic')}"
              + (f" + {config.topic('odom_topic')}" if odom_writer is not None else "")
              + f" out, {config.topic('command_topic')} in, domain {config.domain_id}",
              flush=True)
    t0 = time.monotonic()
    k = 0
    try:
        while not stop.is_set():
            tick = t0 + k * period
            now = time.monotonic()
            if tick > now:
                time.sleep(tick - now)
            elif now - tick > period:
                # A real-time robot does not catch up on missed steps; it keeps its tick grid
                # (the controller's ticks are phased against it).
                counts["overruns"] += 1
                k = int((now - t0) / period)
            got = commands.pop()
            if got is not None:
                cmd, recv_ns = got
                counts["commands"] += 1
                latency.append((recv_ns - last_stamp) / 1e9)
                if cmd.shape != ctrl.shape or not np.all(np.isfinite(cmd)):
                    counts["bad_commands"] += 1
                else:
                    if np.any(cmd < low) or np.any(cmd > high):
                        counts["out_of_limits"] += 1
                    ctrl = np.clip(cmd, low, high)
                started = True
            elif started:
                counts["held"] += 1
                first_held = robot.steps if first_held is None else first_held
            if started:
                robot.act(ctrl)
                obs = robot.observe()
                curve.append(float(robot.total_reward))
            last_stamp = publish(obs)
            k += 1
            if n_steps is not None and robot.steps >= n_steps:
                break
    finally:
        summary = _summary(robot, counts, latency, period, commands.received)
        summary["first_held_step"] = first_held
        summary["return_curve"] = curve
        if args.summary:
            from sims.atomic import atomic_write

            with atomic_write(Path(args.summary)) as f:
                f.write(json.dumps(summary, indent=2).encode())
        if not args.quiet:
            lat = summary["latency_ms"]
            print(f"dds robot stopped: return {summary['return']:.2f} steps {summary['steps']} "
                  f"commands {counts['commands']} held {counts['held']} out of limits "
                  f"{counts['out_of_limits']} latency p50 {lat['p50']} / p99 {lat['p99']} ms",
                  flush=True)
    return 0


def _summary(robot: Any, counts: dict[str, int], latency: Any, period: float,
             received: int) -> dict[str, Any]:
    v = latency.values() * 1e3
    lat = ({"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
            "max": float(v.max())} if len(v) else {"p50": None, "p99": None, "max": None})
    m = robot.metrics()
    return {**m, "steps": robot.steps, "period_ms": period * 1e3, **counts,
            "commands_received": received, "latency_ms": lat,
            "latency_doc": "command received - stamp of the newest state published then"}


def main(argv: list[str] | None = None) -> int:
    """``python -m export.runtime.dds_sim --config ... --robot ...``"""
    from export.runtime.cli import dispatch

    parser = argparse.ArgumentParser(prog="python -m export.runtime.dds_sim",
                                     description="Serve a simulated robot over DDS.")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    return dispatch(parser, ["dds-robot", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
