"""Data collection: batched open-loop rollouts on native threads, and a closed-loop collector.

``collect_open_loop`` rolls many conditions at once through ``mujoco.rollout`` — one compiled
model per trajectory, MuJoCo's own thread pool — for random-action and other open-loop data.
``collect_closed_loop`` runs any controller step by step through ``AdaptEnv`` and the episode
loop ``sims.episode.run_episode`` (needed for feedback controllers and for mid-episode condition
switches). Both label every trajectory with its condition, and drop diverged rollouts (MuJoCo
instability, NaN) before they reach a dataset, counting them in ``Dataset.stats``.

Two options shape what a robot that falls over contributes. ``fall_reset`` (a ``FallReset``)
ends a trajectory once the torso has stayed upside down for a while and spends the rest of the
step budget on fresh trajectories in the same condition; ``action_beta`` makes random actions
temporally correlated (``random_actions``), which keeps a legged robot on its feet longer.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import mujoco
import numpy as np
from mujoco import rollout as mj_rollout
from scipy.special import ndtr
from tqdm.auto import tqdm

from sims import physics as physics_lib
from sims.conditions import Condition, Schedule
from sims.dataset import Dataset
from sims.env import AdaptEnv
from sims.episode import run_episode
from sims.physics import FLIPPED_UPRIGHT, Physics
from sims.registry import get_robot
from sims.rewards import task_reward
from sims.robots import Robot

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


class Controller(Protocol):
    """Anything that maps an observation to an action; ``reset`` is called per episode."""

    def reset(self) -> None: ...

    def __call__(self, obs: np.ndarray) -> np.ndarray: ...


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def random_actions(robot: Robot, n: int, steps: int, rng: np.random.Generator,
                   beta: float = 0.0) -> np.ndarray:
    """Random actions within the robot's control range, ``[n, steps, act_dim]``, each uniform
    over the range.

    ``beta`` in [0, 1) correlates each actuator's command from one control step to the next:
    a stationary Gaussian AR(1) process ``z_t = beta z_{t-1} + sqrt(1 - beta^2) e_t`` (``z_0``
    and ``e_t`` standard normal) mapped through the normal CDF onto the range, so every action
    is still exactly uniform over ``[lo, hi]`` (never clipped, never outside) while neighbouring
    steps are alike (correlation time about ``1 / (1 - beta)`` steps). ``beta = 0`` draws
    i.i.d. uniform actions, the same random numbers as before the option existed.
    """
    if isinstance(beta, bool) or not (isinstance(beta, (int, float, np.floating))
                                      and 0.0 <= beta < 1.0):
        raise ValueError(f"beta={beta!r}: allowed a number in [0, 1) (0: i.i.d. uniform)")
    lo, hi = robot.action_bounds
    if beta == 0:
        return rng.uniform(lo, hi, size=(n, steps, robot.act_dim))
    e = rng.standard_normal((n, steps, robot.act_dim))
    z = np.empty_like(e)
    z[:, 0] = e[:, 0]
    scale = math.sqrt(1.0 - beta * beta)
    for t in range(1, steps):
        z[:, t] = beta * z[:, t - 1] + scale * e[:, t]
    return lo + (hi - lo) * ndtr(z)


@dataclass(frozen=True)
class FallReset:
    """When collection ends the trajectory of a robot that fell over.

    A control step counts as fallen when the torso's uprightness after it (cos of its tilt: 1
    upright, -1 upside down; ``sims.rewards.TaskReward.uprightness`` of the true observation)
    is below ``upright``: ``FLIPPED_UPRIGHT`` (0: upside down, ``Physics.flipped``) by default,
    ``sims.physics.TILTED_UPRIGHT`` (0.5) for tilted past 60°. Once ``seconds`` of
    consecutive steps (rounded up to whole control steps, at least one) are fallen, the
    trajectory ends after that step (truncated: ``Dataset.lengths``) and the rest of the
    rollout's step budget goes to a new trajectory from a fresh reset in the same condition,
    so a rollout still spends its ``steps``. Trajectories shorter than ``min_steps`` transitions
    (a fall right after a reset, the budget's last stub) are dropped; a diverged one ends its
    rollout, as without fall resets. ``Dataset.stats`` counts ``fall_resets`` (trajectories
    ended by a fall) and ``dropped_short``.
    """

    #: Uprightness below which a step counts as fallen.
    upright: float = FLIPPED_UPRIGHT
    #: How long the torso must stay fallen before the trajectory ends (s).
    seconds: float = 0.2
    #: Shortest trajectory kept, in transitions (a training run's m + k).
    min_steps: int = 1

    def __post_init__(self) -> None:
        if not -1.0 <= self.upright <= 1.0:
            raise ValueError(f"FallReset.upright={self.upright!r}: allowed [-1, 1] "
                             "(uprightness: 1 upright, 0 on its side, -1 upside down)")
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"FallReset.seconds={self.seconds!r}: allowed a number >= 0")
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int) \
                or self.min_steps < 1:
            raise ValueError(f"FallReset.min_steps={self.min_steps!r}: allowed an integer >= 1")

    def steps(self, robot: Robot) -> int:
        """Consecutive fallen control steps that end a trajectory of ``robot``."""
        return max(1, math.ceil(self.seconds / robot.control_timestep - 1e-9))

    def upright_fn(self, robot: Robot) -> Callable[[np.ndarray], np.ndarray]:
        """``obs [..., obs_dim] -> uprightness [...]`` for ``robot``; refused for a robot whose
        observation holds no torso orientation."""
        fn = task_reward(robot)
        if fn.quat_index is None and fn.pitch_index is None:
            raise ValueError(f"fall_reset: robot {robot.name!r} has no torso orientation in its "
                             "observation (no free root joint, no pitch hinge), so a fall cannot "
                             "be told: collect without fall resets")
        return fn.uprightness

    def trajectory_ends(self, robot: Robot, true_obs: np.ndarray) -> np.ndarray:
        """Transitions each trajectory of ``true_obs`` (``[B, T+1, obs_dim]``) keeps: the step
        that completes the fall's run of fallen steps, or ``T`` when it never falls."""
        b, t1 = true_obs.shape[:2]
        n = self.steps(robot)
        fallen = self.upright_fn(robot)(true_obs[:, 1:]) < self.upright  # [B, T]
        ends = np.full(b, t1 - 1, dtype=np.int64)
        if t1 - 1 < n:
            return ends
        run = np.lib.stride_tricks.sliding_window_view(fallen, n, axis=1).all(axis=-1)
        hit = run.any(axis=1)
        ends[hit] = run[hit].argmax(axis=1) + n
        return ends


class _FallWatch:
    """``run_episode``'s ``stop``: True once the torso has been fallen for the rule's steps."""

    def __init__(self, robot: Robot, rule: FallReset):
        self.upright, self.threshold = rule.upright_fn(robot), rule.upright
        self.n = rule.steps(robot)
        self.count = 0

    def __call__(self, env: AdaptEnv) -> bool:
        fallen = float(self.upright(env.true_observation())) < self.threshold
        self.count = self.count + 1 if fallen else 0
        return self.count >= self.n


def flipped_share_of(data: Dataset, robot: Robot) -> float:
    """Share of a dataset's transitions after which the torso is upside down (uprightness of
    the next observation below ``FLIPPED_UPRIGHT``); NaN for a robot whose observation holds no
    orientation, or for no transitions. Observation noise, if any, is in the observations."""
    u = task_reward(robot).uprightness(data.obs[:, 1:].astype(np.float64))
    mask = data.transition_mask()
    if u is None or not mask.any():
        return math.nan
    return float((u < FLIPPED_UPRIGHT)[mask].mean())


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
    obs, bad = _rollout(robot, models, init, actions, nthread)
    return obs, bad.any(axis=1)


def _rollout(
    robot: Robot, models: Sequence[mujoco.MjModel], init: np.ndarray, actions: np.ndarray,
    nthread: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``rollout_states`` with divergence per observation: ``bad [B, T+1]`` is True from the
    first observation that shows it on."""
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
    stalled = np.abs(full[..., 0] - expected) > 0.5 * dt
    finite = np.all(np.isfinite(obs), axis=2)
    bad = stalled | ~finite | (np.abs(np.nan_to_num(obs)).max(axis=2) > 1e4)
    return obs, np.logical_or.accumulate(bad, axis=1)


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
    action_beta: float = 0.0,
    fall_reset: FallReset | None = None,
) -> Dataset:
    """One open-loop rollout of ``steps`` control steps per condition (repeat a condition to get
    several).

    ``actions`` defaults to random actions (``random_actions`` with ``beta=action_beta``). All
    conditions are validated and compiled before any simulation.

    With ``fall_reset`` each rollout is rolled out whole, cut after the step that completes a
    fall, and the rest of its steps are rolled again from a fresh reset (further batches, the
    rollout's actions continuing where the cut one stopped) until its ``steps`` are spent:
    trajectories of a rollout are consecutive in the dataset. Without it, one trajectory per
    rollout, as ``mujoco.rollout`` gave it.
    """
    robot = get_robot(robot)
    if steps < 1:
        raise ValueError(f"steps={steps!r} must be >= 1")
    models = [c.build(robot) for c in conditions]  # validates everything up front
    if fall_reset is not None:
        fall_reset.upright_fn(robot)  # refused before any simulation
    source = "random" if actions is None else "open_loop"
    if actions is None:
        actions = random_actions(robot, len(conditions), steps, rng, beta=action_beta)
    if actions.shape != (len(conditions), steps, robot.act_dim):
        raise ValueError(f"actions has shape {actions.shape}: expected "
                         f"({len(conditions)}, {steps}, {robot.act_dim})")
    table: dict[str, int] = {}
    cids = np.array([table.setdefault(c.to_json(), len(table)) for c in conditions])
    n = len(conditions)
    init = initial_states(robot, models, conditions, rng)
    min_steps = 1 if fall_reset is None else fall_reset.min_steps
    offset = np.zeros(n, dtype=np.int64)  # where each rollout's next trajectory starts
    pieces: list[tuple[int, int, int, np.ndarray]] = []  # (rollout, start, length, obs)
    dropped = falls = short = 0
    t0 = time.perf_counter()
    bar = tqdm(total=n * steps, unit="step", disable=not progress,
               desc=f"collect {robot.name}", unit_scale=True)
    active = np.arange(n)
    first = True
    while len(active):
        if not first:  # the trajectories after a fall: fresh resets
            init = initial_states(robot, [models[i] for i in active],
                                  [conditions[i] for i in active], rng)
        first = False
        rest = steps - offset[active]
        length = int(rest.max())
        acts = np.zeros((len(active), length, robot.act_dim))
        for j, i in enumerate(active):
            acts[j, :rest[j]] = actions[i, offset[i]:]
        going = []
        for s in range(0, len(active), chunk):
            e = min(s + chunk, len(active))
            rows = active[s:e]
            obs, bad = _rollout(robot, [models[i] for i in rows], init[s:e], acts[s:e], nthread)
            ends = rest[s:e].copy()
            if fall_reset is not None:
                ends = np.minimum(ends, fall_reset.trajectory_ends(robot, obs))
            noise = np.array([conditions[i].obs_noise_std for i in rows])
            if noise.any():
                obs = obs + noise[:, None, None] * rng.standard_normal(obs.shape)
            for j, i in enumerate(rows):
                end = int(ends[j])
                bar.update(end)
                if bad[j, end]:
                    dropped += 1  # the rollout ends with its diverged trajectory
                    continue
                fell = bool(end < rest[s + j])
                falls += fell
                if end < min_steps:
                    short += 1
                else:
                    pieces.append((int(i), int(offset[i]), end, obs[j, :end + 1]))
                offset[i] += end
                if fell and steps - offset[i] >= min_steps:
                    going.append(i)
        active = np.array(going, dtype=np.int64)
    bar.close()
    pieces.sort(key=lambda p: p[:2])
    stats = {"requested": n, "kept": len(pieces), "dropped_diverged": dropped,
             "steps": int(steps), "seconds": time.perf_counter() - t0}
    if fall_reset is not None:
        stats.update(fall_resets=falls, dropped_short=short)
    return _dataset(robot, steps, [p[3] for p in pieces],
                    [actions[i, start:start + length] for i, start, length, _ in pieces],
                    cids[[p[0] for p in pieces]].astype(np.int64), list(table), family,
                    source, stats)


def _dataset(robot: Robot, steps: int, obs: list[np.ndarray], act: list[np.ndarray],
             cids: np.ndarray, table: list[str], family: str, source: str,
             stats: dict) -> Dataset:
    """Trajectories of at most ``steps`` transitions, padded to ``steps``, as a Dataset."""
    lengths = np.array([len(a) for a in act], dtype=np.int64)
    obs_all = np.zeros((len(act), steps + 1, robot.obs_dim), dtype=np.float32)
    act_all = np.zeros((len(act), steps, robot.act_dim), dtype=np.float32)
    for i, (o, a) in enumerate(zip(obs, act, strict=True)):
        obs_all[i, :len(o)] = o
        act_all[i, :len(a)] = a
    return Dataset(obs_all, act_all, cids, table, robot.name, family, source, stats, lengths)


def collect_closed_loop(
    robot: Robot | str,
    conditions: Sequence[Condition | Schedule],
    controller: Controller | Callable[[np.ndarray], np.ndarray],
    steps: int,
    rng: np.random.Generator,
    progress: bool = True,
    family: str = "",
    source: str = "closed_loop",
    fall_reset: FallReset | None = None,
    allow_empty: bool = False,
) -> Dataset:
    """One rollout of ``steps`` control steps per condition (or schedule) under ``controller``,
    step by step.

    A schedule's trajectory is labelled with its last condition (the one it switched to);
    ``Dataset.stats['switch_steps']`` records where each kept trajectory's schedule switched.
    With ``fall_reset`` a fall ends the episode and the rollout goes on with a new one (the
    controller reset, the schedule from its start) until its ``steps`` are spent.
    A collection that keeps no trajectory is refused (RuntimeError) unless ``allow_empty``.
    """
    robot = get_robot(robot)
    if fall_reset is not None:
        watch = _FallWatch(robot, fall_reset)  # refused before any simulation
    envs = [AdaptEnv(robot, c, episode_steps=steps, seed=rng) for c in conditions]
    min_steps = 1 if fall_reset is None else fall_reset.min_steps
    table: dict[str, int] = {}
    obs_all, act_all, cids, switches = [], [], [], []
    dropped = falls = short = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(envs) * steps, unit="step", disable=not progress,
               desc=f"closed-loop {robot.name}", unit_scale=True)
    for env in envs:
        label = env.schedule.segments[-1][1] if len(env.schedule.segments) > 1 else env.condition
        budget = steps
        while budget >= min_steps:
            env.episode_steps = budget
            stop = None
            if fall_reset is not None:
                watch.count = 0
                stop = watch
            rec = run_episode(env, controller, on_step=lambda ts: bar.update(1), stop=stop)
            budget -= rec.steps
            if rec.diverged:
                dropped += 1  # the rollout ends with its diverged episode
                break
            falls += rec.stopped
            if rec.steps < min_steps:
                short += 1
            else:
                cids.append(table.setdefault(label.to_json(), len(table)))
                obs_all.append(rec.observations)
                act_all.append(rec.actions)
                switches.append(list(env.switch_steps))
            if not rec.stopped:
                break
    bar.close()
    stats = {"requested": len(envs), "kept": len(obs_all), "dropped_diverged": dropped,
             "steps": int(steps), "seconds": time.perf_counter() - t0,
             "switch_steps": switches}
    if fall_reset is not None:
        stats.update(fall_resets=falls, dropped_short=short)
    if not obs_all and not allow_empty:
        if fall_reset is not None and not dropped:
            raise RuntimeError(f"closed-loop collection: all {len(envs)} rollouts fell within "
                               f"{min_steps} steps of every reset")
        raise RuntimeError(f"closed-loop collection: all {len(envs)} rollouts diverged")
    return _dataset(robot, steps, obs_all, act_all, np.array(cids, dtype=np.int64), list(table),
                    family, source, stats)
