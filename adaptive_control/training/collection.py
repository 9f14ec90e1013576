"""An iteration's rollouts, one at a time: in this process, on worker processes or on Ray.

Every rollout draws its randomness (initial states, random actions, observation noise, the
planner's noise) from ``(seed, iteration, rollout index)`` alone (``run_rng`` purposes
``ROLLOUT_PURPOSE`` and ``PLANNER_PURPOSE``), builds its own controller, and the rollouts'
datasets are joined in rollout order. So an iteration's on-policy data is the same, bit for
bit, in this process (``collect.workers`` 0 or 1), on any number of worker processes and on
Ray (``training.ray_collect``). Each rollout runs torch on one thread (MPC's batches are
small, and a thread count may change how torch rounds a reduction); the process's own thread
count is restored afterwards.

A worker receives a ``Chunk``: plain data only (the config as JSON, the learner's weights as
numpy arrays, the conditions as JSON, the family's spec document), from which it rebuilds the
learner and the controller (``builders``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adaptive_control.builders import build_controller, build_learner, run_rng, torch_seed
from adaptive_control.learners import Learner
from adaptive_control.training.config import TrainConfig, config_from_json
from adaptive_control.workers import process_pool
from sims.collect import FallReset, collect_closed_loop, collect_open_loop
from sims.conditions import HEALTHY, Condition
from sims.dataset import Dataset
from sims.families import TaskFamily
from sims.registry import get_family, register_document
from sims.specs import spec_document

#: ``run_rng`` purposes of rollouts collected one at a time (the loop's own use 0-3 and 99).
ROLLOUT_PURPOSE = 4
PLANNER_PURPOSE = 5


def fall_rule(cfg: TrainConfig, family: TaskFamily) -> FallReset | None:
    """The run's fall reset (``collect.fall_reset``, ``auto`` reading the robot's default), or
    None; trajectories shorter than a window (m + k) are dropped."""
    c = cfg.collect
    on = family.robot.fall_reset if c.fall_reset == "auto" else c.fall_reset == "on"
    if not on:
        return None
    return FallReset(c.fall_upright, c.fall_seconds, min_steps=cfg.m + cfg.k)


def iteration_conditions(it: int, cfg: TrainConfig, family: TaskFamily,
                         rng: np.random.Generator) -> list[Condition]:
    """Iteration ``it``'s rollout conditions: ``collect.healthy_share`` of them (rounded) the
    healthy robot on flat ground, the rest drawn from the family's training split with ``rng``
    (the iteration's generator, ``run_rng(seed, it, 0)``)."""
    n = cfg.collect.random_rollouts if it == 0 else cfg.collect.rollouts_per_iter
    healthy = int(cfg.collect.healthy_share * n + 0.5)  # half up, not to even
    return [HEALTHY] * healthy + [family.sample(rng, "train") for _ in range(n - healthy)]


@dataclass(frozen=True)
class Chunk:
    """A worker's share of an iteration: plain data only (no torch objects)."""

    #: The run's TrainConfig as JSON.
    config: str
    #: The iteration collected.
    iteration: int
    #: Index (within the iteration) of the chunk's first rollout.
    start: int
    #: One condition (as JSON) per rollout.
    conditions: tuple[str, ...]
    #: The learner's state_dict as numpy arrays; None for random actions (iteration 0).
    weights: dict[str, np.ndarray] | None
    #: Whether the learner was in training mode on the driver.
    training: bool = False
    #: The family's spec document (``sims.specs.spec_document``; "" for a built-in family),
    #: registered on the worker, which has never loaded the spec file.
    family_spec: str = ""


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread inside the block, the previous count restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def collect_rollout(cfg: TrainConfig, family: TaskFamily, iteration: int, index: int,
                    condition: Condition, learner: Learner | None) -> Dataset:
    """Rollout ``index`` of an iteration: random actions when ``learner`` is None, else the
    adaptive controller on ``learner``. Its trajectories (several with fall resets, none when
    it diverged or every one fell too soon) and their statistics."""
    rng = run_rng(cfg.seed, iteration, ROLLOUT_PURPOSE, index)
    rule = fall_rule(cfg, family)
    steps = cfg.episode_steps
    with one_torch_thread():
        if learner is None:
            return collect_open_loop(family.robot, [condition], steps, rng, nthread=1,
                                     progress=False, family=family.name,
                                     action_beta=cfg.collect.action_beta, fall_reset=rule)
        seed = torch_seed(cfg.seed, iteration, PLANNER_PURPOSE, index)
        controller = build_controller(learner, cfg, family, seed=seed)
        return collect_closed_loop(family.robot, [condition], controller, steps, rng,
                                   progress=False, family=family.name,
                                   source=f"on_policy:{cfg.learner}", fall_reset=rule,
                                   allow_empty=True)


def collect_chunk(chunk: Chunk) -> list[Dataset]:
    """A chunk's rollouts (on a worker process or a Ray worker), one dataset each."""
    register_document(chunk.family_spec, "family of the collected chunk")
    cfg = config_from_json(chunk.config)
    family = get_family(cfg.family)
    learner = None
    if chunk.weights is not None:
        learner = build_learner(cfg, family)
        learner.load_state_dict({k: torch.from_numpy(np.array(v))
                                 for k, v in chunk.weights.items()})
        learner.train(chunk.training)
    return [collect_rollout(cfg, family, chunk.iteration, chunk.start + j,
                            Condition.from_json(text), learner)
            for j, text in enumerate(chunk.conditions)]


def make_chunks(it: int, cfg: TrainConfig, family: TaskFamily, learner: Learner | None,
                conditions: Sequence[Condition], n_chunks: int) -> list[Chunk]:
    """The rollouts of ``conditions`` as ``n_chunks`` consecutive chunks (fewer when there are
    fewer rollouts)."""
    weights = None
    if learner is not None:
        weights = {k: v.detach().cpu().numpy() for k, v in learner.state_dict().items()}
    n = len(conditions)
    bounds = np.linspace(0, n, min(n_chunks, n) + 1).round().astype(int)
    document = spec_document(get_family(cfg.family))
    texts = [c.to_json() for c in conditions]
    training = bool(learner is not None and learner.training)
    return [Chunk(cfg.to_json(), it, int(s), tuple(texts[s:e]), weights, training, document)
            for s, e in zip(bounds[:-1], bounds[1:], strict=True)]


def join_rollouts(parts: Sequence[Dataset], iteration: int, steps: int,
                  seconds: float = 0.0) -> Dataset:
    """The rollouts' datasets joined in order, with the iteration's statistics summed."""
    kept = [p for p in parts if p.n_trajectories]
    if not kept:
        raise RuntimeError(f"iteration {iteration}: none of the {len(parts)} rollouts kept a "
                           "trajectory (every one diverged, or fell within m + k steps of "
                           "each reset)")
    data = Dataset.concatenate(kept)
    stats: dict[str, Any] = {"requested": len(parts), "kept": data.n_trajectories,
                             "dropped_diverged": sum(p.stats["dropped_diverged"] for p in parts),
                             "steps": int(steps), "seconds": seconds}
    for key in ("fall_resets", "dropped_short"):
        if any(key in p.stats for p in parts):
            stats[key] = sum(p.stats.get(key, 0) for p in parts)
    if any("switch_steps" in p.stats for p in parts):
        stats["switch_steps"] = [s for p in parts for s in p.stats.get("switch_steps", [])]
    return dataclasses.replace(data, stats=stats)


def collect_on_policy(it: int, cfg: TrainConfig, family: TaskFamily, learner: Learner,
                      conditions: Sequence[Condition], progress: bool) -> Dataset:
    """One on-policy rollout of the adaptive controller per condition, on ``collect.workers``
    spawned processes (0 or 1: in this process, with ``learner`` itself)."""
    t0 = time.perf_counter()
    workers = cfg.collect.workers
    bar = tqdm(total=len(conditions), unit="rollout", desc=f"iter {it} on-policy",
               disable=not progress)
    parts: list[Dataset] = []
    if workers <= 1 or len(conditions) <= 1:
        for i, cond in enumerate(conditions):
            parts.append(collect_rollout(cfg, family, it, i, cond, learner))
            bar.update(1)
    else:
        # One rollout per chunk: the pool balances them, and the bar moves per rollout.
        chunks = make_chunks(it, cfg, family, learner, conditions, len(conditions))
        # Spawned, not forked: a fork of a process that has started torch's threads can hang.
        ctx = multiprocessing.get_context("spawn")
        with process_pool(collect_chunk, chunks, min(workers, len(chunks)), ctx) as work:
            for done in work.in_order():
                parts.extend(done)
                bar.update(len(done))
    bar.close()
    return join_rollouts(parts, it, cfg.episode_steps, time.perf_counter() - t0)
