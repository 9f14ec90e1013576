"""Tiny, untrained learners for the tests.

Weights are the seeded initialisation and the normaliser is fitted on synthetic data of the
robot's sizes, so exporting one takes seconds and needs no training run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from adaptive_control.learners import (
    GrBALConfig,
    Learner,
    MBConfig,
    MBDEConfig,
    ReBALConfig,
    make_learner,
)
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.planning import planner_config
from adaptive_control.training.config import TrainConfig
from sims.registry import get_family


def tiny_config(learner: str = "grbal", planner: str = "random_shooting",
                family: str = "cheetah-cripple", m: int = 4, candidates: int = 8,
                horizon: int = 3, hidden: tuple[int, ...] = (16, 16), rnn_hidden: int = 8,
                cell: str = "gru", decision_steps: int | None = None,
                **learner_fields: Any) -> TrainConfig:
    """A TrainConfig with small sizes; ``learner_fields`` go into the learner's config. A
    family named without ``@K`` plans at every control step unless ``decision_steps`` says
    otherwise, so the exported graphs are for the robot itself (``cheetah``)."""
    if decision_steps is None:
        decision_steps = 0 if "@" in family else 1
    cfg = TrainConfig(
        learner=learner, family=family, decision_steps=decision_steps, m=m, k=m,
        planner=planner_config(planner, num_candidates=candidates, horizon=horizon,
                               **({"num_iterations": 2} if planner == "cem" else {})),
        grbal=GrBALConfig(hidden_sizes=hidden),
        mb=MBConfig(hidden_sizes=hidden), mbde=MBDEConfig(hidden_sizes=hidden),
        rebal=ReBALConfig(hidden_size=rnn_hidden, cell=cell))  # type: ignore[arg-type]
    if learner_fields:
        sub = dataclasses.replace(cfg.learner_config, **learner_fields)
        cfg = dataclasses.replace(cfg, **{learner: sub})
    return cfg


def synthetic_normalizer(obs_dim: int, act_dim: int, seed: int = 0) -> Normalizer:
    """Statistics of random data with unequal scales, so normalisation is not a no-op."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.2, 3.0, obs_dim)
    obs = rng.standard_normal((512, obs_dim)) * scale + rng.standard_normal(obs_dim)
    act = rng.uniform(-1, 1, (512, act_dim))
    nxt = obs + 0.1 * scale * rng.standard_normal((512, obs_dim)) + 0.01
    return Normalizer.fit(obs, act, nxt)


def tiny_learner(cfg: TrainConfig, seed: int = 0) -> Learner:
    """The learner ``cfg`` describes, randomly initialised, with a synthetic normaliser."""
    robot = get_family(cfg.family).robot
    learner = make_learner(cfg.learner, robot.obs_dim, robot.act_dim, cfg.learner_config,
                           synthetic_normalizer(robot.obs_dim, robot.act_dim, seed),
                           actuator_velocity_index=robot.actuator_velocity_index)
    return learner.eval()
