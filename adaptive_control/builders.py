"""What a run builds from its config: the run's random streams, the learner, the adaptive
controller, and the trained learner again from a checkpoint.

The training loop (``training/loop.py``) builds with these, and so does everything that rebuilds
a learner or a controller from a checkpoint (evaluation, export, policies, research) without
going through the loop.

Every random draw of a run derives from ``(config.seed, iteration, purpose)``: ``run_rng`` gives
each its own generator, so a resumed run draws what an uninterrupted one would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from adaptive_control.control import AdaptiveController
from adaptive_control.devices import module_device
from adaptive_control.learners import Ensemble, Learner, make_learner
from adaptive_control.planning import make_planner
from adaptive_control.training.config import TrainConfig, config_from_json
from sims.families import TaskFamily
from sims.registry import get_family
from sims.rewards import task_reward


# ------------------------------------------------------------------------------ random streams
def run_rng(seed: int, iteration: int, purpose: int, *index: int) -> np.random.Generator:
    """An independent generator per (run, iteration, purpose[, index ...]): resumable without
    replaying; ``index`` tells apart the items of one purpose (one rollout among many)."""
    return np.random.default_rng([seed, iteration, purpose, *index])


def torch_seed(seed: int, iteration: int, purpose: int, *index: int) -> int:
    """A torch seed from ``run_rng(seed, iteration, purpose, *index)``."""
    return int(run_rng(seed, iteration, purpose, *index).integers(2**62))


# ------------------------------------------------------------------------------ building
def build_learner(cfg: TrainConfig, family: TaskFamily) -> Learner:
    """The config's learner, untrained, for the family's robot (weights seeded by its config);
    with ``cfg.ensemble > 1`` an :class:`Ensemble` of that many, drawn one after the other and
    each seeded by its config's seed + its index, sharing one normaliser."""
    robot = family.robot
    if cfg.ensemble == 1:
        return make_learner(cfg.learner, robot.obs_dim, robot.act_dim, cfg.learner_config,
                            actuator_velocity_index=robot.actuator_velocity_index)
    members = [make_learner(cfg.learner, robot.obs_dim, robot.act_dim,
                            replace(cfg.learner_config, seed=cfg.learner_config.seed + i),
                            actuator_velocity_index=robot.actuator_velocity_index)
               for i in range(cfg.ensemble)]
    # One normaliser for all: they see the same data, and the training loop refits the
    # ensemble's (``learner.normalizer``) each iteration.
    for m in members[1:]:
        m.model.normalizer = members[0].model.normalizer
    return Ensemble(members)


def check_joinable(first: TrainConfig, other: TrainConfig, where: str) -> None:
    """Refuse to join the run of config ``other`` (named ``where``) to that of ``first`` in one
    ensemble unless they share learner, family and window M."""
    for name in ("learner", "family", "m"):
        if getattr(other, name) != getattr(first, name):
            raise ValueError(f"the runs of an ensemble must share {name}: "
                             f"{getattr(first, name)!r} in the first, "
                             f"{getattr(other, name)!r} in {where}")


def ensemble_of(runs: Sequence[tuple[Learner, TrainConfig]]) -> tuple[Learner, TrainConfig]:
    """Trained learners of separate runs (``learner_from_checkpoint``'s) as one ensemble, each
    member keeping its weights and normaliser; with the first run's config (its planner and
    window), ``ensemble`` set to the members' count. The runs must share learner, family and
    window M (:func:`check_joinable`); a run that is itself an ensemble contributes its
    members."""
    if not runs:
        raise ValueError("an ensemble needs at least one run")
    first = runs[0][1]
    members: list[Learner] = []
    for i, (learner, cfg) in enumerate(runs):
        check_joinable(first, cfg, f"run {i + 1}")
        members.extend(learner.members if isinstance(learner, Ensemble) else [learner])
    if len(members) == 1:
        return members[0], first
    return Ensemble(members), replace(first, ensemble=len(members))


def build_controller(learner: Learner, cfg: TrainConfig, family: TaskFamily,
                     seed: int = 0) -> AdaptiveController:
    """``learner`` with the config's planner and the family's task reward, adapting on the last
    ``cfg.m`` transitions; ``seed`` seeds the planner's noise."""
    lo, hi = family.robot.action_bounds
    planner = make_planner(cfg.planner, torch.tensor(lo, dtype=torch.float32),
                           torch.tensor(hi, dtype=torch.float32))
    return AdaptiveController(learner, planner, task_reward(family.robot), m=cfg.m, seed=seed)


def learner_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu"
                            ) -> tuple[Learner, TrainConfig]:
    """Rebuild the trained learner (weights and normalisers) from a loaded checkpoint, on
    ``device`` (whatever device it was trained on: the config's ``device`` is not read)."""
    cfg = config_from_json(ckpt["config"])
    learner = build_learner(cfg, get_family(cfg.family))
    learner.load_state_dict(ckpt["learner"])
    learner.to(device)
    learner.eval()
    return learner, cfg


def mbde_from_mb(learner: Learner, cfg: TrainConfig) -> Learner:
    """MB+DE on a trained MB's weights: the same model, updated online at test time (each
    member of an ensemble on its own)."""
    if cfg.learner != "mb":
        raise ValueError(f"MB+DE runs on an MB checkpoint, this one holds {cfg.learner!r}")
    from adaptive_control.learners import MBDE

    robot = get_family(cfg.family).robot
    config = replace(cfg.mbde, hidden_sizes=cfg.mb.hidden_sizes)

    def convert(mb: Learner) -> Learner:
        mbde = MBDE(robot.obs_dim, robot.act_dim, config)
        mbde.load_state_dict(mb.state_dict())
        return mbde

    out = (Ensemble([convert(m) for m in learner.members]) if isinstance(learner, Ensemble)
           else convert(learner))
    out.to(module_device(learner))
    out.eval()
    return out
