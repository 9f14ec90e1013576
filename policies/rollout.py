"""Training rollouts organised as trials: several episodes of one condition, hidden state carried.

``run_trials`` steps ``N`` environments in lockstep with one batched policy call per step. Each
slot runs ``len(conditions[i])`` trials one after another; a trial is ``episodes_per_trial``
episodes of one condition. The hidden state is

  * carried from step to step,
  * carried across the episodes of a trial (the RL^2 setting: the policy may remember what it
    learnt about the condition), only the previous action and reward are zeroed at an episode
    start,
  * reset to zero when a new trial (a new condition) begins.

Episode boundaries are fixed (every ``episode_steps`` steps); a diverged simulation restarts the
robot inside its episode with reward 0, so every trial has the same length and batches stay
rectangular. An optional teacher (the adaptive MPC controller) labels every visited observation,
and a per-step beta mixture decides whether the teacher's or the student's action is executed.

This is the one loop that does not go through ``sims.episode.run_episode``, on purpose: it
steps N environments in lockstep behind one batched policy call (a batch of one per environment
would round differently and be N times slower), draws each slot's beta mixture, environment
seeds and noise from that slot's own generator (so slots can be split between worker
processes, ``run_trials_parallel``), carries the hidden state across episodes, and restarts a
diverged robot inside its episode instead of ending it.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from policies.config import TrialConfig
from policies.networks import Policy
from sims.conditions import HEALTHY, Condition, Schedule
from sims.env import AdaptEnv
from sims.families import TaskFamily
from sims.registry import get_family, register_document
from sims.robots import Robot
from sims.specs import spec_document


@dataclass
class TrialBatch:
    """Per-step arrays ``[T, N, ...]`` of N slots (T = trials per slot x trial length)."""

    obs: np.ndarray  # observation at step t
    prev_act: np.ndarray  # executed action of step t-1 (0 at an episode start)
    prev_rew: np.ndarray  # [T, N, 1] reward of step t-1 (0 at an episode start)
    resets: np.ndarray  # bool: hidden state zeroed before step t (a trial's first step)
    episode_start: np.ndarray  # bool: step t begins an episode
    act: np.ndarray  # executed action (clipped to the bounds)
    sample: np.ndarray  # the policy's action before clipping (PPO scores this)
    logp: np.ndarray  # log-probability of ``sample``
    value: np.ndarray  # value estimate at step t
    reward: np.ndarray  # reward of step t
    trial_end: np.ndarray  # bool: step t is a trial's last (no bootstrapping past it)
    teacher_act: np.ndarray | None  # the teacher's action for obs[t] (DAgger labels)
    hidden_in: np.ndarray | None  # hidden state fed to step t (only if record_hidden)
    episode_returns: np.ndarray  # [N, trials, episodes]
    diverged: int  # simulation restarts after divergence

    @property
    def steps(self) -> int:
        return self.obs.shape[0] * self.obs.shape[1]


def draw_slot_seeds(rng: np.random.Generator | None, n: int) -> list[int]:
    """One seed per rollout slot, for its own generator."""
    return [int(x) for x in rng.integers(2**63 - 1, size=n)]


def training_conditions(family: TaskFamily, trial: TrialConfig, rng: np.random.Generator,
                        n: int) -> list[list[Condition | Schedule]]:
    """``n`` slots of one training condition each: with probability ``trial.failure_share``
    the robot starts healthy and the condition comes in mid-episode, at a time drawn from
    ``trial.failure_at_s``."""
    conditions: list[list[Condition | Schedule]] = []
    for _ in range(n):
        condition: Condition | Schedule = family.sample(rng, "train")
        if trial.failure_share and rng.random() < trial.failure_share:
            condition = Schedule.switch(HEALTHY, condition, float(rng.uniform(*trial.failure_at_s)))
        conditions.append([condition])
    return conditions


def teacher_saw(teacher: object, executed: np.ndarray) -> None:
    """Make the adaptive-MPC teacher adapt on the action that was really executed.

    ``AdaptiveController`` records its own planned action as the transition's action; under a
    beta mixture the student's action may have been executed instead, and adapting on the wrong
    action would corrupt the teacher's labels.
    """
    observe = getattr(teacher, "observe_action", None)
    if observe is not None:
        observe(executed)


def run_trials(
    policy: Policy,
    robot: Robot,
    conditions: Sequence[Sequence[Condition]],
    trial: TrialConfig,
    rng: np.random.Generator,
    *,
    explore: bool = False,
    teachers: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
    beta: float = 0.0,
    action_std: float = 0.0,
    noise_rng: np.random.Generator | None = None,
    teacher_action_std: float = 0.0,
    record_hidden: bool = False,
    progress: bool = False,
    desc: str = "rollout",
    slot_seeds: Sequence[int] | None = None,
    noise_seeds: Sequence[int] | None = None,
) -> TrialBatch:
    """Roll ``policy`` through trials: ``conditions[i][j]`` is slot i's j-th trial's condition.

    ``explore`` samples from the Gaussian head (PPO); otherwise the mean is used. With
    ``teachers`` (one per slot, each with ``reset()``), every observation is labelled with the
    teacher's action and, with probability ``beta`` per step, the teacher's action is executed.
    ``action_std`` > 0 adds Gaussian noise of that standard deviation (in action half-ranges,
    drawn from ``noise_rng``) to the student's action before clipping; the teacher's executed
    actions are left as they are. A separate generator keeps ``rng``'s stream, so rollouts in
    which only the teacher acts are the same with or without the noise.
    ``teacher_action_std`` > 0 adds such noise to the teacher's action where it is executed
    (its label stays the clean action): the teacher's rollouts then visit states around its own
    trajectories and label how it recovers from them (DART, Laskey et al. 2017).

    Every slot draws from its own generators (environment seeds, the beta mixture, exploration
    and action noise), seeded by ``slot_seeds``/``noise_seeds`` (default: drawn from ``rng`` and
    ``noise_rng``), so a subset of slots run elsewhere (``run_trials_parallel``) draws what it
    would have drawn here. Teachers with a ``bind_env`` (the oracle) are handed each new
    environment.
    """
    n = len(conditions)
    n_trials = len(conditions[0])
    if any(len(c) != n_trials for c in conditions):
        raise ValueError("run_trials: every slot needs the same number of trials")
    if teachers is not None and len(teachers) != n:
        raise ValueError(f"run_trials: {len(teachers)} teachers for {n} slots")
    noisy = bool(action_std or teacher_action_std)
    if noisy and noise_rng is None and noise_seeds is None:
        raise ValueError("run_trials: action_std or teacher_action_std > 0 needs a noise_rng")
    if slot_seeds is None:
        slot_seeds = draw_slot_seeds(rng, n)
    if noisy and noise_seeds is None:
        noise_seeds = draw_slot_seeds(noise_rng, n)
    rngs = [np.random.default_rng(int(s)) for s in slot_seeds]
    noise_rngs = [np.random.default_rng(int(s)) for s in noise_seeds] if noisy else []
    # the teacher's noise from its own streams: the student's stay what they were without it
    teacher_noise = ([np.random.default_rng([int(s), 1]) for s in noise_seeds]
                     if teacher_action_std else [])
    ep_steps, n_eps = trial.episode_steps, trial.episodes_per_trial
    t_trial = ep_steps * n_eps
    t_total = t_trial * n_trials
    od, ad = robot.obs_dim, robot.act_dim
    lo, hi = robot.action_bounds
    noise_scale = action_std * (hi - lo) / 2  # per joint, from action half-ranges
    f32 = np.float32
    out = {k: np.zeros((t_total, n, d), f32) for k, d in
           (("obs", od), ("prev_act", ad), ("prev_rew", 1), ("act", ad), ("sample", ad))}
    logp, value, reward = (np.zeros((t_total, n), f32) for _ in range(3))
    resets = np.zeros((t_total, n), bool)
    episode_start = np.zeros((t_total, n), bool)
    trial_end = np.zeros((t_total, n), bool)
    teacher_act = np.zeros((t_total, n, ad), f32) if teachers is not None else None
    hidden_in = np.zeros((t_total, n, policy.hidden_dim), f32) if record_hidden else None
    returns = np.zeros((n, n_trials, n_eps))

    envs: list[AdaptEnv | None] = [None] * n
    obs = np.zeros((n, od))
    prev_act = np.zeros((n, ad))
    prev_rew = np.zeros((n, 1))
    hidden = policy.initial_hidden(n)
    diverged = 0
    bar = tqdm(total=t_total * n, unit="step", unit_scale=True, disable=not progress, desc=desc)
    policy.eval()
    for t in range(t_total):
        j, k = divmod(t, t_trial)  # trial index, step within the trial
        ep = k // ep_steps
        new_trial, new_episode = k == 0, k % ep_steps == 0
        for i in range(n):
            if new_trial:  # a new condition: a new environment
                envs[i] = AdaptEnv(robot, conditions[i][j], episode_steps=ep_steps,
                                   seed=rngs[i])
                bind = getattr(teachers[i], "bind_env", None) if teachers is not None else None
                if bind is not None:
                    bind(envs[i])
            env = envs[i]
            if new_episode or env.needs_reset:  # episode start, or restart after divergence
                obs[i] = env.reset().observation
                prev_act[i] = 0.0
                prev_rew[i] = 0.0
                if teachers is not None and hasattr(teachers[i], "reset"):
                    teachers[i].reset()
                episode_start[t, i] = True
        resets[t] = new_trial
        if new_trial:  # the condition changed: forget it
            hidden = policy.initial_hidden(n)
        if record_hidden:
            hidden_in[t] = hidden.numpy()
        out["obs"][t], out["prev_act"][t], out["prev_rew"][t] = obs, prev_act, prev_rew
        with torch.no_grad():
            mean, v, hidden = policy.step(torch.as_tensor(obs, dtype=torch.float32),
                                          torch.as_tensor(prev_act, dtype=torch.float32),
                                          torch.as_tensor(prev_rew, dtype=torch.float32), hidden)
            sample = mean
            if explore:
                noise = np.stack([r.standard_normal(ad) for r in rngs]).astype(f32)
                sample = mean + policy.log_std.exp() * torch.from_numpy(noise)
            logp[t] = policy.log_prob(mean, sample).numpy()
        value[t] = v.numpy()
        out["sample"][t] = sample.numpy()
        student = sample.numpy().astype(np.float64)
        if action_std:
            student += noise_scale * np.stack([r.standard_normal(ad) for r in noise_rngs])
        student = np.clip(student, lo, hi)
        for i in range(n):
            a = student[i]
            if teachers is not None:
                a_teacher = np.clip(np.asarray(teachers[i](obs[i]), dtype=np.float64), lo, hi)
                teacher_act[t, i] = a_teacher
                if beta > 0 and rngs[i].random() < beta:
                    a = a_teacher
                    if teacher_action_std:
                        a = np.clip(a + teacher_action_std * (hi - lo) / 2
                                    * teacher_noise[i].standard_normal(ad), lo, hi)
                teacher_saw(teachers[i], a)
            ts = envs[i].step(a)
            r = float(ts.reward)
            if envs[i].diverged:
                diverged += 1
                r = 0.0
            out["act"][t, i] = a
            reward[t, i] = r
            returns[i, j, ep] += r
            obs[i], prev_act[i], prev_rew[i] = ts.observation, a, r
        trial_end[t] = k == t_trial - 1
        bar.update(n)
    bar.close()
    return TrialBatch(out["obs"], out["prev_act"], out["prev_rew"], resets, episode_start,
                      out["act"], out["sample"], logp, value, reward, trial_end, teacher_act,
                      hidden_in, returns, diverged)


def join_batches(parts: Sequence[TrialBatch]) -> TrialBatch:
    """Batches of consecutive slots as one, in order (slots are axis 1, returns axis 0)."""
    fields = {}
    for f in dataclasses.fields(TrialBatch):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "diverged":
            fields[f.name] = sum(values)
        elif values[0] is None:
            fields[f.name] = None
        else:
            fields[f.name] = np.concatenate(values, axis=0 if f.name == "episode_returns" else 1)
    return TrialBatch(**fields)


@dataclass(frozen=True)
class _Chunk:
    """Slots ``start``.. of a round, for a worker process: ``run_trials``'s arguments."""

    policy: Policy
    family: str
    family_spec: str  # ``sims.specs.spec_document``: a worker registers a spec family from it
    conditions: tuple
    trial: TrialConfig
    slot_seeds: tuple[int, ...]
    noise_seeds: tuple[int, ...] | None
    teachers: Callable[[list[int]], list] | None
    teacher_seeds: tuple[int, ...]
    kwargs: dict[str, Any]


def _run_chunk(chunk: _Chunk) -> TrialBatch:
    torch.set_num_threads(1)  # one chunk per core
    register_document(chunk.family_spec, f"family {chunk.family!r}")
    robot = get_family(chunk.family).robot
    teachers = chunk.teachers(list(chunk.teacher_seeds)) if chunk.teachers else None
    return run_trials(chunk.policy, robot, chunk.conditions, chunk.trial,
                      np.random.default_rng(0), teachers=teachers,
                      slot_seeds=chunk.slot_seeds, noise_seeds=chunk.noise_seeds,
                      **chunk.kwargs)


def run_trials_parallel(
    policy: Policy,
    family: TaskFamily,
    conditions: Sequence[Sequence[Condition | Schedule]],
    trial: TrialConfig,
    rng: np.random.Generator,
    *,
    workers: int = 1,
    teachers: Callable[[list[int]], list] | None = None,
    teacher_seeds: Sequence[int] = (),
    beta: float = 0.0,
    action_std: float = 0.0,
    noise_rng: np.random.Generator | None = None,
    teacher_action_std: float = 0.0,
    explore: bool = False,
    progress: bool = False,
    desc: str = "rollout",
) -> TrialBatch:
    """``run_trials`` with its slots split into chunks run by ``workers`` spawned processes
    (1: here). ``teachers(seeds)`` builds one teacher per seed (picklable, it runs in the
    worker); slot i's teacher gets ``teacher_seeds[i]``.

    Each slot draws from its own generators, so the data equal one process's wherever the
    policy's output does not steer the rollout (teacher-only rounds); where it does, the
    policy's batch differs and so may its float rounding.
    """
    n = len(conditions)
    slot_seeds = draw_slot_seeds(rng, n)
    noise_seeds = draw_slot_seeds(noise_rng, n) if action_std or teacher_action_std else None
    teacher_seeds = list(teacher_seeds) if teachers is not None else []
    if teachers is not None and len(teacher_seeds) != n:
        raise ValueError(f"run_trials_parallel: {len(teacher_seeds)} teacher seeds for {n} slots")
    kwargs = {"beta": beta, "action_std": action_std, "explore": explore,
              "teacher_action_std": teacher_action_std}
    if workers <= 1 or n <= 1:
        return run_trials(policy, family.robot, conditions, trial, rng,
                          teachers=teachers(teacher_seeds) if teachers else None,
                          slot_seeds=slot_seeds, noise_seeds=noise_seeds, progress=progress,
                          desc=desc, **kwargs)
    from adaptive_control.workers import process_pool

    # Twice as many chunks as workers: the pool balances them and the bar moves in between.
    bounds = np.linspace(0, n, min(n, 2 * workers) + 1).round().astype(int)
    document = spec_document(family)
    chunks = [_Chunk(policy, family.name, document, tuple(tuple(c) for c in conditions[s:e]),
                     trial, tuple(slot_seeds[s:e]),
                     None if noise_seeds is None else tuple(noise_seeds[s:e]), teachers,
                     tuple(teacher_seeds[s:e]), kwargs)
              for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    steps = trial.episode_steps * trial.episodes_per_trial * len(conditions[0])
    bar = tqdm(total=steps * n, unit="step", unit_scale=True, disable=not progress, desc=desc)
    parts = []
    # Spawned, not forked: a fork of a process that has started torch's threads can hang.
    with process_pool(_run_chunk, chunks, min(workers, len(chunks)),
                      multiprocessing.get_context("spawn")) as work:
        for part in work.in_order():
            parts.append(part)
            bar.update(steps * part.obs.shape[1])
    bar.close()
    return join_batches(parts)
