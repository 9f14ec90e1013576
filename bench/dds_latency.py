"""What DDS adds to a control tick: an exported controller on the cheetah at 100 Hz, once
in process (``SimRobot`` in real time) and once across two processes over ROS 2-compatible
DDS topics (``adapt dds-robot`` + ``DdsRobot``), CycloneDDS on 127.0.0.1 only (multicast off,
the peer listed; nothing leaves the machine).

- in process: the loop's tick (observation asked -> action accepted by the robot: observe,
  controller step, act);
- DDS round trip: state stamped by the robot process -> its command received there (measured
  in the robot process against the newest state it had published: exact while each command
  answers the newest state);
- DDS runtime side: state stamped -> command written by the runtime (the report's
  ``added_latency_ms``), and the state's age when the runtime took it (one transport hop plus
  the wait for the tick, which starts a quarter period after the robot's);
- added round trip = DDS round trip - in-process tick, at each percentile.

Every figure as p50 / p99 in ms and as a share of the control period. The controller: GrBAL
(2 x 64) with M = 16 and MPPI 64 x 10, untrained weights (latency does not depend on training).
Prints readable lines; the last line is one JSON object. About 30 s.

    python bench/dds_latency.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE_HZ = 100.0


def build_export(out: Path) -> Path:
    from adaptive_control.learners import GrBALConfig, make_learner
    from adaptive_control.models.normalizer import Normalizer
    from adaptive_control.planning import planner_config
    from adaptive_control.training.config import TrainConfig
    from export.exporter import export_learner
    from sims.registry import get_family

    cfg = TrainConfig(learner="grbal", family="cheetah-cripple", decision_steps=1, m=16, k=16,
                      planner=planner_config("mppi", num_candidates=64, horizon=10),
                      grbal=GrBALConfig(hidden_sizes=(64, 64)))
    robot = get_family(cfg.family).robot
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((512, robot.obs_dim))
    act = rng.uniform(-1, 1, (512, robot.act_dim))
    learner = make_learner("grbal", robot.obs_dim, robot.act_dim, cfg.grbal,
                           Normalizer.fit(obs, act, obs + 0.1 * rng.standard_normal(obs.shape)))
    return export_learner(learner.eval(), cfg, out, verify=False).out_dir


def pct(values: np.ndarray | list[float], period_ms: float) -> dict[str, float]:
    v = np.asarray(values, float)
    p50, p99 = float(np.percentile(v, 50)), float(np.percentile(v, 99))
    return {"p50_ms": p50, "p99_ms": p99, "p50_periods": p50 / period_ms,
            "p99_periods": p99 / period_ms, "n": int(len(v))}


def line(name: str, s: dict[str, float]) -> str:
    return (f"  {name:34s} p50 {s['p50_ms']:6.2f} ms ({s['p50_periods']:5.1%})  p99 "
            f"{s['p99_ms']:6.2f} ms ({s['p99_periods']:5.1%})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="each run's length")
    args = ap.parse_args()
    from export.runtime.dds import DdsRobot, load_config
    from export.runtime.loop import run
    from export.runtime.session import ControllerSession
    from export.runtime.sim_robot import SimRobot

    period_ms = 1e3 / RATE_HZ
    with tempfile.TemporaryDirectory() as tmp_:
        tmp = Path(tmp_)
        export = build_export(tmp / "export")
        print(f"controller: GrBAL 2 x 64, M=16, MPPI 64 x 10 on the cheetah at {RATE_HZ:g} Hz, "
              f"{args.seconds:g} s per run; {platform.processor() or platform.machine()}, "
              f"load {os.getloadavg()[0]:.2f}", flush=True)

        # In process, real time.
        robot = SimRobot("cheetah", "healthy", seed=0, realtime=True)
        session = ControllerSession(export, robot="cheetah", seed=0)
        report = run(robot, session, RATE_HZ, args.seconds)
        ticks = session.latencies.values()  # the step alone; the tick below adds observe/act
        in_step = pct(ticks * 1e3, period_ms)
        in_tick = {"p50_ms": report.tick.p50_ms, "p99_ms": report.tick.p99_ms,
                   "p50_periods": report.tick.p50_ms / period_ms,
                   "p99_periods": report.tick.p99_ms / period_ms, "n": report.tick.n}

        # Across processes over DDS.
        domain = random.Random(os.getpid()).randrange(1, 230)
        cfg_path = tmp / "robot.json"
        cfg_path.write_text(json.dumps({
            "domain_id": domain, "interface": "127.0.0.1", "peers": ["127.0.0.1"],
            "multicast": False,
            "command_joints": ["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"]}))
        summary = tmp / "sim.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        sim = subprocess.Popen(
            [sys.executable, "-m", "export.runtime.dds_sim", "--config", str(cfg_path),
             "--robot", "cheetah", "--summary", str(summary), "--quiet"], cwd=ROOT, env=env)
        try:
            session = ControllerSession(export, robot="cheetah", seed=0)
            dds = DdsRobot(load_config(cfg_path), session.meta, RATE_HZ,
                           capacity=int(args.seconds * RATE_HZ) + 16)
            dds.connect(timeout_s=30.0)
            dds_report = run(dds, session, RATE_HZ, args.seconds)
            time.sleep(0.05)
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(timeout=30)
        dds.close()
        sim_sum = json.loads(summary.read_text())
        m = dds.metrics()
        # The sim's first latencies are from before the runtime's first tick (its reset state
        # re-published while waiting): all its commands count, none is from that wait.
        round_trip = {"p50_ms": sim_sum["latency_ms"]["p50"],
                      "p99_ms": sim_sum["latency_ms"]["p99"],
                      "p50_periods": sim_sum["latency_ms"]["p50"] / period_ms,
                      "p99_periods": sim_sum["latency_ms"]["p99"] / period_ms,
                      "n": sim_sum["commands"]}
        written = pct(dds.added.values() * 1e3, period_ms)
        age = pct(dds.age.values() * 1e3, period_ms)
        added = {k: round_trip[k] - in_tick[k] for k in ("p50_ms", "p99_ms")}
        added.update({"p50_periods": added["p50_ms"] / period_ms,
                      "p99_periods": added["p99_ms"] / period_ms})

    print("in process (SimRobot, real time):")
    print(line("controller step", in_step))
    print(line("tick (observe + step + act)", in_tick))
    print(f"over DDS (loopback, {sim_sum['commands']} commands, {sim_sum['held']} ticks held "
          f"the previous one, {m['repeated_states']} repeated states, {m['stale']} stale):")
    print(line("state age when taken", age))
    print(line("stamped -> command written", written))
    print(line("stamped -> command received", round_trip))
    print(f"  added round trip (received - in-process tick): p50 {added['p50_ms']:.2f} ms "
          f"({added['p50_periods']:.1%} of the period), p99 {added['p99_ms']:.2f} ms "
          f"({added['p99_periods']:.1%})")
    print(json.dumps({
        "bench": "dds_latency", "rate_hz": RATE_HZ, "period_ms": period_ms,
        "seconds": args.seconds, "load_avg_1min": os.getloadavg()[0],
        "in_process": {"step": in_step, "tick": in_tick,
                       "deadline_misses": report.deadline_misses},
        "dds": {"state_age": age, "stamped_to_written": written,
                "stamped_to_received": round_trip, "held": sim_sum["held"],
                "repeated_states": m["repeated_states"], "stale": m["stale"],
                "late_commands": m["late_commands"],
                "deadline_misses": dds_report.deadline_misses},
        "added_round_trip": added,
    }))


if __name__ == "__main__":
    main()
