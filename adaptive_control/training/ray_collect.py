"""An iteration's rollouts spread over Ray workers (``adapt train --ray``).

The rollouts of an iteration (random actions at iteration 0, the adaptive controller later) are
split into consecutive chunks, one Ray task per chunk. A task receives the config as JSON, the
learner's weights as numpy arrays in a plain dict and the conditions as JSON; it builds its own
learner and controller, collects, and sends the dataset back. The driver joins the chunks in
order.

Every rollout draws its randomness (initial state, actions, observation noise, the planner's
noise) from ``(seed, iteration, rollout index)`` alone, and the conditions are drawn on the
driver as the local collection draws them. So a run on Ray gives the same data on a cluster of
any size and any chunking, but not the local run's data: there one generator runs through all
the rollouts of an iteration in turn.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from adaptive_control.builders import build_controller, build_learner, run_rng, torch_seed
from adaptive_control.distributed import check_address, connect, ray_map
from adaptive_control.learners import Learner
from adaptive_control.training.config import TrainConfig, config_from_json
from sims.collect import collect_closed_loop, collect_open_loop
from sims.conditions import Condition
from sims.dataset import Dataset
from sims.families import TaskFamily
from sims.registry import get_family, register_document
from sims.specs import spec_document

#: ``run_rng`` purposes of the rollouts collected on Ray (the loop's own use 0-3 and 99).
ROLLOUT_PURPOSE = 4
PLANNER_PURPOSE = 5


@dataclass(frozen=True)
class Chunk:
    """One Ray task's share of an iteration: plain data only (no torch objects)."""

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


def collect_chunk(chunk: Chunk) -> Dataset | None:
    """Run one chunk's rollouts (on a Ray worker); None when every one of them diverged."""
    register_document(chunk.family_spec, "family of the collected chunk")
    cfg = config_from_json(chunk.config)
    family = get_family(cfg.family)
    steps = cfg.collect.episode_steps
    learner = None
    if chunk.weights is not None:
        learner = build_learner(cfg, family)
        learner.load_state_dict({k: torch.from_numpy(np.array(v))
                                 for k, v in chunk.weights.items()})
        learner.train(chunk.training)
    parts: list[Dataset] = []
    dropped = 0
    for j, text in enumerate(chunk.conditions):
        i = chunk.start + j
        cond = Condition.from_json(text)
        rng = run_rng(cfg.seed, chunk.iteration, ROLLOUT_PURPOSE, i)
        if learner is None:
            part = collect_open_loop(family.robot, [cond], steps, rng, nthread=1, progress=False,
                                     family=family.name)
            dropped += part.stats["dropped_diverged"]
            if part.n_trajectories:
                parts.append(part)
            continue
        seed = torch_seed(cfg.seed, chunk.iteration, PLANNER_PURPOSE, i)
        controller = build_controller(learner, cfg, family, seed=seed)
        try:
            parts.append(collect_closed_loop(family.robot, [cond], controller, steps, rng,
                                             progress=False, family=family.name,
                                             source=f"on_policy:{cfg.learner}"))
        except RuntimeError as e:  # collect_closed_loop refuses a dataset of no trajectories
            if "diverged" not in str(e):
                raise
            dropped += 1
    if not parts:
        return None
    return _joined(parts, len(chunk.conditions), dropped, steps)


def _joined(parts: list[Dataset], requested: int, dropped: int, steps: int,
            seconds: float = 0.0) -> Dataset:
    """Datasets of one collection joined in order, with the collection's statistics."""
    data = Dataset.concatenate(parts)
    stats: dict[str, Any] = {"requested": requested, "kept": data.n_trajectories,
                             "dropped_diverged": dropped, "steps": int(steps),
                             "seconds": seconds}
    switches = [s for p in parts for s in p.stats.get("switch_steps", [])]
    if any("switch_steps" in p.stats for p in parts):
        stats["switch_steps"] = switches
    return dataclasses.replace(data, stats=stats)


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
        n = cfg.collect.random_rollouts if it == 0 else cfg.collect.rollouts_per_iter
        conds = [family.sample(rng, "train").to_json() for _ in range(n)]
        weights = None
        if it > 0:
            weights = {k: v.detach().cpu().numpy() for k, v in learner.state_dict().items()}
        chunks = self.chunks or max(1, int(ray.cluster_resources().get("CPU", 1)))
        bounds = np.linspace(0, n, min(chunks, n) + 1).round().astype(int)
        document = spec_document(get_family(cfg.family))
        items = [Chunk(cfg.to_json(), it, int(s), tuple(conds[s:e]), weights, learner.training,
                       document)
                 for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
        results = ray_map(collect_chunk, items, desc=f"iter {it} collect on ray", unit="chunk",
                          progress=progress)
        parts = [d for d in results if d is not None]
        if not parts:
            raise RuntimeError(f"iteration {it}: all {n} rollouts diverged")
        dropped = n - sum(d.n_trajectories for d in parts)
        return _joined(parts, n, dropped, cfg.collect.episode_steps, time.perf_counter() - t0)
