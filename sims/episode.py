"""The episode loop: reset a controller and an ``AdaptEnv``, then act and step until the last step.

Every single-environment caller runs its episodes through :func:`run_episode` — closed-loop
data collection (``sims.collect``), the evaluation harness (``adaptive_control.evaluation``),
policy evaluation (``policies.evaluate``) and the export checks — and computes what it reports
from the :class:`EpisodeRecord`. No torch here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import dm_env
import numpy as np

from sims.env import AdaptEnv


def episode_steps_of(duration_s: float, control_timestep: float,
                     field: str = "--duration") -> int:
    """Control steps of an episode of ``duration_s`` seconds (rounded): the one rule wherever a
    user gives an episode's length in seconds; fewer than two are refused naming ``field``."""
    ratio = duration_s / control_timestep if isinstance(duration_s, (int, float)) else math.nan
    steps = round(ratio) if math.isfinite(ratio) and ratio > 0 else 0
    if steps < 2:
        value = f"{duration_s:g}" if isinstance(duration_s, (int, float)) else repr(duration_s)
        raise ValueError(f"{field}={value}: allowed seconds >= {2 * control_timestep:g} (two "
                         f"control steps of {control_timestep:g} s), finite")
    return steps


@dataclass
class EpisodeRecord:
    """One episode, step by step (``T`` = control steps taken, fewer than the episode's length
    only when the physics diverged or ``stop`` ended it)."""

    observations: np.ndarray  # [T + 1, obs_dim]: after reset, then after every step
    actions: np.ndarray  # [T, act_dim] float64: the controller's actions clipped to the bounds
    rewards: np.ndarray  # [T]: reward of each step (0 for a diverging step)
    ret: float  # the rewards summed in step order
    speeds: np.ndarray  # [T]: forward velocity after each step
    upright: np.ndarray  # [T]: cos of the torso's tilt after each step (-1: upside down)
    segments: np.ndarray  # [T]: schedule segment in force during each step
    seconds: np.ndarray  # [T]: wall-clock time of each controller call
    diverged: bool
    distance: float  # torso displacement along x from reset to the end (m)
    qpos: np.ndarray | None = None  # [T, nq] after each step, with ``record_qpos``
    stopped: bool = False  # True when ``stop`` ended the episode before its last step

    @property
    def steps(self) -> int:
        return len(self.actions)


def run_episode(env: AdaptEnv, act: Callable[[np.ndarray], np.ndarray], *,
                record_qpos: bool = False,
                on_step: Callable[[dm_env.TimeStep], None] | None = None,
                stop: Callable[[AdaptEnv], bool] | None = None) -> EpisodeRecord:
    """One episode of ``act`` (a controller: ``obs -> action``) in ``env``.

    ``act.reset()`` is called first when it has one, then ``env.reset()``. Each step times the
    controller call, steps the environment with its action (the environment clips it) and
    records the clipped action; ``on_step(timestep)`` runs after each step (progress bars).
    ``stop(env)``, asked after every step that is not the last, ends the episode there when it
    returns True (collection's fall reset, ``sims.collect.FallReset``).
    """
    lo, hi = env.robot.action_bounds
    if hasattr(act, "reset"):
        act.reset()
    ts = env.reset()
    x0 = env.physics.torso_position()[0]
    obs, acts, rewards, speeds, segments, seconds, qpos = [ts.observation], [], [], [], [], [], []
    upright: list[float] = []
    ret = 0.0
    stopped = False
    while not ts.last() and not stopped:
        t0 = time.perf_counter()
        a = act(ts.observation)
        seconds.append(time.perf_counter() - t0)
        a = np.asarray(a, dtype=np.float64)
        ts = env.step(a)
        r = float(ts.reward or 0.0)
        ret += r
        obs.append(ts.observation)
        acts.append(np.clip(a, lo, hi))
        rewards.append(r)
        speeds.append(env.physics.forward_velocity())
        upright.append(env.physics.upright())
        segments.append(env.segment)
        if record_qpos:
            qpos.append(env.physics.data.qpos.copy())
        if on_step is not None:
            on_step(ts)
        if stop is not None and not ts.last():
            stopped = bool(stop(env))
    return EpisodeRecord(
        observations=np.stack(obs), actions=np.stack(acts), rewards=np.array(rewards),
        ret=ret, speeds=np.array(speeds), upright=np.array(upright),
        segments=np.array(segments, dtype=int),
        seconds=np.array(seconds), diverged=env.diverged,
        distance=float(env.physics.torso_position()[0] - x0),
        qpos=np.stack(qpos) if record_qpos else None, stopped=stopped)


__all__ = ["EpisodeRecord", "run_episode"]
