"""An iteration's rollouts spread over Ray workers (``adapt train --ray``).

The rollouts of an iteration (random actions at iteration 0, the adaptive controller later) are
split into consecutive chunks, one Ray task per chunk. A task receives the config as JSON, the
learner's weights as numpy arrays in a plain dict and the conditions as JSON; it builds its own
learner and controller, collects (``training.collection``), and sends the rollouts' datasets
back. The driver joins them in order.

Every rollout draws its randomness (initial state, actions, observation noise, the planner's
noise) from ``(seed, iteration, rollout index)`` alone, and the conditions are drawn on the
driver as the local collection draws them. So a run on Ray gives the same data on a cluster of
any size and any chunking; given the same learner, its on-policy rollouts are also those a
local collection runs (in this process or on ``collect.workers`` processes). Iteration 0's
random rollouts differ: locally they are one batched ``mujoco.rollout`` drawing from one
generator.
"""

from __future__ import annotations

import time

from adaptive_control.builders import run_rng
from adaptive_control.distributed import check_address, connect, ray_map
from adaptive_control.learners import Learner
from adaptive_control.training.collection import (
    PLANNER_PURPOSE,
    ROLLOUT_PURPOSE,
    Chunk,
    collect_chunk,
    iteration_conditions,
    join_rollouts,
    make_chunks,
)
from adaptive_control.training.config import TrainConfig
from sims.dataset import Dataset
from sims.families import TaskFamily

__all__ = ["PLANNER_PURPOSE", "ROLLOUT_PURPOSE", "Chunk", "RayCollector", "collect_chunk"]


class RayCollector:
    """``train(..., collector=RayCollector("local"))``: each iteration's rollouts as Ray tasks.

    ``chunks`` is the number of tasks per iteration (default: the cluster's CPUs); it changes
    the speed only, never the data.
    """

    def __init__(self, address: str = "local", chunks: int | None = None,
                 num_cpus: int | None = None) -> None:
        self.address = check_address(address)  # refused before any work
        if chunks is not None and chunks < 1:
            raise ValueError(f"chunks={chunks!r}: allowed >= 1")
        self.chunks = chunks
        self.num_cpus = num_cpus

    def __call__(self, it: int, cfg: TrainConfig, family: TaskFamily, learner: Learner,
                 progress: bool) -> Dataset:
        ray = connect(self.address, num_cpus=self.num_cpus, quiet=not progress)
        t0 = time.perf_counter()
        rng = run_rng(cfg.seed, it, 0)  # the conditions, drawn as the local collection draws them
        conds = iteration_conditions(it, cfg, family, rng)
        chunks = self.chunks or max(1, int(ray.cluster_resources().get("CPU", 1)))
        items = make_chunks(it, cfg, family, learner if it > 0 else None, conds, chunks)
        results = ray_map(collect_chunk, items, desc=f"iter {it} collect on ray", unit="chunk",
                          progress=progress)
        return join_rollouts([d for chunk in results for d in chunk], it,
                             cfg.episode_steps, time.perf_counter() - t0)
