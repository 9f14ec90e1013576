"""Run an exported controller with nothing but numpy and onnxruntime.

This module (and :mod:`export.contract`, its only local import) never imports torch, mujoco
or the ``sims`` package, so it runs on a robot's computer with two wheels installed::

    session = ControllerSession("exports/cheetah", robot="cheetah")
    session.reset()
    action = session.step(obs)          # one adapt-and-plan step
    report = run(my_robot, session, rate_hz=100, duration_s=30)

What it does around ``controller.onnx`` (docs/export.md has the full contract):

* **Validation at load.** Missing file, a graph ONNX Runtime cannot load, missing or
  malformed metadata, inputs/outputs whose names or shapes differ from the metadata, or an
  artifact exported for another robot than the one the caller names: :class:`ArtifactError`
  naming the file, the field, what was found and what was expected.
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
* **Fixed-rate loop.** :func:`run` ticks at a fixed rate with a deadline per step and never
  raises mid-loop. It drives any :class:`Session`: this controller, or the recurrent policy of
  :mod:`export.policy_runtime`; both build on :class:`SessionBase`, which holds the per-step
  safety logic (validation, deadline, fallback, counters) once.
"""

from __future__ import annotations

import gc
import json
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort

from export import contract as C

__all__ = [
    "ArtifactError",
    "ControllerSession",
    "DeadlineMiss",
    "GraphRunner",
    "LatencyStats",
    "ObservationError",
    "Robot",
    "RunReport",
    "Session",
    "SessionBase",
    "TransitionBuffer",
    "deploy_kind",
    "load_metadata",
    "read_manifest",
    "run",
]


class ArtifactError(ValueError):
    """An export folder or graph that cannot be used as it is; the message says why."""


class ObservationError(ValueError):
    """A robot whose observations do not fit the controller (refused before the first step)."""


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
    :class:`export.policy_runtime.PolicySession` (both :class:`SessionBase`)."""

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
# Metadata and validation
# --------------------------------------------------------------------------------------------


def load_metadata(session: ort.InferenceSession, path: Path) -> dict[str, Any]:
    """The model's metadata_props, every value JSON-decoded."""
    raw = session.get_modelmeta().custom_metadata_map
    meta: dict[str, Any] = {}
    for key, text in raw.items():
        try:
            meta[key] = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path}: metadata key {key!r} is not valid JSON ({e}): "
                                f"{text[:80]!r}") from e
    return meta


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """``folder/manifest.json`` as a dict; :class:`ArtifactError` if missing or garbled."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"export folder {str(folder)!r}: no such folder")
    path = folder / C.MANIFEST_FILE
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir())
        raise ArtifactError(f"{path}: missing; a deploy folder written by `adapt export` or "
                            f"`adapt export-policy` holds {C.MANIFEST_FILE} (found "
                            f"{present or 'nothing'})")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{path}: not valid JSON ({e}); re-export the folder") from e
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path}: holds a JSON {type(manifest).__name__}, expected an "
                            "object of manifest fields")
    return manifest


def deploy_kind(export_dir: str | Path) -> str:
    """What a deploy folder holds, from its manifest's ``kind``: ``"controller"`` or
    ``"policy"``.

    A manifest without ``kind`` is a controller (exports that predate the field), and so is a
    folder with ``controller.onnx`` but no manifest: the controller runtime reads only the
    graph's own metadata. Anything else is an :class:`ArtifactError` naming what was found.
    """
    folder = Path(export_dir)
    if not folder.is_dir():
        raise ArtifactError(f"export folder {str(folder)!r}: no such folder")
    if not (folder / C.MANIFEST_FILE).exists() and (folder / C.CONTROLLER_FILE).is_file():
        return C.KIND_CONTROLLER
    manifest = read_manifest(folder)
    kind = manifest.get(C.KIND, C.KIND_CONTROLLER)
    if kind not in C.KINDS:
        raise ArtifactError(f"{folder / C.MANIFEST_FILE}: {C.KIND}={kind!r}: allowed "
                            f"{C.KIND_CONTROLLER!r} (written by `adapt export`) or "
                            f"{C.KIND_POLICY!r} (written by `adapt export-policy`)")
    return kind


def _shape_of(arg: Any) -> list[int | str]:
    return [d if isinstance(d, int) else str(d) for d in (arg.shape or [])]


def _check_io(path: Path, kind: str, declared: Sequence[Mapping[str, Any]],
              actual: Sequence[Any]) -> None:
    """Declared (metadata) inputs/outputs must match the graph's: names, float32, shapes."""
    have = {a.name: a for a in actual}
    want = [d["name"] for d in declared]
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    if missing or extra:
        raise ArtifactError(
            f"{path}: graph {kind}s {sorted(have)} do not match the metadata's {want} "
            f"(missing from the graph: {missing}, not in the metadata: {extra})")
    for d in declared:
        a = have[d["name"]]
        if a.type != "tensor(float)":
            raise ArtifactError(f"{path}: {kind} {a.name!r} has type {a.type}, expected "
                                "tensor(float) (float32)")
        got, exp = _shape_of(a), list(d["shape"])
        ok = len(got) == len(exp) and all(
            isinstance(e, str) or g == e for g, e in zip(got, exp, strict=True))
        if not ok:
            raise ArtifactError(f"{path}: {kind} {a.name!r} has shape {got}, the metadata "
                                f"declares {exp}")


def _require(path: Path, cond: bool, what: str) -> None:
    if not cond:
        raise ArtifactError(f"{path}: {what}")


def _artifact_file(export_dir: str | Path, name: str) -> Path:
    """``export_dir/name``, or an :class:`ArtifactError` saying what the folder holds."""
    folder = Path(export_dir)
    if not folder.is_dir():
        raise ArtifactError(f"export folder {str(folder)!r}: no such folder")
    path = folder / name
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir())
        raise ArtifactError(f"{path}: missing; an export folder holds {name} "
                            f"(found {present or 'nothing'})")
    return path


def check_bounds(path: Path, low: Any, high: Any, act_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated action bounds (float32): ``act_dim`` finite values each, low < high."""
    for key, v in (("action_low", low), ("action_high", high)):
        _require(path, isinstance(v, list) and len(v) == act_dim
                 and all(isinstance(x, (int, float)) for x in v),
                 f"metadata {key} has {len(v) if isinstance(v, list) else v!r} values, "
                 f"expected act_dim={act_dim}")
    lo, hi = np.array(low, float), np.array(high, float)
    _require(path, bool(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)),
             f"metadata action bounds must be finite with low < high: low={lo.tolist()}, "
             f"high={hi.tolist()}")
    return lo.astype(np.float32), hi.astype(np.float32)


def _validate_controller(path: Path, meta: Mapping[str, Any], sess: ort.InferenceSession,
                         robot: str | None) -> None:
    missing = [k for k in (*C.COMMON_KEYS, *C.CONTROLLER_KEYS) if k not in meta]
    if missing:
        raise ArtifactError(
            f"{path}: metadata is missing key(s) {missing}; a controller written by "
            f"`adapt export` ({C.FORMAT} version {C.FORMAT_VERSION}) has all of "
            f"{list((*C.COMMON_KEYS, *C.CONTROLLER_KEYS))}")
    _require(path, meta["format"] == C.FORMAT,
             f"metadata format={meta['format']!r}, expected {C.FORMAT!r}")
    _require(path, meta["format_version"] == C.FORMAT_VERSION,
             f"metadata format_version={meta['format_version']!r}; this runtime reads "
             f"version {C.FORMAT_VERSION}: re-export with this package version")
    _require(path, meta["graph"] == "controller",
             f"metadata graph={meta['graph']!r}: {C.CONTROLLER_FILE} must hold the controller "
             "graph")
    if robot is not None and meta["robot"] != robot:
        raise ArtifactError(f"{path} was exported for robot {meta['robot']!r}, not {robot!r}: "
                            "export a controller trained for this robot")
    do, da, m = meta["obs_dim"], meta["act_dim"], meta["m"]
    for key, v in (("obs_dim", do), ("act_dim", da), ("m", m)):
        _require(path, isinstance(v, int) and v >= 1, f"metadata {key}={v!r} must be an int >= 1")
    check_bounds(path, meta["action_low"], meta["action_high"], da)
    _check_io(path, "input", meta["inputs"], sess.get_inputs())
    _check_io(path, "output", meta["outputs"], sess.get_outputs())
    shapes = {d["name"]: list(d["shape"]) for d in meta["inputs"]}
    shapes.update({d["name"]: list(d["shape"]) for d in meta["outputs"]})
    expect = {C.RECENT_OBS: [m, do], C.RECENT_ACT: [m, da], C.RECENT_NEXT_OBS: [m, do],
              C.RECENT_MASK: [m], C.OBS: [do], C.ACTION: [da]}
    for name, shape in expect.items():
        _require(path, shapes.get(name) == shape,
                 f"{name} has shape {shapes.get(name)}, expected {shape} for obs_dim={do}, "
                 f"act_dim={da}, m={m}")
    plan = shapes.get(C.PLAN)
    _require(path, plan is not None and len(plan) == 2 and plan[1] == da,
             f"{C.PLAN} has shape {plan}, expected [H, {da}]")
    noise = meta["noise"]
    _require(path, all(isinstance(d, int) for d in shapes.get(C.NOISE, [None])),
             f"{C.NOISE} has shape {shapes.get(C.NOISE)}: the runtime needs a fixed number of "
             "candidates (export with --candidates N)")
    _require(path, isinstance(noise, dict) and noise.get("shape") == shapes.get(C.NOISE)
             and noise.get("distribution") in ("uniform", "normal"),
             f"metadata noise={noise!r} must name distribution uniform|normal and the shape of "
             f"input {C.NOISE!r} {shapes.get(C.NOISE)}")
    if C.PREV_PLAN in shapes:
        _require(path, shapes[C.PREV_PLAN] == plan,
                 f"{C.PREV_PLAN} has shape {shapes[C.PREV_PLAN]}, expected the plan shape {plan}")
        init = np.asarray(meta["initial_plan"], dtype=float)
        _require(path, list(init.shape) == plan,
                 f"metadata initial_plan has shape {list(init.shape)}, expected {plan}")
    for name in shapes:
        if name.startswith(C.STATE_IN_PREFIX):
            out = C.STATE_OUT_PREFIX + name[len(C.STATE_IN_PREFIX):]
            _require(path, shapes.get(out) == shapes[name],
                     f"state input {name!r} {shapes[name]} needs output {out!r} of the same "
                     f"shape, found {shapes.get(out)}")


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


class _Watchdog:
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
            raise ArtifactError(f"{path}: ONNX Runtime cannot load it: {e}") from e
        self.path = path
        self.output_names = [o.name for o in self.sess.get_outputs()]
        self._watchdog: _Watchdog | None = None

    def run(self, feed: Mapping[str, np.ndarray], deadline: float | None = None
            ) -> list[np.ndarray]:
        """All outputs; with an absolute ``deadline`` (``time.perf_counter()`` clock) the run
        is cancelled at that time and :class:`DeadlineMiss` raised, also if it finishes late."""
        if deadline is None:
            return self.sess.run(self.output_names, dict(feed))
        if self._watchdog is None:
            self._watchdog = _Watchdog()
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
    latencies: list[float]
    last_error: str | None
    _graph: GraphRunner
    _prev_obs: np.ndarray | None

    def _init_stats(self) -> None:
        self.counters = dict.fromkeys(_COUNTERS, 0)
        self.latencies = []  # seconds, every step() / run() tick
        self.last_error = None

    def reset_stats(self) -> None:
        self.counters = dict.fromkeys(_COUNTERS, 0)
        self.latencies = []

    def latency(self) -> LatencyStats:
        return LatencyStats.of(self.latencies)

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
        path = _artifact_file(export_dir, C.CONTROLLER_FILE)
        self._graph = GraphRunner(path, threads)
        self._sess = self._graph.sess
        self.meta = load_metadata(self._sess, path)
        _validate_controller(path, self.meta, self._sess, robot)
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
