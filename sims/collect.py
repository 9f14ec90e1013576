"""Data collection: batched open-loop rollouts on native threads, and a closed-loop collector.

``collect_open_loop`` rolls many conditions at once through ``mujoco.rollout`` — one compiled
model per trajectory, MuJoCo's own thread pool — for random-action and other open-loop data.
``collect_closed_loop`` runs any controller step by step through ``AdaptEnv`` and the episode
loop ``sims.episode.run_episode`` (needed for feedback controllers and for mid-episode condition
switches). Both label every trajectory with its condition, and drop diverged rollouts (MuJoCo
instability, NaN) before they reach a dataset, counting them in ``Dataset.stats``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout
from tqdm.auto import tqdm

from sims import physics as physics_lib
from sims.conditions import Condition, Schedule
from sims.dataset import Dataset
from sims.env import AdaptEnv
from sims.episode import run_episode
from sims.physics import Physics
from sims.registry import get_robot
from sims.robots import Robot

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


class Controller(Protocol):
    """Anything that maps an observation to an action; ``reset`` is called per episode."""

    def reset(self) -> None: ...

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def random_actions(robot: Robot, n: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions within the robot's control range, ``[n, steps, act_dim]``."""
    lo, hi = robot.action_bounds
    return rng.uniform(lo, hi, size=(n, steps, robot.act_dim))


def initial_states(robot: Robot, models: Sequence[mujoco.MjModel], conditions: Sequence[Condition],
                   rng: np.random.Generator) -> np.ndarray:
    """Full physics states after a reset with joint noise, one per model."""
    states = []
    for model, cond in zip(models, conditions, strict=True):
        phys = Physics(robot, model)
        physics_lib.reset(phys, rng, robot.init_noise)
        cond.adjust_initial_state(model, phys.data)
        mujoco.mj_forward(model, phys.data)
        states.append(phys.get_state())
    return np.stack(states)


def _size_signature(model: mujoco.MjModel) -> tuple[int, ...]:
    """Every size field of the model (nq, nv, ngeom, neq, nhfielddata, ...)."""
    return tuple(getattr(model, a) for a in _SIZE_FIELDS)


_SIZE_FIELDS = tuple(sorted(
    a for a in dir(mujoco.MjModel) if a.startswith("n") and not a.startswith("name")
    and isinstance(getattr(mujoco.MjModel.from_xml_string("<mujoco/>"), a, None), int)
))


def rollout_states(
    robot: Robot, models: Sequence[mujoco.MjModel], init: np.ndarray, actions: np.ndarray,
    nthread: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Roll ``actions`` ([B, T, act_dim], one per control step) open loop from ``init``.

    Returns (observations ``[B, T+1, obs_dim]``, diverged ``[B]`` bool). Each control is held
    for the robot's ``n_substeps`` physics steps.
    """
    b, t, _ = actions.shape
    sub = robot.n_substeps
    ctrl = np.repeat(actions, sub, axis=1)
    nthread = nthread or default_threads()
    if nthread < 1:
        raise ValueError(f"nthread={nthread!r} must be >= 1")
    # mujoco.rollout checks only state and control sizes, but each MjData must match its model's
    # layout (a payload adds a geom, a locked joint an equality): one rollout per size group.
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(models):
        groups.setdefault(_size_signature(m), []).append(i)
    state = None
    for idx in groups.values():
        datas = [mujoco.MjData(models[idx[0]]) for _ in range(min(nthread, len(idx)))]
        out, _ = mj_rollout.rollout([models[i] for i in idx], datas, init[idx], ctrl[idx])
        if state is None:
            state = np.empty((b,) + out.shape[1:])
        state[idx] = out
    full = np.concatenate([init[:, None, :], state[:, sub - 1::sub, :]], axis=1)  # [B, T+1, S]
    obs = physics_lib.state_observations(robot, models[0], full)
    # rollout stops advancing time once MuJoCo resets an unstable simulation, so a stalled clock
    # is as much a sign of divergence as a NaN.
    dt = robot.timestep
    expected = init[:, :1] + dt * sub * np.arange(t + 1)[None, :]
    stalled = np.abs(full[..., 0] - expected).max(axis=1) > 0.5 * dt
    finite = np.all(np.isfinite(obs), axis=(1, 2))
    diverged = stalled | ~finite | (np.abs(np.nan_to_num(obs)).max(axis=(1, 2)) > 1e4)
    return obs, diverged


def collect_open_loop(
    robot: Robot | str,
    conditions: Sequence[Condition],
    steps: int,
    rng: np.random.Generator,
    actions: np.ndarray | None = None,
    chunk: int = 64,
    nthread: int | None = None,
    progress: bool = True,
    family: str = "",
) -> Dataset:
    """One open-loop trajectory per condition (repeat a condition to get several).

    ``actions`` defaults to uniform random actions. All conditions are validated and compiled
    before any simulation.
    """
    robot = get_robot(robot)
    if steps < 1:
        raise ValueError(f"steps={steps!r} must be >= 1")
    models = [c.build(robot) for c in conditions]  # validates everything up front
    source = "random" if actions is None else "open_loop"
    if actions is None:
        actions = random_actions(robot, len(conditions), steps, rng)
    if actions.shape != (len(conditions), steps, robot.act_dim):
        raise ValueError(f"actions has shape {actions.shape}: expected "
                         f"({len(conditions)}, {steps}, {robot.act_dim})")
    table: dict[str, int] = {}
    cids = np.array([table.setdefault(c.to_json(), len(table)) for c in conditions])
    init = initial_states(robot, models, conditions, rng)
    obs_parts, keep_parts = [], []
    t0 = time.perf_counter()
    bar = tqdm(total=len(conditions) * steps, unit="step", disable=not progress,
               desc=f"collect {robot.name}", unit_scale=True)
    for s in range(0, len(conditions), chunk):
        e = min(s + chunk, len(conditions))
        obs, div = rollout_states(robot, models[s:e], init[s:e], actions[s:e], nthread)
        noise = np.array([c.obs_noise_std for c in conditions[s:e]])
        if noise.any():
            obs = obs + noise[:, None, None] * rng.standard_normal(obs.shape)
        obs_parts.append(obs)
        keep_parts.append(~div)
        bar.update((e - s) * steps)
    bar.close()
    obs = np.concatenate(obs_parts)
    keep = np.concatenate(keep_parts)
    stats = {"requested": len(conditions), "kept": int(keep.sum()),
             "dropped_diverged": int((~keep).sum()), "steps": int(steps),
             "seconds": time.perf_counter() - t0}
    return Dataset(obs[keep], actions[keep], cids[keep], list(table), robot.name, family,
                   source, stats)


def collect_closed_loop(
    robot: Robot | str,
    conditions: Sequence[Condition | Schedule],
    controller: Controller | Callable[[np.ndarray], np.ndarray],
    steps: int,
    rng: np.random.Generator,
    progress: bool = True,
    family: str = "",
    source: str = "closed_loop",
) -> Dataset:
    """One episode per condition (or schedule) under ``controller``, step by step.

    A schedule's trajectory is labelled with its last condition (the one it switched to);
    ``Dataset.stats['switch_steps']`` records where each schedule switched.
    """
    robot = get_robot(robot)
    envs = [AdaptEnv(robot, c, episode_steps=steps, seed=rng) for c in conditions]
    table: dict[str, int] = {}
    obs_all, act_all, cids, dropped = [], [], [], 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(envs) * steps, unit="step", disable=not progress,
               desc=f"closed-loop {robot.name}", unit_scale=True)
    for env in envs:
        rec = run_episode(env, controller, on_step=lambda ts: bar.update(1))
        if rec.diverged or rec.steps != steps:
            dropped += 1
            continue
        label = env.schedule.segments[-1][1] if len(env.schedule.segments) > 1 else env.condition
        cids.append(table.setdefault(label.to_json(), len(table)))
        obs_all.append(rec.observations)
        act_all.append(rec.actions)
    bar.close()
    stats = {"requested": len(envs), "kept": len(obs_all), "dropped_diverged": dropped,
             "steps": int(steps), "seconds": time.perf_counter() - t0,
             "switch_steps": [list(e.switch_steps) for e in envs if not e.diverged]}
    if not obs_all:
        raise RuntimeError(f"closed-loop collection: all {len(envs)} rollouts diverged")
    return Dataset(np.stack(obs_all), np.stack(act_all), np.array(cids), list(table),
                   robot.name, family, source, stats)
