"""The fixed-rate loop that drives a session on a robot: the :class:`Robot` and
:class:`Session` protocols, :func:`run` and its :class:`RunReport`, latency statistics and
the deadline watchdog that cancels a late ONNX Runtime run.

numpy and onnxruntime only (no torch, mujoco or ``sims``).
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort

from export.runtime.artifacts import ObservationError


@runtime_checkable
class Robot(Protocol):
    """What :func:`run` drives. Observations are 1-D arrays laid out as the metadata's
    ``obs_layout``; actions are 1-D arrays within ``action_low``/``action_high``."""

    def reset(self) -> np.ndarray:
        """Start an episode; returns the first observation."""
        ...

    def observe(self) -> np.ndarray:
        """The current observation."""
        ...

    def act(self, action: np.ndarray) -> None:
        """Apply an action (held until the next call)."""
        ...


class Session(Protocol):
    """What :func:`run` steps: :class:`ControllerSession` and
    :class:`export.runtime.policy.PolicySession` (both :class:`SessionBase`)."""

    kind: str  # manifest kind: "controller" or "policy"
    robot_name: str
    obs_dim: int
    meta: Mapping[str, Any]  # metadata; ``meta["obs_layout"]`` names the observation's parts
    counters: dict[str, int]
    last_error: str | None

    def warm_up(self) -> None:
        """Run the graphs once or more before the robot starts (no episode state touched)."""
        ...

    def reset(self) -> None:
        """Start an episode."""
        ...

    def reset_stats(self) -> None:
        ...

    def idle(self) -> None:
        """Work that can be done between steps, off the critical path."""
        ...

    def step(self, obs: Any, deadline: float | None = None) -> np.ndarray:
        """Observation in, action out; never raises."""
        ...

    def no_observation(self) -> np.ndarray:
        """The action for a tick whose observation could not be read."""
        ...

    def fallback(self) -> np.ndarray:
        """The safe action when stepping failed."""
        ...

    def latency(self) -> LatencyStats:
        ...


# --------------------------------------------------------------------------------------------
# Latency statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyStats:
    """Per-step latency in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencyStats:
        if not len(seconds):
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        ms = np.asarray(seconds, dtype=float) * 1e3
        return cls(len(ms), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                   float(ms.max()), float(ms.mean()))


# --------------------------------------------------------------------------------------------
# Deadline watchdog
# --------------------------------------------------------------------------------------------


class Watchdog:
    """A daemon thread that sets ``RunOptions.terminate`` of the armed run at its deadline."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._run_options: ort.RunOptions | None = None
        self._deadline = math.inf
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="onnx-deadline", daemon=True)
        self._thread.start()

    def arm(self, run_options: ort.RunOptions, deadline: float) -> None:
        with self._cv:
            self._run_options, self._deadline = run_options, deadline
            self._cv.notify()

    def disarm(self) -> None:
        with self._cv:  # no notify: a spurious wake-up just finds nothing armed
            self._run_options, self._deadline = None, math.inf

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _loop(self) -> None:
        with self._cv:
            while not self._closed:
                if self._run_options is None:
                    self._cv.wait()
                    continue
                remaining = self._deadline - time.perf_counter()
                if remaining > 0:
                    self._cv.wait(remaining)
                    continue
                self._run_options.terminate = True  # ORT stops before its next node
                self._run_options, self._deadline = None, math.inf


class DeadlineMiss(Exception):
    """Raised inside :meth:`SessionBase.step` when the graph was cancelled or late."""


# --------------------------------------------------------------------------------------------
# Fixed-rate loop
# --------------------------------------------------------------------------------------------


@dataclass
class RunReport:
    """What :func:`run` measured. ``latency``: observation in -> action out of the session's
    ``step``; ``tick``: from asking the robot for the observation to
    the robot accepting the action."""

    steps: int
    duration_s: float
    rate_hz: float
    achieved_rate_hz: float
    deadline_s: float
    deadline_misses: int
    nonfinite_obs: int
    bad_shape_obs: int
    session_errors: int
    bad_outputs: int
    robot_errors: int
    graph_actions: int
    overruns: int  # ticks that started late because the previous one overran its period
    latency: LatencyStats
    tick: LatencyStats
    interrupted: bool = False
    last_error: str | None = None
    robot: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(robot: Robot, session: Session, rate_hz: float, duration_s: float, *,
        deadline_s: float | None = None, pace: bool = True, reset: bool = True,
        on_tick: Callable[[dict[str, Any]], None] | None = None,
        spin_s: float = 0.002) -> RunReport:
    """Drive ``robot`` with ``session`` at ``rate_hz`` for ``duration_s`` seconds.

    Each tick: observe, step with a deadline ``deadline_s`` after the observation (default
    90 % of the period), act, then prepare the next step (``session.idle()``: a controller
    draws its next noise) while waiting for the next tick. A step that misses its deadline
    executes the session's fallback (a controller's previous plan shifted by one step, a
    policy's previous action) and is counted. ``pace=False`` starts each tick as soon as the
    previous one ends (a simulator running as fast as possible); deadlines still apply. The
    wait for a tick sleeps and then busy-waits its last ``spin_s`` seconds; Python's garbage
    collector is paused during the run (its pauses would land on the control path; it collects
    once before the robot starts). The robot's observation size is checked on ``reset()``
    before the first step (:class:`ObservationError`). Exceptions from the robot or the
    session are counted and replaced by the safe action; Ctrl-C ends the run early with a
    report.
    """
    if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"rate_hz={rate_hz!r}: allowed a number > 0")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s)
            and duration_s > 0):
        raise ValueError(f"duration_s={duration_s!r}: allowed a number > 0")
    period = 1.0 / rate_hz
    deadline = 0.9 * period if deadline_s is None else float(deadline_s)
    if not (math.isfinite(deadline) and deadline > 0):
        raise ValueError(f"deadline_s={deadline_s!r}: allowed a number > 0")
    n_ticks = max(1, int(round(duration_s * rate_hz)))

    # Before the robot starts: a real-time robot's clock runs from its reset, and the warm-up
    # (and the collection before pausing the garbage collector) must not shift the control
    # ticks against it.
    session.warm_up()
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    first = robot.reset() if reset else robot.observe()
    shape = np.shape(first)
    if shape != (session.obs_dim,):
        if gc_was_enabled:
            gc.enable()
        raise ObservationError(
            f"robot observation has shape {shape}; the {session.kind} for {session.robot_name!r} "
            f"expects ({session.obs_dim},) laid out as "
            f"{[p['name'] for p in session.meta['obs_layout']]}")
    session.reset()
    session.reset_stats()
    session.idle()

    robot_errors = overruns = 0
    tick_lat: list[float] = []
    interrupted = False
    t_start = time.perf_counter()
    try:
        for k in range(n_ticks):
            if pace:
                tick = t_start + k * period
                now = time.perf_counter()
                if tick > now:
                    # Sleep, then spin the last stretch: waking from a sleep can be late by
                    # milliseconds, and a core kept busy until the tick starts the step warm.
                    if tick - now > spin_s:
                        time.sleep(tick - now - spin_s)
                    while time.perf_counter() < tick:
                        pass
                elif now - tick > 0.5 * period and k > 0:
                    overruns += 1
            t_obs = time.perf_counter()
            obs: Any = first
            observed = True
            if k > 0:
                try:
                    obs = robot.observe()
                except Exception as e:  # a sensor fault: no observation, not a crash
                    robot_errors += 1
                    session.last_error = f"robot.observe: {type(e).__name__}: {e}"
                    obs, observed = None, False
            try:
                action = (session.step(obs, deadline=t_obs + deadline) if observed
                          else session.no_observation())
            except Exception as e:  # step() does not raise; belt and braces for a robot
                session.counters["session_errors"] += 1
                session.last_error = f"{type(e).__name__}: {e}"
                action = session.fallback()
            try:
                robot.act(action)
            except Exception as e:
                robot_errors += 1
                session.last_error = f"robot.act: {type(e).__name__}: {e}"
            t_act = time.perf_counter()
            tick_lat.append(t_act - t_obs)
            session.idle()  # idle time: off the next step's critical path
            if on_tick is not None:
                try:
                    on_tick({"tick": k, "t": t_act - t_start, "latency_s": t_act - t_obs,
                             "action": action, "obs": obs, "counters": dict(session.counters)})
                except Exception as e:  # a display bug must not stop the robot
                    session.last_error = f"on_tick: {type(e).__name__}: {e}"
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if gc_was_enabled:
            gc.enable()
    elapsed = time.perf_counter() - t_start
    steps = len(tick_lat)
    c = session.counters
    robot_info: dict[str, Any] = {}
    metrics = getattr(robot, "metrics", None)
    if callable(metrics):
        try:
            robot_info = dict(metrics())
        except Exception as e:
            session.last_error = f"robot.metrics: {type(e).__name__}: {e}"
    return RunReport(
        steps=steps, duration_s=elapsed, rate_hz=float(rate_hz),
        achieved_rate_hz=steps / elapsed if elapsed > 0 else math.nan, deadline_s=deadline,
        deadline_misses=c["deadline_misses"], nonfinite_obs=c["nonfinite_obs"],
        bad_shape_obs=c["bad_shape_obs"], session_errors=c["session_errors"],
        bad_outputs=c["bad_outputs"], robot_errors=robot_errors,
        graph_actions=c["graph_actions"], overruns=overruns,
        latency=session.latency(), tick=LatencyStats.of(tick_lat), interrupted=interrupted,
        last_error=session.last_error, robot=robot_info)
