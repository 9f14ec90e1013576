"""The fixed-rate loop that drives a session on a robot: the :class:`Robot` and
:class:`Session` protocols, :func:`run` and its :class:`RunReport`, latency statistics and
the deadline watchdog that cancels a late ONNX Runtime run. The per-window timeline of a run
is :mod:`export.runtime.timeline`.

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
from export.runtime.timeline import MEMORY_SOURCE, LatencyLog, Timeline, memory_growth


@runtime_checkable
class Robot(Protocol):
    """What :func:`run` drives. Observations are 1-D arrays laid out as the metadata's
    ``obs_layout``; actions are 1-D arrays within ``action_low``/``action_high``.

    A robot may also have ``metrics() -> dict``: :func:`run` reads it at the end of the run
    (``RunReport.robot``) and of every timeline window, where ``condition``, ``speed``,
    ``distance`` and ``flipped_steps`` / ``sim_steps`` go into the row. A robot with
    ``window_metrics() -> dict`` adds that dict's items to every timeline row (called once
    per window, at its close: the figures of the window since the previous call)."""

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
    latencies: LatencyLog  # seconds per step; :func:`run` reserves the run's ticks up front
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
    def of(cls, seconds: Sequence[float] | np.ndarray) -> LatencyStats:
        """Exact statistics (numpy's linear-interpolation percentiles) of all ``seconds``."""
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
    window_s: float = math.nan
    # One row per window (:class:`~export.runtime.timeline.Timeline` says what a row holds).
    timeline: list[dict[str, Any]] = field(default_factory=list)
    memory_source: str = MEMORY_SOURCE
    # Last window's memory against the first's: first_mb, last_mb, growth_mb, growth_pct.
    memory: dict[str, float | None] = field(default_factory=dict)
    idle_collections: int = 0  # young-generation garbage collections run in idle time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: A young-generation collection (a few hundred objects) took 4 µs median and 46 µs at worst
#: when measured between steps; it runs only when at least this much time is left before
#: the next tick, so it never delays one.
IDLE_COLLECT_SLACK_S = 0.001


def _idle_collect() -> bool:
    """Collect the young generations when CPython's own thresholds say so, as its automatic
    collector would; never the oldest one (tens to hundreds of ms with torch loaded). So a
    reference cycle created and dropped each tick is freed instead of piling up for the whole
    run. True if a collection ran."""
    c0, c1, _ = gc.get_count()
    t0, t1, _ = gc.get_threshold()
    if t0 and c1 >= t1:
        gc.collect(1)
    elif t0 and c0 >= t0:
        gc.collect(0)
    else:
        return False
    return True


def run(robot: Robot, session: Session, rate_hz: float, duration_s: float, *,
        deadline_s: float | None = None, pace: bool = True, reset: bool = True,
        on_tick: Callable[[dict[str, Any]], None] | None = None,
        spin_s: float = 0.002, window_s: float = 10.0) -> RunReport:
    """Drive ``robot`` with ``session`` at ``rate_hz`` for ``duration_s`` seconds.

    Each tick: observe, step with a deadline ``deadline_s`` after the observation (default
    90 % of the period), act, then prepare the next step (``session.idle()``: a controller
    draws its next noise) while waiting for the next tick. A step that misses its deadline
    executes the session's fallback (a controller's previous plan shifted by one step, a
    policy's previous action) and is counted. ``pace=False`` starts each tick as soon as the
    previous one ends (a simulator running as fast as possible); deadlines still apply. The
    wait for a tick sleeps and then busy-waits its last ``spin_s`` seconds.

    Long runs keep memory flat: the per-step latencies go into storage reserved for all the
    run's ticks before the robot starts (:class:`~export.runtime.timeline.LatencyLog`), so
    the report's percentiles are exact and nothing grows per tick. Every ``window_s`` seconds
    of ticks (``window_s * rate_hz`` ticks, also when not paced) a timeline row is added in
    idle time (:class:`~export.runtime.timeline.Timeline`); a run shorter than a window has
    one row. Python's garbage collector is paused during the run (its pauses would land on
    the control path; it collects once before the robot starts); in idle time, when at least
    :data:`IDLE_COLLECT_SLACK_S` is left before the next tick, the young generations are
    collected as CPython's thresholds ask (:func:`_idle_collect`).

    The robot's observation size is checked on ``reset()`` before the first step
    (:class:`ObservationError`). Exceptions from the robot or the session are counted and
    replaced by the safe action; Ctrl-C ends the run early with a report.
    """
    if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"rate_hz={rate_hz!r}: allowed a number > 0")
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s)
            and duration_s > 0):
        raise ValueError(f"duration_s={duration_s!r}: allowed a number > 0")
    if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s={window_s!r}: allowed a number of seconds > 0")
    period = 1.0 / rate_hz
    deadline = 0.9 * period if deadline_s is None else float(deadline_s)
    if not (math.isfinite(deadline) and deadline > 0):
        raise ValueError(f"deadline_s={deadline_s!r}: allowed a number > 0")
    n_ticks = max(1, int(round(duration_s * rate_hz)))
    timeline = Timeline(max(1, int(round(window_s * rate_hz))), float(rate_hz))
    metrics = getattr(robot, "metrics", None)
    if not callable(metrics):
        metrics = None
    window_metrics = getattr(robot, "window_metrics", None)
    if not callable(window_metrics):
        window_metrics = None

    # Before the robot starts: a real-time robot's clock runs from its reset, and the warm-up,
    # the storage for the run's latencies (and the collection before pausing the garbage
    # collector) must not shift the control ticks against it.
    session.warm_up()
    tick_lat = LatencyLog(n_ticks)
    session.reset_stats()
    session.latencies.reserve(n_ticks)
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
    session.idle()

    def close_window(ticks: int, now: float) -> None:
        m = extra = None
        try:
            if metrics is not None:
                m = metrics()
            if window_metrics is not None:
                extra = window_metrics()
        except Exception as e:
            session.last_error = f"robot.metrics: {type(e).__name__}: {e}"
        timeline.close(ticks, now - t_start, session.latencies,
                       session.counters["deadline_misses"], overruns, m, extra)

    robot_errors = overruns = collections = 0
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
            # Idle time: off the next step's critical path.
            session.idle()
            if timeline.due(k + 1):
                close_window(k + 1, t_act)
            if on_tick is not None:
                try:
                    on_tick({"tick": k, "ticks": n_ticks, "t": t_act - t_start,
                             "latency_s": t_act - t_obs, "action": action, "obs": obs,
                             "counters": dict(session.counters)})
                except Exception as e:  # a display bug must not stop the robot
                    session.last_error = f"on_tick: {type(e).__name__}: {e}"
            if (not pace or t_start + (k + 1) * period - time.perf_counter()
                    > IDLE_COLLECT_SLACK_S):
                collections += _idle_collect()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if gc_was_enabled:
            gc.enable()
    elapsed = time.perf_counter() - t_start
    steps = len(tick_lat)
    close_window(steps, t_start + elapsed)  # the last, partial window (no-op if none)
    c = session.counters
    robot_info: dict[str, Any] = {}
    if metrics is not None:
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
        latency=session.latency(), tick=LatencyStats.of(tick_lat.values()),
        interrupted=interrupted, last_error=session.last_error, robot=robot_info,
        window_s=float(window_s), timeline=timeline.rows,
        memory=memory_growth(timeline.rows), idle_collections=collections)
