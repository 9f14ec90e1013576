"""``adapt deploy`` (also ``python -m export.runtime.cli deploy``): the robot-side entry point.

``deploy`` runs either kind of deploy folder — a controller (``adapt export``) or a recurrent
policy (``adapt export-policy``) — as its ``manifest.json`` says, through the same loop.

Heavy imports happen inside the commands: ``deploy`` itself loads only numpy, onnxruntime
and (for ``sim:`` robots) mujoco with ``sims``' torch-free modules. The ``adapt`` entry point
builds the parsers of every layer, which imports torch;
``python -m export.runtime.cli deploy ...`` does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from export.runtime import artifacts as C
from export.runtime.switches import parse_switches, switch_conditions


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser(
        "deploy", help="run an exported controller or policy against a robot at a fixed rate",
        description="Runs controller.onnx (a folder from `adapt export`) or policy.onnx with "
                    "reward.onnx (a folder from `adapt export-policy`) through ONNX Runtime "
                    "(no torch) at --rate Hz, shows live latency and speed, and writes a JSON "
                    "report with a timeline (and timeline.png) of latency, deadline misses, "
                    "memory and speed.")
    d.add_argument("export_dir",
                   help="a folder written by `adapt export` or `adapt export-policy`")
    d.add_argument("--robot", required=True,
                   help="sim:NAME — the MuJoCo simulation of a built-in robot (cheetah, "
                        "quadruped), of the robot the export was made for (its name) or of "
                        "a robot spec file (sim:my_robot.toml); dds:CONFIG — a robot on "
                        "ROS 2-compatible DDS topics (docs/deploy-robot.md)")
    d.add_argument("--condition", default="healthy",
                   help="condition of the simulated robot (see `adapt sims list`)")
    d.add_argument("--switch", action="append", default=[], metavar="T=COND",
                   help="from T seconds on, condition COND (the robot's state is kept); "
                        "repeat for a schedule, times increasing: --switch 600=disabled:bthigh "
                        "--switch 1200=slope:10")
    d.add_argument("--rate", type=float, default=None,
                   help="control rate in Hz (default: 1 / the model's control timestep)")
    d.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    d.add_argument("--deadline-ms", type=float, default=None,
                   help="per-step compute budget (default: 90%% of the period)")
    d.add_argument("--fast", action="store_true",
                   help="simulate as fast as possible (one control step per tick, no pacing) "
                        "instead of in real time")
    d.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1)")
    d.add_argument("--seed", type=int, default=0,
                   help="initial-state seed (and the noise seed of a controller, or of a "
                        "policy exported with --action-std)")
    d.add_argument("--adapt-before-full", action="store_true",
                   help="controllers only: adapt on a partly filled window instead of the "
                        "prior until M exist")
    d.add_argument("--safe-action", choices=("shift", "zeros"), default="shift",
                   help="action for an unusable observation (default: a controller's previous "
                        "plan shifted, a policy's previous action)")
    d.add_argument("--window", type=float, default=10.0,
                   help="seconds of ticks per timeline row (default 10)")
    d.add_argument("--out", default=None,
                   help="folder for report.json (summary and timeline) and timeline.png")
    d.add_argument("--quiet", action="store_true", help="no live status line")
    d.set_defaults(func=cmd_deploy, interrupted=lambda args: (
        "nothing written (report.json is written when the run ends)" if args.out
        else "nothing written"))


# --------------------------------------------------------------------------------------------
# deploy
# --------------------------------------------------------------------------------------------


def _sim_name(robot: str) -> str:
    if not robot.startswith("sim:") or not robot[4:]:
        raise ValueError(f"--robot={robot!r}: allowed sim:NAME (the MuJoCo simulation), "
                         "e.g. sim:cheetah, sim:quadruped or sim:my_robot.toml")
    return robot[4:]


def _sim_robot(export_dir: str, name: str) -> Any:
    """The ``sims.robots.Robot`` that ``sim:NAME`` means: a spec an export carries is
    registered first, so the robot it was made for is known by name without its spec file; a
    robot named without a decision step (``sim:cheetah``) runs at the export's own
    (``cheetah@5``: each action held five control steps), as the controller was trained."""
    from sims.registry import ROBOTS, get_robot, register_document
    from sims.robots import FRAME_SKIP_MARK, base_name

    folder = Path(export_dir)
    manifest = C.read_manifest(folder) if (folder / C.MANIFEST_FILE).is_file() else {}
    made_for = str(manifest.get("robot", ""))
    if FRAME_SKIP_MARK not in name and FRAME_SKIP_MARK in made_for and (
            base_name(made_for) == name):
        name = made_for
    if name in ROBOTS or name.endswith((".toml", ".xml")):
        return get_robot(name)  # checked against the export's record by _check_robot
    register_document(manifest.get("spec", ""), str(folder / C.MANIFEST_FILE))
    return get_robot(name)


def _check_robot(session: Any, robot: Any) -> None:
    """Refuse a robot whose model is not the one the export was made for (another MJCF or
    control step under the same name); exports without the record are checked by name."""
    from sims.specs import check_robot_identity

    identity = session.meta.get("robot_identity")
    if identity is not None:
        check_robot_identity(identity, robot, str(session.path))


class _Status:
    """One status line: rewritten in place four times a second on a terminal; in a log, one
    line every :attr:`LOG_EVERY_S` seconds (a long run's log stays readable)."""

    LOG_EVERY_S = 10.0
    RECENT = 200  # steps the line's percentiles cover

    def __init__(self, robot: Any, enabled: bool) -> None:
        import numpy as np

        self.robot, self.enabled = robot, enabled
        self.tty = sys.stdout.isatty()
        # The first line after one interval, not at the first tick: by then the ETA means
        # something.
        self.last = time.perf_counter()
        self.printed = False
        self.recent = np.zeros(self.RECENT)  # a ring: nothing grows per tick
        self.count = 0

    def __call__(self, info: dict[str, Any]) -> None:
        self.recent[self.count % self.RECENT] = info["latency_s"]
        self.count += 1
        now = time.perf_counter()
        if not self.enabled or now - self.last < (0.25 if self.tty else self.LOG_EVERY_S):
            return
        self.last, self.printed = now, True
        import numpy as np

        lat = self.recent[:min(self.count, self.RECENT)] * 1e3
        m = self.robot.metrics()
        c = info["counters"]
        speed, distance = _num(m.get("speed")), _num(m.get("distance"))
        done, total, elapsed = info["tick"] + 1, info["ticks"], info["t"]
        eta = elapsed / done * (total - done)
        line = (f"{_clock(elapsed)} / ETA {_clock(eta)}  step {done}/{total}  latency p50 "
                f"{np.percentile(lat, 50):6.2f} ms  p99 {np.percentile(lat, 99):6.2f} ms  "
                f"speed {speed:6.2f} m/s  distance {distance:7.2f} m  misses "
                f"{c['deadline_misses']}  non-finite {c['nonfinite_obs']}  [{m['condition']}]")
        print("\r" + line if self.tty else line, end="" if self.tty else "\n", flush=True)

    def close(self) -> None:
        if self.printed and self.tty:
            print(flush=True)


def _num(x: Any) -> float:
    """A metric for a status line: NaN when the robot does not report it."""
    return math.nan if x is None else float(x)


def _clock(seconds: float) -> str:
    """h:mm:ss"""
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _open_session(args: argparse.Namespace, robot: str | None) -> tuple[Any, str, dict[str, Any]]:
    """The session for the folder's kind, a one-line description and the report's fields."""
    from export.runtime.artifacts import deploy_kind
    from export.runtime.session import ControllerSession

    if deploy_kind(args.export_dir) == C.KIND_POLICY:
        from export.runtime.policy import PolicySession

        if args.adapt_before_full:
            raise ValueError(f"--adapt-before-full: allowed only for a controller (`adapt "
                             f"export`); {args.export_dir} holds a policy, which adapts "
                             "through its hidden state")
        ps = PolicySession(args.export_dir, robot=robot, threads=args.threads,
                           safe_action=args.safe_action, seed=args.seed)
        info = {k: ps.meta.get(k) for k in ("method", "arch", "hidden_size")}
        info[C.ACTION_STD] = ps.action_std
        what = (f"{ps.path}: {info['method']} {info['arch']} policy for {ps.robot_name}, "
                f"hidden {ps.hidden_size}"
                + (f", action noise {ps.action_std:g} half-ranges" if ps.action_std else ""))
        return ps, what, info
    cs = ControllerSession(args.export_dir, robot=robot, threads=args.threads,
                           seed=args.seed, adapt_before_full=args.adapt_before_full,
                           safe_action=args.safe_action)
    planner = cs.planner
    members = cs.meta.get("ensemble", 1)  # absent: one model
    learner = cs.meta["learner"] + (f" (ensemble of {members})" if members > 1 else "")
    what = (f"{cs.path}: {learner} for {cs.robot_name}, {planner['name']} "
            f"{planner['num_candidates']} x {planner['horizon']}, M={cs.m}")
    return cs, what, {"learner": cs.meta["learner"], "ensemble": members, "planner": planner}


def _dds_deploy(args: argparse.Namespace) -> str | None:
    """The config path of ``--robot dds:CONFIG`` (None for ``sim:``), with the options that
    belong to a simulated robot refused: a dds: robot runs on its own clock and condition."""
    if not args.robot.startswith("dds:"):
        return None
    if not args.robot[4:]:
        raise ValueError(f"--robot={args.robot!r}: allowed dds:CONFIG, a TOML or JSON file")
    for flag, given in (("--fast", args.fast), ("--switch", bool(args.switch)),
                        ("--condition", args.condition != "healthy")):
        if given:
            raise ValueError(f"{flag}: not allowed with --robot dds:..., which runs on its own "
                             "clock and condition (give them to the robot: `adapt dds-robot`)")
    return args.robot[4:]


def cmd_deploy(args: argparse.Namespace) -> int:
    from export.runtime.loop import run
    from export.runtime.timeline import write_plot

    dds_config = _dds_deploy(args)
    name = None if dds_config is not None else _sim_name(args.robot)
    if not (math.isfinite(args.duration) and args.duration > 0):
        raise ValueError(f"--duration={args.duration}: allowed a number of seconds > 0")
    if args.rate is not None and not (math.isfinite(args.rate) and args.rate > 0):
        raise ValueError(f"--rate={args.rate}: allowed a number of Hz > 0")
    if not (math.isfinite(args.window) and args.window > 0):
        raise ValueError(f"--window={args.window}: allowed a number of seconds > 0")
    switch_times = parse_switches(args.switch, args.duration)
    if dds_config is not None:
        from export.runtime.dds import DdsRobot, load_config

        config = load_config(dds_config)  # before the export: a bad config costs nothing
        session, what, info = _open_session(args, None)
        switches: list[tuple[float, Any]] = []
    else:
        from export.runtime.sim_robot import SimRobot

        assert name is not None
        sim = _sim_robot(args.export_dir, name)
        switches = switch_conditions(switch_times, sim)
        session, what, info = _open_session(args, sim.name)
        _check_robot(session, sim)
    rate = args.rate if args.rate is not None else 1.0 / session.control_timestep
    if dds_config is not None:
        robot: Any = DdsRobot(config, session.meta, rate,
                              capacity=int(args.duration * rate) + 16)
        try:
            robot.connect()
        except BaseException:
            robot.close()
            raise
        schedule = f"dds {config.topic('state_topic')} -> {config.topic('command_topic')}"
    else:
        robot = SimRobot(sim, args.condition, seed=args.seed, realtime=not args.fast,
                         switches=switches)
        schedule = robot.schedule.label
    if abs(rate * session.control_timestep - 1.0) > 1e-6:
        print(f"warning: --rate {rate:g} Hz differs from the {session.kind}'s control rate "
              f"{1 / session.control_timestep:g} Hz; it was trained for "
              f"{session.control_timestep:g} s steps", file=sys.stderr)
    deadline = None if args.deadline_ms is None else args.deadline_ms / 1e3
    robot_label = args.robot if dds_config is not None else f"sim:{sim.name}"
    print(f"{what}; robot {robot_label} [{schedule}] at {rate:g} Hz for "
          f"{args.duration:g} s{' (as fast as possible)' if args.fast else ' (real time)'}",
          flush=True)
    status = _Status(robot, not args.quiet)
    try:
        report = run(robot, session, rate, args.duration, deadline_s=deadline,
                     pace=not args.fast, on_tick=status, window_s=args.window)
    finally:
        if dds_config is not None:
            robot.close()
    status.close()
    m = report.robot
    errors = report.session_errors + report.robot_errors + report.bad_outputs
    miss_pct = 100.0 * report.deadline_misses / report.steps if report.steps else math.nan
    mem = report.memory
    details = report.to_dict()
    timeline = details.pop("timeline")
    summary = {
        "export_dir": str(Path(args.export_dir)), "kind": session.kind, **info,
        "robot": args.robot,
        "schedule": schedule,
        "switches": [{"t_s": t, "condition": c.label} for t, c in switches],
        "rate_hz": rate, "duration_s": args.duration, "realtime": not args.fast,
        "return": m.get("return"), "distance": m.get("distance"),
        "latency_ms": {"p50": report.latency.p50_ms, "p99": report.latency.p99_ms,
                       "max": report.latency.max_ms},
        "deadline_misses": report.deadline_misses, "deadline_miss_pct": miss_pct,
        "nonfinite_obs": report.nonfinite_obs, "errors": errors,
        "memory_source": report.memory_source, "memory": mem,
        "window_s": args.window, "timeline": timeline,
        "report": details,
    }
    if dds_config is not None:
        summary["dds"] = m
        lat = m["added_latency_ms"]
        print(f"dds: added latency (state stamped -> command written) p50 {lat['p50']} / p99 "
              f"{lat['p99']} ms; late commands {m['late_commands']}, stale {m['stale']}, "
              f"non-finite {m['nonfinite']}, out of range {m['out_of_range']}, malformed "
              f"{m['malformed']}, safe commands {m['safe_commands']}, clipped "
              f"{m['clipped_commands']}")
    growth = ("n/a (one window)" if mem.get("growth_mb") is None
              else f"{mem['growth_mb']:+.2f} MB ({mem['growth_pct']:+.2f} %)")
    print(f"return {_num(m.get('return')):.2f}  distance "
          f"{_num(m.get('distance')):.2f} m  steps {report.steps}  deadline misses "
          f"{report.deadline_misses} ({miss_pct:.2f} %)  latency p50 "
          f"{report.latency.p50_ms:.2f} / p99 {report.latency.p99_ms:.2f} / max "
          f"{report.latency.max_ms:.2f} ms  memory growth {growth}  non-finite obs "
          f"{report.nonfinite_obs}  errors {errors}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(summary, indent=2, default=_jsonable))
        print(f"wrote {out / 'report.json'}")
        try:
            write_plot(out / "timeline.png", timeline, report.deadline_s * 1e3,
                       [(t, c.label) for t, c in switches],
                       title=f"{what}\n[{schedule}] at {rate:g} Hz")
            print(f"wrote {out / 'timeline.png'}")
        except ImportError:
            print("no timeline.png: matplotlib is not installed (report.json holds the "
                  "timeline)")
    return 0


def _jsonable(x: Any) -> Any:
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, np.generic):
            return x.item()
    except ImportError:
        pass
    return str(x)


def main(argv: list[str] | None = None) -> int:
    """``python -m export.runtime.cli deploy ...``: the same commands without the rest of ``adapt``,
    whose parser imports every layer (and so torch) — on a robot only the runtime's
    dependencies (numpy, onnxruntime; mujoco for ``sim:`` robots) are loaded."""
    parser = argparse.ArgumentParser(prog="python -m export.runtime.cli",
                                     description="Deploy exported ONNX controllers and policies.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return dispatch(parser, argv)


#: Exit status of a command ended by Ctrl-C: 128 + SIGINT, what a shell reports for a process
#: the signal ended.
INTERRUPTED_STATUS = 130


def dispatch(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run the chosen command. Bad input (refused before any work) is one
    line on stderr and exit status 2, as argparse does for malformed arguments. Ctrl-C is one
    line saying what was kept (the command's ``interrupted(args)``, set with ``set_defaults``)
    and exit status :data:`INTERRUPTED_STATUS`."""
    with interrupts_between_imports():
        args = parser.parse_args(argv)
        try:
            return int(args.func(args) or 0)
        except (ValueError, FileNotFoundError, FileExistsError) as e:
            print(f"adapt: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            pass
        # Reported once the exception is gone: progress bars in the frames it held have
        # closed their lines by then, so this line comes last.
        describe = getattr(args, "interrupted", None)
        return report_interrupt(lambda: describe(args) if describe else "nothing written")


@contextlib.contextmanager
def interrupts_between_imports() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, except while a module is being imported: there it
    would leave the import half done (a C extension's initialisation fails with an ImportError,
    a half-imported torch crashes the process when imported again), so it is raised once the
    import has finished (likewise after a ``__del__``, where it would be printed and lost).
    Only in the main thread, which is where signals are handled, and only in place of Python's
    own handler: an ignored SIGINT (a background job's) stays ignored, and a program that runs
    a command with its own handler keeps it."""
    if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupt_between_imports)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_between_imports(signum: int, frame: Any) -> None:
    while frame is not None:
        # In a finalizer too: Python would print the exception as ignored there and go on.
        if frame.f_code.co_filename.startswith("<frozen importlib") or (
                frame.f_code.co_name == "__del__"):
            # again in 10 ms: the import will have finished, or it is put off again
            threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT)).start()
            return
        frame = frame.f_back
    raise KeyboardInterrupt


def report_interrupt(what_was_kept: Callable[[], str]) -> int:
    """Print ``adapt: interrupted: WHAT`` (``what_was_kept()``) on stderr and return
    :data:`INTERRUPTED_STATUS`. A second Ctrl-C meanwhile is ignored: the line is all a user
    sees, never a traceback."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        try:
            what = what_was_kept()
        except Exception as e:  # the note is a courtesy: the interrupt is what gets reported
            what = f"what was kept could not be read ({type(e).__name__}: {e})"
        sys.stdout.flush()
        print(f"adapt: interrupted: {what}", file=sys.stderr, flush=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return INTERRUPTED_STATUS


if __name__ == "__main__":
    sys.exit(main())
