"""The evaluation harness behind ``adapt eval``: methods x scenarios x seeds, in parallel.

A *method* is something that acts, built per episode by a picklable factory: a trained learner
with its planner (GrBAL, ReBAL, MB, MB+DE — the latter from an MB checkpoint, updated online),
uniform random actions (the floor), or any factory another layer provides (recurrent policies:
``policies.evaluate.PolicyMethod``). A *scenario* is a held-out condition fixed for the whole
episode, or a mid-episode switch (healthy for T seconds, then the held-out condition). Each
episode records per-step speed, reward, controller latency and, for model-based methods, the
k-step open-loop prediction error of the model the controller had at that step.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sims.conditions import HEALTHY, Schedule
from sims.families import TaskFamily
from sims.physics import FLIPPED_UPRIGHT, TILTED_UPRIGHT
from sims.registry import get_family, register_document
from sims.specs import spec_document

if TYPE_CHECKING:
    from adaptive_control.control import Controller
    from adaptive_control.learners import Learner
    from adaptive_control.planning import PlannerConfig

#: fixed: each held-out condition all episode; switch: healthy, then each held-out condition;
#: healthy: nothing broken (the speed the failure scenarios are measured against).
SCENARIO_KINDS = ("fixed", "switch", "healthy")
RECOVERY_FRACTION = 0.8  # recovered = speed back to 80 % of its pre-failure level
SPEED_WINDOW_S = 0.5  # moving-average window of the speed trace used for recovery


# ------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class PlannerSizes:
    """``adapt eval --candidates/--horizon``: the planner size every model-based method plans
    with, each field replacing that of its checkpoint's planner config (None: keep it)."""

    #: Candidate sequences per plan (None: the checkpoint's).
    num_candidates: int | None = None
    #: Planning horizon in steps (None: the checkpoint's).
    horizon: int | None = None

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"planner {name}={v!r}: allowed an integer >= 1 or None")

    def apply(self, config: PlannerConfig) -> PlannerConfig:
        """``config`` with the sizes given here."""
        return replace(config, **{k: v for k, v in asdict(self).items() if v is not None})


@dataclass
class Actor:
    """What a method's factory builds for one episode: the controller that acts and, for
    model-based methods, the model it adapts and its window M (for the prediction-error trace).
    """

    controller: Controller
    model: Learner | None = None
    m: int = 0

    def bind(self, env: Any) -> None:
        """Hand the episode's environment to a controller that reads the true simulator (the
        oracle's ``bind_env``); the episode loop calls this once, before the episode starts.
        Other controllers see only observations and have no ``bind_env``."""
        bind_env = getattr(self.controller, "bind_env", None)
        if bind_env is not None:
            bind_env(env)


class ControllerFactory(Protocol):
    """Builds a method's actor for one episode. Evaluation runs in worker processes, so a
    factory must be picklable: a small frozen dataclass naming a checkpoint, not a live model.
    Other layers add their own (``policies.evaluate.PolicyMethod``) without this module
    importing them."""

    def __call__(self, family: TaskFamily, seed: int, planner: PlannerSizes) -> Actor: ...

    def describe(self) -> dict[str, str]:
        """``kind``, ``checkpoint``, ``learner``: what reports record of the method."""
        ...


@dataclass(frozen=True)
class MethodSpec:
    """A method to evaluate: a label for tables and plots, and the factory of its actor (which
    alone decides what acts: the label is never read)."""

    name: str
    factory: ControllerFactory

    def describe(self) -> dict[str, str]:
        return {"name": self.name, **self.factory.describe()}


class _UniformRandom:
    """Uniform random actions in the robot's bounds: the floor of every comparison."""

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int) -> None:
        self.low, self.high = low, high
        self.rng = np.random.default_rng(seed + 7)
        self.latencies: list[float] = []

    def reset(self) -> None:
        pass

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class RandomMethod:
    """Uniform random actions."""

    def __call__(self, family: TaskFamily, seed: int, planner: PlannerSizes) -> Actor:
        return Actor(_UniformRandom(*family.robot.action_bounds, seed))

    def describe(self) -> dict[str, str]:
        return {"kind": "random", "checkpoint": "", "learner": ""}


@dataclass(frozen=True)
class LearnerMethod:
    """A trained learner with its planner, rebuilt from ``checkpoint``; ``mbde=True`` turns an
    MB checkpoint into MB+DE (the same weights, updated online). ``members``: checkpoints of
    further runs joined with it into one ensemble (``builders.ensemble_of``), planned with
    ``checkpoint``'s planner."""

    checkpoint: str
    mbde: bool = False
    #: Where the learner adapts and plans (``adaptive_control.devices``); the episode's
    #: simulation stays on the CPU.
    device: str = "cpu"
    #: Further runs' checkpoints, each adapted on its own and scored with the others.
    members: tuple[str, ...] = ()

    def __call__(self, family: TaskFamily, seed: int, planner: PlannerSizes) -> Actor:
        import torch  # lazily: workers set their thread count first

        from adaptive_control.builders import (
            build_controller,
            ensemble_of,
            learner_from_checkpoint,
            mbde_from_mb,
        )
        from adaptive_control.checkpoint import load_checkpoint
        from adaptive_control.devices import resolve_device

        robot = family.robot
        runs = []
        for path in (self.checkpoint, *self.members):
            learner, cfg = learner_from_checkpoint(load_checkpoint(path, robot=robot.name),
                                                   resolve_device(self.device))
            if cfg.family != family.name and get_family(cfg.family).robot.name != robot.name:
                raise ValueError(f"checkpoint {path} is for {cfg.family}, not {family.name}")
            runs.append((learner, cfg))
        learner, cfg = ensemble_of(runs)
        if self.mbde:
            learner = mbde_from_mb(learner, cfg)
        cfg = replace(cfg, planner=planner.apply(cfg.planner))
        ctrl = build_controller(learner, cfg, family, seed=seed)
        torch.manual_seed(seed)
        return Actor(ctrl, learner, cfg.m)

    def describe(self) -> dict[str, str]:
        """``learner``: the one evaluated, read from the checkpoint's config (mbde with
        ``mbde=True``), whatever the method's label; ``checkpoint``: every run's, joined by
        commas."""
        from adaptive_control.checkpoint import load_checkpoint
        from adaptive_control.training.config import config_from_json

        learner = ("mbde" if self.mbde
                   else config_from_json(load_checkpoint(self.checkpoint)["config"]).learner)
        return {"kind": "learner", "checkpoint": ",".join((self.checkpoint, *self.members)),
                "learner": learner}


@dataclass(frozen=True)
class Scenario:
    name: str  # e.g. "fixed:disabled(bthigh)" or "switch@3s:disabled(bthigh)"
    schedule: Schedule
    switch_time_s: float | None  # None for fixed conditions


def scenarios_for(family: TaskFamily, kinds: Sequence[str],
                  switch_time_s: float | None = None) -> list[Scenario]:
    out = []
    for kind in kinds:
        if kind not in SCENARIO_KINDS:
            raise ValueError(f"scenario={kind!r} is unknown: allowed {', '.join(SCENARIO_KINDS)}")
        if kind == "healthy":
            out.append(Scenario("healthy", Schedule.fixed(HEALTHY), None))
            continue
        for cond in family.test_conditions:
            if kind == "fixed":
                out.append(Scenario(f"fixed:{cond.label}", Schedule.fixed(cond), None))
            else:
                at = family.switch_time_s if switch_time_s is None else switch_time_s
                out.append(Scenario(f"switch@{at:g}s:{cond.label}",
                                    family.switch_scenario(cond, at), at))
    return out


# ------------------------------------------------------------------------------ metrics
def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first values average what exists so far)."""
    window = max(1, int(window))
    c = np.cumsum(np.insert(np.asarray(x, dtype=float), 0, 0.0))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def recovery_time(speed: np.ndarray, dt: float, switch_step: int,
                  fraction: float = RECOVERY_FRACTION,
                  window_s: float = SPEED_WINDOW_S) -> float | None:
    """Seconds after the switch until the smoothed speed is back to ``fraction`` of its
    pre-failure level (mean speed over the second before the switch); ``None`` = never.

    NaN when the pre-failure speed is not positive (nothing to recover to).
    """
    speed = np.asarray(speed, dtype=float)
    if not 0 < switch_step < len(speed):
        raise ValueError(f"switch_step={switch_step} must fall inside the trace "
                         f"(1..{len(speed) - 1})")
    before = speed[max(0, switch_step - int(round(1.0 / dt))):switch_step]
    level = float(before.mean())
    if not level > 0:
        return math.nan
    smooth = moving_average(speed[switch_step:], int(round(window_s / dt)))
    hit = np.nonzero(smooth >= fraction * level)[0]
    # The window must fill with post-switch speeds first, or the pre-failure momentum counts.
    hit = hit[hit >= int(round(window_s / dt)) - 1]
    if len(hit) == 0:
        return None
    return float((hit[0] + 1) * dt)


def flipped_share(upright: np.ndarray) -> float:
    """Share of steps whose torso is upside down, from the ``upright`` trace (cos of the
    torso's tilt per step, ``EpisodeRecord.upright``); 0 for an empty trace."""
    upright = np.asarray(upright, dtype=float)
    return float(np.mean(upright < FLIPPED_UPRIGHT)) if len(upright) else 0.0


def tilted_share(upright: np.ndarray) -> float:
    """Share of steps whose torso leans more than 60° from upright (a nose-stand counts, and so
    does every flipped step), from the same ``upright`` trace; 0 for an empty trace."""
    upright = np.asarray(upright, dtype=float)
    return float(np.mean(upright < TILTED_UPRIGHT)) if len(upright) else 0.0


@dataclass
class Episode:
    method: str
    scenario: str
    seed: int
    ret: float
    distance: float
    mean_speed: float
    steps: int
    diverged: bool
    latency_ms_p50: float
    latency_ms_p99: float
    # median k-step prediction error along the episode (NaN without a model); the median
    # because a single diverging open-loop prediction would otherwise swamp the episode
    pred_error_k: float
    recovery_s: float | None  # only for switch scenarios; None = never recovered
    switch_step: int | None
    # share of control steps with the torso upside down (``upright() < FLIPPED_UPRIGHT``);
    # NaN in results written before it was recorded
    flipped: float = math.nan
    # share of control steps with the torso tilted beyond 60° (``upright() < TILTED_UPRIGHT``);
    # NaN in results written before it was recorded
    tilted: float = math.nan
    speed: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    pred_error_t: list[int] = field(default_factory=list)  # steps with a prediction error
    pred_error: list[float] = field(default_factory=list)
    qpos: list[list[float]] = field(default_factory=list)  # for videos
    segment: list[int] = field(default_factory=list)  # schedule segment in force per step

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("speed", "reward", "pred_error_t", "pred_error", "qpos", "segment"):
            d.pop(k)
        return d


# ------------------------------------------------------------------------------ running
def method_episode(spec: MethodSpec, family_name: str, scenario: Scenario, seed: int,
                   episode_steps: int, pred_k: int = 10, pred_stride: int = 10,
                      planner: PlannerSizes = PlannerSizes(), record_qpos: bool = False
                   ) -> Episode:
    """One episode of one method in one scenario; everything seeded by ``seed``."""
    from sims.env import AdaptEnv
    from sims.episode import run_episode

    family = get_family(family_name)
    robot = family.robot
    actor = spec.factory(family, seed, planner)
    ctrl = actor.controller
    env = AdaptEnv(robot, scenario.schedule, episode_steps=episode_steps, seed=seed)
    actor.bind(env)
    rec = run_episode(env, ctrl, record_qpos=record_qpos)
    speed = rec.speeds.tolist()
    dt = robot.control_timestep
    lat = np.asarray(getattr(ctrl, "latencies", []) or [0.0]) * 1e3
    switch_step = None
    recovery = None
    if scenario.switch_time_s is not None:
        switch_step = int(round(scenario.switch_time_s / dt))
        if switch_step < len(speed):
            recovery = recovery_time(np.asarray(speed), dt, switch_step)
    pe_t, pe = [], []
    if actor.model is not None and rec.steps > actor.m + pred_k:
        pe_t, pe = prediction_error_trace(actor.model, rec.observations.astype(np.float32),
                                          rec.actions.astype(np.float32), actor.m,
                                          pred_k, pred_stride, family)
    return Episode(
        method=spec.name, scenario=scenario.name, seed=seed, ret=float(np.sum(rec.rewards)),
        distance=rec.distance, mean_speed=float(np.mean(speed)) if speed else 0.0,
        steps=rec.steps, diverged=rec.diverged, latency_ms_p50=float(np.median(lat)),
        latency_ms_p99=float(np.percentile(lat, 99)),
        pred_error_k=float(np.median(pe)) if len(pe) else math.nan,
        recovery_s=recovery, switch_step=switch_step,
        flipped=flipped_share(rec.upright), tilted=tilted_share(rec.upright),
        speed=speed, reward=rec.rewards.tolist(),
        pred_error_t=list(map(int, pe_t)), pred_error=list(map(float, pe)),
        qpos=rec.qpos.tolist() if rec.qpos is not None else [],
        segment=rec.segments.tolist(),
    )


def prediction_error_trace(learner, obs: np.ndarray, act: np.ndarray, m: int, k: int,
                           stride: int, family: TaskFamily) -> tuple[list[int], list[float]]:
    """k-step open-loop error of the learner adapted on the M transitions before each t, along
    one episode, in units of the family's reference scale (see ``model_eval``)."""
    from adaptive_control.evaluation.model_eval import prediction_errors_at, reference_scale

    scale = _SCALES.get(family.name)
    if scale is None:
        scale = _SCALES[family.name] = reference_scale(family)
    return prediction_errors_at(learner, obs, act, m, k, stride, scale)


_SCALES: dict[str, np.ndarray] = {}  # per process: reference scales are deterministic


# ------------------------------------------------------------------------------ in parallel
def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one episode per core; oversubscribing threads is slower


@dataclass(frozen=True)
class EpisodeJob:
    """One episode for a worker process: ``method_episode``'s arguments."""

    spec: MethodSpec
    family: str
    scenario: Scenario
    seed: int
    episode_steps: int
    pred_k: int = 10
    pred_stride: int = 10
    planner: PlannerSizes = PlannerSizes()
    record_qpos: bool = False
    #: The family's spec document (``sims.specs.spec_document``, "" for a built-in family):
    #: a worker process registers it, having never loaded the spec file.
    family_spec: str = ""


def _run_job(job: EpisodeJob) -> Episode:
    register_document(job.family_spec, f"family {job.family!r}")
    return method_episode(job.spec, job.family, job.scenario, job.seed, job.episode_steps,
                          job.pred_k, job.pred_stride, job.planner, job.record_qpos)


def _run_ray_job(job_cwd: tuple[EpisodeJob, str]) -> Episode:
    job, cwd = job_cwd
    _worker_init()  # a Ray worker runs one task per core, like a pool process
    if os.path.isdir(cwd):  # relative checkpoint paths then resolve as on the driver
        os.chdir(cwd)
    return _run_job(job)


def run_all(jobs: list[EpisodeJob], workers: int, progress: bool = True,
            ray: str | None = None) -> list[Episode]:
    """Run episode jobs on ``workers`` processes (1 = in this process), with a progress bar;
    with ``ray`` (an address, see ``distributed.check_address``) one Ray task per job on that
    cluster instead, ``workers`` unused. Either way the episodes come back in job order and
    equal, bit for bit, those of a run in this process (latencies aside)."""
    from tqdm.auto import tqdm

    if ray is not None:
        from adaptive_control.distributed import connect, ray_map

        connect(ray, quiet=not progress)
        return ray_map(_run_ray_job, [(j, os.getcwd()) for j in jobs], desc="eval",
                       unit="episode", progress=progress)
    results: list[Episode] = []
    bar = tqdm(total=len(jobs), unit="episode", desc="eval", disable=not progress)
    if workers <= 1:
        _worker_init()
        for j in jobs:
            results.append(_run_job(j))
            bar.update(1)
    else:
        import multiprocessing as mp

        from adaptive_control.workers import WAIT_S, sigint_blocked

        ctx = mp.get_context("spawn")  # torch and MuJoCo threads don't survive fork well
        with sigint_blocked():  # Ctrl-C is this process's; leaving the block ends the workers
            pool = ctx.Pool(workers, initializer=_worker_init)
        with pool:
            episodes = pool.imap(_run_job, jobs)
            while len(results) < len(jobs):
                try:  # a slice at a time: a Ctrl-C another thread took is acted on between
                    results.append(episodes.next(timeout=WAIT_S))
                except mp.TimeoutError:
                    continue
                bar.update(1)
    bar.close()
    return results


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def evaluate(methods: Sequence[MethodSpec], family: TaskFamily, scenarios: Sequence[Scenario],
             seeds: Sequence[int], episode_steps: int, workers: int, pred_k: int = 10,
             planner: PlannerSizes = PlannerSizes(), video_episodes: int = 0,
             progress: bool = True, ray: str | None = None) -> list[Episode]:
    document = spec_document(family)
    jobs = [EpisodeJob(spec, family.name, sc, seed, episode_steps, pred_k, 10, planner,
                       video_episodes > 0 and seed == seeds[0], document)
            for spec in methods for sc in scenarios for seed in seeds]
    t0 = time.perf_counter()
    eps = run_all(jobs, workers, progress, ray)
    if progress:
        print(f"{len(eps)} episodes in {time.perf_counter() - t0:.0f} s")
    return eps


__all__ = ["Actor", "ControllerFactory", "Episode", "EpisodeJob", "LearnerMethod", "MethodSpec",
           "PlannerSizes", "RandomMethod", "Scenario", "evaluate", "flipped_share",
           "method_episode", "recovery_time", "scenarios_for", "tilted_share"]
