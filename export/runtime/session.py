"""Run an exported controller with nothing but numpy and onnxruntime.

This module (like the rest of :mod:`export.runtime`) never imports torch, mujoco or the
``sims`` package, so it runs on a robot's computer with two wheels installed::

    session = ControllerSession("exports/cheetah", robot="cheetah")
    session.reset()
    action = session.step(obs)          # one adapt-and-plan step
    report = run(my_robot, session, rate_hz=100, duration_s=30)

What it does around ``controller.onnx`` (docs/export.md has the full contract):

* **Validation at load.** Malformed metadata, inputs/outputs whose names or shapes differ
  from the metadata, or an artifact exported for another robot than the one the caller names:
  :class:`ArtifactError` naming the file, the field, what was found and what was expected. A
  missing file, a graph ONNX Runtime cannot load or metadata keys missing:
  :class:`~export.runtime.artifacts.DamagedArtifactError` (an ``ArtifactError`` too), in the
  message shape of every damaged file (``file_errors``).
* **Recent window.** The last M transitions (s, a, s'), oldest first, with a 0/1 mask for
  rows not yet filled. By default the mask stays all-zero until M transitions exist, so the
  controller plans with the unadapted prior exactly like the torch ``AdaptiveController``;
  ``adapt_before_full=True`` adapts on the partial window instead.
* **Noise.** Drawn here with a seeded ``numpy.random.Generator`` (uniform [0, 1) for random
  shooting, standard normal for CEM and MPPI), and pre-drawn during idle time in :func:`run`.
* **Carried state.** ``prev_plan`` (the previous ``plan`` output; the graph shifts it) and
  any ``state_in.*`` -> ``state_out.*`` pairs (MB+DE's online weight change), zeros at reset.
* **Safety.** A non-finite or wrongly sized observation never enters the window; the step
  returns the *safe action* — the previous plan shifted by one step (``safe_action="shift"``,
  the default) or zeros clipped into the action bounds (``"zeros"``, also used when no plan
  exists yet) — and is counted. So are exceptions from ONNX Runtime and non-finite outputs.
* **Deadlines.** ``step(obs, deadline=t)`` runs the graph on the calling thread while a
  watchdog thread sets ONNX Runtime's ``RunOptions.terminate`` at ``t``, which stops the run
  between two graph nodes; a step cancelled so, or finishing after ``t``, executes the
  previous plan shifted by one step and counts as a deadline miss. Running in the calling
  thread keeps thread hand-offs off the critical path; cancelling means a late step never
  steals the next tick's CPU.
* **Fixed-rate loop.** :func:`~export.runtime.loop.run` ticks at a fixed rate with a deadline
  per step and never raises mid-loop. It drives any ``Session``: this controller, or the
  recurrent policy of :mod:`export.runtime.policy`; both build on :class:`SessionBase`, which
  holds the per-step safety logic (validation, deadline, fallback, counters) once.
"""


from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from export.runtime import artifacts as C
from export.runtime.artifacts import (
    artifact_file,
    damaged,
    load_metadata,
    validate_controller,
)
from export.runtime.loop import DeadlineMiss, LatencyStats, Watchdog
from export.runtime.timeline import LatencyLog

__all__ = ["ControllerSession", "GraphRunner", "SessionBase", "TransitionBuffer",
           "check_safe_action"]


# --------------------------------------------------------------------------------------------
# Recent-transition window
# --------------------------------------------------------------------------------------------


class TransitionBuffer:
    """The last ``m`` transitions, oldest first; the newest is always in row ``m − 1``.

    Unfilled rows are at the front with mask 0 (and zeros as values).
    """

    def __init__(self, m: int, obs_dim: int, act_dim: int) -> None:
        self.m = m
        self.obs = np.zeros((m, obs_dim), np.float32)
        self.act = np.zeros((m, act_dim), np.float32)
        self.next_obs = np.zeros((m, obs_dim), np.float32)
        self.mask = np.zeros(m, np.float32)
        self.count = 0  # valid rows

    def clear(self) -> None:
        for a in (self.obs, self.act, self.next_obs, self.mask):
            a.fill(0.0)
        self.count = 0

    def push(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray) -> None:
        # M is small (16 in the paper): shifting rows costs less than index bookkeeping and
        # keeps the arrays in the order the graph reads them.
        for a, v in ((self.obs, obs), (self.act, act), (self.next_obs, next_obs)):
            a[:-1] = a[1:]
            a[-1] = v
        self.mask[:-1] = self.mask[1:]
        self.mask[-1] = 1.0
        self.count = min(self.count + 1, self.m)

    @property
    def full(self) -> bool:
        return self.count >= self.m


class GraphRunner:
    """One ONNX Runtime session, run with an optional deadline.

    Loads the graph with latency-predictable options (``threads`` intra-op threads, sequential
    execution) and, given an absolute ``deadline``, cancels the run at that time through a
    watchdog thread (started on first use; :meth:`close` stops it).
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads={threads!r}: allowed an integer >= 1")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for corrupt files
            raise damaged(path, *C.GRAPH_KIND) from e
        self.path = path
        self.output_names = [o.name for o in self.sess.get_outputs()]
        self._watchdog: Watchdog | None = None

    def run(self, feed: Mapping[str, np.ndarray], deadline: float | None = None
            ) -> list[np.ndarray]:
        """All outputs; with an absolute ``deadline`` (``time.perf_counter()`` clock) the run
        is cancelled at that time and :class:`DeadlineMiss` raised, also if it finishes late."""
        if deadline is None:
            return self.sess.run(self.output_names, dict(feed))
        if self._watchdog is None:
            self._watchdog = Watchdog()
        ro = ort.RunOptions()
        self._watchdog.arm(ro, deadline)
        try:
            out = self.sess.run(self.output_names, dict(feed), ro)
        except Exception as e:
            if ro.terminate:
                raise DeadlineMiss("cancelled at the deadline") from e
            raise
        finally:
            self._watchdog.disarm()
        if time.perf_counter() > deadline:
            raise DeadlineMiss("finished after the deadline")
        return out

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------

_SAFE_ACTIONS = ("shift", "zeros")
_COUNTERS = ("steps", "graph_actions", "deadline_misses", "nonfinite_obs", "bad_shape_obs",
             "session_errors", "bad_outputs")


def check_safe_action(safe_action: str) -> None:
    if safe_action not in _SAFE_ACTIONS:
        raise ValueError(f"safe_action={safe_action!r}: allowed {', '.join(_SAFE_ACTIONS)}")


class SessionBase:
    """The step protocol of every session: validate the observation, build the feed, run the
    graph under the deadline, commit the result — or execute the safe action and count why.
    Kept in one place so a controller and a policy are equally safe on a robot.

    A subclass sets ``_graph`` (the :class:`GraphRunner` :meth:`compute` runs), ``obs_dim``,
    ``counters``, ``latencies``, ``last_error``, ``safe_action_mode`` and ``_prev_obs``, and
    implements :meth:`begin`, :meth:`finish`, :meth:`fallback`, :meth:`reset` and
    :meth:`warm_up`.
    """

    kind: str
    obs_dim: int
    safe_action_mode: str
    counters: dict[str, int]
    latencies: LatencyLog
    last_error: str | None
    _graph: GraphRunner
    _prev_obs: np.ndarray | None

    def _init_stats(self) -> None:
        self.counters = dict.fromkeys(_COUNTERS, 0)
        self.latencies = LatencyLog()  # seconds, every step() / run() tick
        self.last_error = None

    def reset_stats(self) -> None:
        self.counters = dict.fromkeys(_COUNTERS, 0)
        self.latencies.clear()  # the storage is kept: run() reserved it for the whole run

    def latency(self) -> LatencyStats:
        return LatencyStats.of(self.latencies.values())

    def idle(self) -> None:
        """Nothing to prepare by default (the controller draws its next noise here)."""

    # ------------------------------------------------------------------ implemented below
    def begin(self, obs: Any) -> dict[str, np.ndarray] | None:
        raise NotImplementedError

    def finish(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def fallback(self, prefer_zeros: bool = False) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def check_obs(self, obs: Any) -> str | None:
        """None if ``obs`` is usable, else the counter it falls under."""
        try:
            a = np.asarray(obs, dtype=np.float32)
        except (TypeError, ValueError):
            return "bad_shape_obs"
        if a.shape != (self.obs_dim,):
            return "bad_shape_obs"
        if not np.all(np.isfinite(a)):
            return "nonfinite_obs"
        return None

    def compute(self, feed: Mapping[str, np.ndarray], deadline: float | None = None
                ) -> list[np.ndarray]:
        """Run the graph; with an absolute ``deadline`` (``time.perf_counter()`` clock) it is
        cancelled at that time and :class:`DeadlineMiss` raised, also if it finishes late."""
        return self._graph.run(feed, deadline)

    def close(self) -> None:
        """Stop the deadline watchdog thread (it is a daemon; closing is optional)."""
        self._graph.close()

    def no_observation(self) -> np.ndarray:
        """A step without an observation (the sensor read failed): the safe action, and the
        transition chain is broken as for a bad observation."""
        t0 = time.perf_counter()
        self.counters["steps"] += 1
        self._prev_obs = None
        action = self.safe_action()
        self.latencies.append(time.perf_counter() - t0)
        return action

    def safe_action(self) -> np.ndarray:
        """The action for an unusable observation (per ``safe_action``)."""
        return self.fallback(prefer_zeros=self.safe_action_mode == "zeros")

    def step(self, obs: Any, deadline: float | None = None) -> np.ndarray:
        """Observation in, action out (float64 ``[act_dim]``); never raises on bad data.

        ``deadline`` (absolute, ``time.perf_counter()`` clock): if the graph has not finished
        by then, :meth:`fallback` is executed and a miss counted.
        """
        t0 = time.perf_counter()
        self.counters["steps"] += 1
        try:
            feed = self.begin(obs)
            if feed is None:
                action = self.safe_action()
            else:
                action = self.finish(self.compute(feed, deadline))
        except DeadlineMiss:
            self.counters["deadline_misses"] += 1
            action = self.fallback()
        except Exception as e:  # ORT errors must not stop a robot: count, fall back
            self.counters["session_errors"] += 1
            self.last_error = f"{type(e).__name__}: {e}"
            action = self.fallback()
        self.latencies.append(time.perf_counter() - t0)
        return action


class ControllerSession(SessionBase):
    """One exported controller, ready to step.

    Args:
      export_dir: the folder written by ``adapt export`` (holding controller.onnx).
      robot: if given, the artifact must have been exported for this robot name.
      threads: ONNX Runtime intra-op threads (1 = the latency-predictable default).
      seed: seed of the planner noise.
      adapt_before_full: adapt on a partly filled window (default: plan with the prior until
        M transitions exist, as the torch controller does).
      safe_action: "shift" (previous plan shifted by one step, zeros if none) or "zeros";
        what a non-finite/invalid observation or a failed step executes.
    """

    kind = C.KIND_CONTROLLER

    def __init__(self, export_dir: str | Path, robot: str | None = None, threads: int = 1,
                 seed: int = 0, adapt_before_full: bool = False,
                 safe_action: str = "shift") -> None:
        check_safe_action(safe_action)
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads={threads!r}: allowed an integer >= 1")
        path = artifact_file(export_dir, C.CONTROLLER_FILE)
        self._graph = GraphRunner(path, threads)
        self._sess = self._graph.sess
        self.meta = load_metadata(self._sess, path)
        validate_controller(path, self.meta, self._sess, robot)
        self.path = path
        meta = self.meta
        self.robot_name: str = meta["robot"]
        self.obs_dim: int = meta["obs_dim"]
        self.act_dim: int = meta["act_dim"]
        self.m: int = meta["m"]
        self.control_timestep: float = float(meta["control_timestep"])
        self.low = np.asarray(meta["action_low"], np.float32)
        self.high = np.asarray(meta["action_high"], np.float32)
        shapes = {d["name"]: tuple(d["shape"]) for d in meta["inputs"]}
        self.horizon: int = int({d["name"]: d["shape"] for d in meta["outputs"]}[C.PLAN][0])
        self.noise_shape: tuple[int, ...] = tuple(meta["noise"]["shape"])
        self.uniform_noise: bool = meta["noise"]["distribution"] == "uniform"
        self.has_prev_plan = C.PREV_PLAN in shapes
        self.initial_plan = (np.asarray(meta["initial_plan"], np.float32)
                             if self.has_prev_plan else None)
        self.state_shapes = {n: s for n, s in shapes.items() if n.startswith(C.STATE_IN_PREFIX)}
        self.output_names = self._graph.output_names
        self.adapt_before_full = adapt_before_full
        self.safe_action_mode = safe_action
        self._seed = seed
        self._safe = np.clip(np.zeros(self.act_dim, np.float32), self.low, self.high)
        self.buffer = TransitionBuffer(self.m, self.obs_dim, self.act_dim)
        self._init_stats()
        self.reset()

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Start an episode: empty window, no plan, zero state, fresh noise stream."""
        self.buffer.clear()
        self.rng = np.random.default_rng(self._seed)
        self._noise: np.ndarray | None = None
        self.plan: np.ndarray | None = None  # the plan whose row 0 is the latest action
        self.state = {n: np.zeros(s, np.float32) for n, s in self.state_shapes.items()}
        self._prev_obs: np.ndarray | None = None
        self._prev_act: np.ndarray | None = None

    @property
    def planner(self) -> dict[str, Any]:
        return dict(self.meta["planner"])

    # ------------------------------------------------------------------ noise
    def prefetch_noise(self) -> None:
        """Draw the next step's noise now (call it in idle time; :func:`run` does)."""
        if self._noise is None:
            if self.uniform_noise:
                self._noise = self.rng.random(self.noise_shape, dtype=np.float32)
            else:
                self._noise = self.rng.standard_normal(self.noise_shape, dtype=np.float32)

    def idle(self) -> None:
        self.prefetch_noise()

    # ------------------------------------------------------------------ one step, in parts
    def record(self, obs: Any) -> np.ndarray | None:
        """Validate ``obs`` and record the transition that ends at it.

        Returns the observation as float32, or None (counted) when it is non-finite or wrongly
        sized: it does not enter the window and the transitions on either side of it are
        dropped; the caller must then execute :meth:`safe_action`.
        """
        bad = self.check_obs(obs)
        if bad is not None:
            self.counters[bad] += 1
            self._prev_obs = None
            return None
        o = np.array(obs, dtype=np.float32)
        if self._prev_obs is not None and self._prev_act is not None:
            self.buffer.push(self._prev_obs, self._prev_act, o)
        self._prev_obs, self._prev_act = o, None
        return o

    def make_feed(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """The graph inputs for a recorded observation. The window arrays are copies, so a
        caller may hold on to a feed (or run it on another thread) while stepping on."""
        self.prefetch_noise()
        noise, self._noise = self._noise, None
        assert noise is not None
        b = self.buffer
        use_window = self.adapt_before_full or b.full
        feed = {
            C.RECENT_OBS: b.obs.copy(), C.RECENT_ACT: b.act.copy(),
            C.RECENT_NEXT_OBS: b.next_obs.copy(),
            C.RECENT_MASK: b.mask.copy() if use_window else np.zeros(self.m, np.float32),
            C.OBS: obs, C.NOISE: noise,
        }
        if self.has_prev_plan:
            assert self.initial_plan is not None
            feed[C.PREV_PLAN] = self.plan.copy() if self.plan is not None else self.initial_plan
        feed.update(self.state)  # replaced on commit, never written in place
        return feed

    def begin(self, obs: Any) -> dict[str, np.ndarray] | None:
        """:meth:`record` then :meth:`make_feed`; None for an unusable observation."""
        o = self.record(obs)
        return None if o is None else self.make_feed(o)

    def finish(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """Commit a graph result: the action to execute (falls back on a non-finite result)."""
        out = dict(zip(self.output_names, outputs, strict=True))
        action, plan = out[C.ACTION], out[C.PLAN]
        new_state = {C.STATE_IN_PREFIX + k[len(C.STATE_OUT_PREFIX):]: v for k, v in out.items()
                     if k.startswith(C.STATE_OUT_PREFIX)}
        finite = all(np.all(np.isfinite(v)) for v in (action, plan, *new_state.values()))
        if not finite or action.shape != (self.act_dim,):
            self.counters["bad_outputs"] += 1
            return self.fallback()
        self.plan = np.array(plan, dtype=np.float32)
        self.state = new_state
        act = np.clip(action, self.low, self.high).astype(np.float32)
        self._prev_act = act
        self.counters["graph_actions"] += 1
        return act.astype(np.float64)

    def fallback(self, prefer_zeros: bool = False) -> np.ndarray:
        """The safe action: the previous plan shifted by one step, or zeros (clipped to the
        bounds) when there is no plan or ``prefer_zeros``. It is recorded as executed."""
        if self.plan is not None and not prefer_zeros:
            self.plan = np.concatenate([self.plan[1:], self.plan[-1:]], axis=0)
            act = self.plan[0].copy()
        else:
            act = self._safe.copy()
            if prefer_zeros:
                self.plan = None
        self._prev_act = act
        return act.astype(np.float64)

    def warm_up(self, runs: int = 3) -> None:
        """Run the graph a few times on zeros so the first real step does not pay for ONNX
        Runtime's first-run allocations (and miss its deadline). Touches no episode state and
        draws no noise."""
        saved = self._noise
        for _ in range(runs):
            self._noise = np.zeros(self.noise_shape, np.float32)
            self._sess.run(self.output_names, self.make_feed(np.zeros(self.obs_dim, np.float32)))
        self._noise = saved
