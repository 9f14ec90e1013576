"""One interface for the four model-learning methods compared in GrBAL/ReBAL (ICLR 2019).

- ``MB``: plain supervised dynamics model; no adaptation.
- ``MBDE``: MB + dynamic evaluation — online SGD on the recent transitions at test time,
  carried across calls.
- ``GrBAL``: gradient-based adaptive learner (MAML on the dynamics model), optionally
  first-order or Meta-SGD; meta-batches are vectorised with ``torch.func.vmap``.
- ``ReBAL``: recurrent model whose hidden state, after reading the recent window, is the
  adaptation; ``ReBALGains`` (``ReBALConfig.action_gains``) reads it into per-motor command
  gains with one GRU shared by all motors.

Training: ``opt = torch.optim.Adam(learner.parameters(), lr=learner.config.lr)`` and minimise
``learner.loss(batch)``. Test time: ``predictor = learner.adapt(recent)`` every control step,
then roll candidates through ``predictor``.
"""

from __future__ import annotations

from adaptive_control.learners.base import (
    Adaptation,
    AdaptationKind,
    Learner,
    MLPPredictor,
    RecurrentPredictor,
    inner_update,
    masked_mse,
    masked_rows,
    window_loss,
)
from adaptive_control.learners.ensemble import Ensemble, EnsemblePredictor
from adaptive_control.learners.grbal import (
    GrBAL,
    GrBALConfig,
    lowrank_corrections,
    lowrank_forward,
    lowrank_steps,
    lowrank_task_losses,
    mlp_layers,
)
from adaptive_control.learners.mb import MB, MBDE, MBConfig, MBDEConfig
from adaptive_control.learners.rebal import ReBAL, ReBALConfig, ReBALGains
from adaptive_control.models.normalizer import Normalizer

__all__ = [
    "LEARNERS", "MB", "MBDE", "Adaptation", "AdaptationKind", "Ensemble", "EnsemblePredictor",
    "GrBAL", "GrBALConfig", "Learner",
    "MBConfig", "MBDEConfig", "MLPPredictor", "ReBAL", "ReBALConfig", "ReBALGains",
    "RecurrentPredictor", "inner_update", "lowrank_corrections", "lowrank_forward",
    "lowrank_steps", "lowrank_task_losses", "make_learner", "masked_mse", "masked_rows",
    "mlp_layers",
    "window_loss",
]

#: The one registry of learners, name -> (learner class, config class): every list of learner
#: names (``TrainConfig.learner``'s check, ``adapt eval``'s method names, tests) reads it.
LEARNERS: dict[str, tuple[type[Learner], type]] = {
    "mb": (MB, MBConfig),
    "mbde": (MBDE, MBDEConfig),
    "grbal": (GrBAL, GrBALConfig),
    "rebal": (ReBAL, ReBALConfig),
}


def make_learner(
    name: str,
    obs_dim: int,
    act_dim: int,
    config: MBConfig | MBDEConfig | GrBALConfig | ReBALConfig | None = None,
    normalizer: Normalizer | None = None,
    actuator_velocity_index: tuple[int, ...] | None = None,
) -> Learner:
    """Build a learner by name (case-insensitive; "MB+DE"/"mb_de" are accepted for "mbde").

    ``actuator_velocity_index`` (the robot's ``Robot.actuator_velocity_index``) is needed by
    ReBAL with ``action_gains`` only.
    """
    key = name.lower().replace("+", "").replace("-", "").replace("_", "")
    if key not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; allowed: {', '.join(LEARNERS)}")
    cls, cfg_cls = LEARNERS[key]
    if config is not None and type(config) is not cfg_cls:
        raise ValueError(f"learner {key!r} takes a {cfg_cls.__name__}, "
                         f"got {type(config).__name__}")
    if isinstance(config, ReBALConfig) and config.action_gains:
        return ReBALGains(obs_dim, act_dim, config, normalizer, actuator_velocity_index)
    return cls(obs_dim, act_dim, config, normalizer)
