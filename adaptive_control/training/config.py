"""Typed training configuration: ``TrainConfig``, its presets, and loading it from a preset, a
TOML/YAML file (or a run's config.json) and ``--set key=value`` overrides.

Every field is typed with a one-line doc comment. Loading is ``adaptive_control.config_loader``'s:
checked key by key, refused naming the key, the value and what is allowed — always as a
:class:`~adaptive_control.config_loader.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adaptive_control.config_loader import ConfigError, build_dataclass, layered_values
from adaptive_control.devices import check_device
from adaptive_control.learners import LEARNERS, GrBALConfig, MBConfig, MBDEConfig, ReBALConfig
from adaptive_control.planning import (
    PLANNER_CONFIGS,
    PLANNER_NAMES,
    PlannerConfig,
    RandomShootingConfig,
)


@dataclass(frozen=True)
class CollectConfig:
    """How much data each meta-training iteration collects."""

    #: Iteration 0: random-action rollouts, each in a freshly drawn training condition.
    random_rollouts: int = 5
    #: Later iterations: on-policy rollouts of the adaptive controller (paper: 5).
    rollouts_per_iter: int = 5
    #: Control steps per rollout (paper: 1000).
    episode_steps: int = 1000
    #: End a trajectory once the torso stays fallen (then the rollout's remaining steps go to
    #: fresh resets, sims.collect.FallReset): auto (the robot's: on for the quadruped), on, off.
    fall_reset: Literal["auto", "on", "off"] = "auto"
    #: Uprightness (cos of the torso's tilt) below which a step counts as fallen (0: upside down).
    fall_upright: float = 0.0
    #: Seconds the torso must stay fallen before its trajectory ends.
    fall_seconds: float = 0.2
    #: AR(1) correlation of iteration 0's random actions between control steps, [0, 1) (0: i.i.d.).
    action_beta: float = 0.0
    #: Processes running an iteration's on-policy rollouts (spawned; 0 or 1: this process).
    workers: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """Model fitting within one iteration."""

    #: Windows per meta-batch (paper: 10).
    meta_batch: int = 10
    #: Upper bound on epochs per iteration; early stopping usually ends sooner (paper: 100).
    max_epochs: int = 100
    #: Meta-batches per epoch.
    steps_per_epoch: int = 200
    #: Epochs without validation improvement before stopping.
    patience: int = 5
    #: Fraction of trajectories held back for validation windows (paper: 10 %).
    val_fraction: float = 0.1
    #: Largest number of validation windows scored per epoch.
    val_windows: int = 500
    #: Clip the gradient norm to this (0 = no clipping).
    grad_clip: float = 10.0


@dataclass(frozen=True)
class TrainConfig:
    """One meta-training run (defaults are the GrBAL paper's)."""

    #: Which learner: a name of ``learners.LEARNERS`` (grbal, rebal, mb or mbde).
    learner: str = "grbal"
    #: Task family whose training split is meta-trained on (see `adapt sims list`), or a spec
    #: file PATH.toml[#FAMILY]; stored as the family's name.
    family: str = "cheetah-cripple"
    #: Outer iterations: 0 collects random data, later ones on-policy data (paper: 50).
    iterations: int = 50
    #: Past transitions adaptation looks at (paper: 16).
    m: int = 16
    #: Future transitions the adapted model is scored on in training (paper: 16).
    k: int = 16
    #: Master seed: every random draw of the run derives from it.
    seed: int = 0
    #: Torch threads (0 = all cores).
    threads: int = 0
    #: Where the model, its optimiser and the planner live: cpu, cuda, cuda:N or auto.
    device: str = "cpu"
    #: Data collection.
    collect: CollectConfig = field(default_factory=CollectConfig)
    #: Model fitting.
    optim: OptimConfig = field(default_factory=OptimConfig)
    #: The planner of the adaptive controller: a table whose ``name`` picks random_shooting,
    #: cem or mppi (random_shooting when not named), with that planner's settings.
    planner: PlannerConfig = field(default_factory=RandomShootingConfig)
    #: GrBAL settings.
    grbal: GrBALConfig = field(default_factory=GrBALConfig)
    #: ReBAL settings.
    rebal: ReBALConfig = field(default_factory=ReBALConfig)
    #: MB settings.
    mb: MBConfig = field(default_factory=MBConfig)
    #: MB+DE settings.
    mbde: MBDEConfig = field(default_factory=MBDEConfig)

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise ConfigError(f"learner={self.learner!r} is unknown: allowed "
                              f"{', '.join(LEARNERS)}")
        from sims.registry import get_family

        # A spec file (PATH.toml#FAMILY) is loaded and registered here; the run stores the
        # family's name, and its checkpoint the spec itself.
        object.__setattr__(self, "family", get_family(self.family).name)
        check_device(self.device, "device")
        if not isinstance(self.planner, PLANNER_CONFIGS):
            raise ConfigError(f"planner={self.planner!r} is not a planner config: allowed "
                              f"the configs of {', '.join(PLANNER_NAMES)}")
        for name, lo in (("iterations", 1), ("m", 1), ("k", 1), ("threads", 0)):
            v = getattr(self, name)
            if v < lo:
                raise ConfigError(f"{name}={v!r} is out of range: allowed >= {lo}")
        c = self.collect
        for name in ("random_rollouts", "episode_steps"):
            if getattr(c, name) < 1:
                raise ConfigError(f"collect.{name}={getattr(c, name)!r}: allowed >= 1")
        if c.rollouts_per_iter < 0:
            raise ConfigError(f"collect.rollouts_per_iter={c.rollouts_per_iter!r}: allowed >= 0")
        _check_fall_reset(c, get_family(self.family).robot)
        if not 0.0 <= c.action_beta < 1.0:
            raise ConfigError(f"collect.action_beta={c.action_beta!r}: allowed [0, 1) (the AR(1) "
                              "correlation of random actions; 0: i.i.d. uniform)")
        if c.workers < 0:
            raise ConfigError(f"collect.workers={c.workers!r}: allowed >= 0 (0 or 1: the "
                              "rollouts run in this process)")
        if self.m + self.k > c.episode_steps:
            raise ConfigError(
                f"m + k = {self.m} + {self.k} is longer than an episode "
                f"(collect.episode_steps={c.episode_steps}): allowed m + k <= episode_steps")
        o = self.optim
        for name in ("meta_batch", "max_epochs", "steps_per_epoch", "patience", "val_windows"):
            if getattr(o, name) < 1:
                raise ConfigError(f"optim.{name}={getattr(o, name)!r}: allowed >= 1")
        if not 0.0 <= o.val_fraction < 1.0:
            raise ConfigError(f"optim.val_fraction={o.val_fraction!r}: allowed [0, 1)")

    @property
    def learner_config(self) -> GrBALConfig | ReBALConfig | MBConfig | MBDEConfig:
        return getattr(self, self.learner)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _check_fall_reset(c: CollectConfig, robot: Any) -> None:
    if c.fall_reset not in ("auto", "on", "off"):
        raise ConfigError(f"collect.fall_reset={c.fall_reset!r} is not allowed: allowed 'auto' "
                          "(the robot's default), 'on', 'off'")
    if not -1.0 <= c.fall_upright <= 1.0:
        raise ConfigError(f"collect.fall_upright={c.fall_upright!r}: allowed [-1, 1] "
                          "(uprightness: 1 upright, 0 on its side, -1 upside down)")
    if not (math.isfinite(c.fall_seconds) and c.fall_seconds >= 0):
        raise ConfigError(f"collect.fall_seconds={c.fall_seconds!r}: allowed a number >= 0")
    if c.fall_reset == "on" and robot.orientation_quat_index is None \
            and robot.pitch_index is None:
        raise ConfigError(f"collect.fall_reset='on': robot {robot.name!r} has no torso "
                          "orientation in its observation, so a fall cannot be told: allowed "
                          "'off' or 'auto'")


# ---------------------------------------------------------------------------- presets
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's settings (REFERENCE.md): 50 iterations x 5 rollouts x 1000 steps, 3 x 512.
    # (meta_impl lowrank: the same second-order meta-gradient, batched with torch.func
    # without forming per-task weights; 3.2x the per-task loop at 3 x 512, plain vmap 0.8x.)
    "paper": {"grbal": {"meta_impl": "lowrank"}},
    # Finishes in minutes on a 2-core machine: smaller networks, fewer and shorter rollouts.
    "small": {
        "iterations": 3,
        "collect": {"random_rollouts": 60, "rollouts_per_iter": 3, "episode_steps": 500},
        "optim": {"max_epochs": 12, "steps_per_epoch": 150, "patience": 3, "meta_batch": 16},
        # MPPI 256 x 30, warm-started: a 0.3 s lookahead (0.6 s on the quadruped). With the
        # true simulator as the model it runs the cheetah at 3.0 m/s healthy and 2.4 m/s on the
        # dead back thigh, upright; the paper's random shooting 500 x 10 reaches 0.7-0.8 m/s and
        # the CEM 64 x 10 x 4 used before 1.5-1.7 m/s (research/planner_sweep.py,
        # docs/results.md). Trained with it on-policy, the learned GrBAL runs upright where the
        # CEM-trained one fell onto its back.
        "planner": {"name": "mppi", "num_candidates": 256, "horizon": 30},
        # Action gains: the inner step also fits one command gain per motor, which is what
        # lets one step identify a motor that training never broke (docs/results.md). The
        # paper preset keeps the paper's all-weights inner step.
        "grbal": {"hidden_sizes": [256, 256], "action_gains": True},
        "mb": {"hidden_sizes": [256, 256]},
        "mbde": {"hidden_sizes": [256, 256]},
        # Action-gain ReBAL: one GRU (32 units) shared by all motors reads the window into
        # per-motor gains in front of a 2 x 256 MLP; for terrain, where the change is not in
        # the motors, set rebal.action_gains=false (plain GRU 128, lr 3e-3).
        "rebal": {"hidden_size": 32, "cell": "gru", "lr": 1e-3, "action_gains": True,
                  "hidden_sizes": [256, 256]},
    },
    # For tests: seconds, not minutes.
    "tiny": {
        "iterations": 2,
        "collect": {"random_rollouts": 4, "rollouts_per_iter": 1, "episode_steps": 60},
        "optim": {"max_epochs": 2, "steps_per_epoch": 5, "patience": 1, "meta_batch": 4,
                  "val_windows": 16},
        "planner": {"num_candidates": 16, "horizon": 3},
        "m": 8, "k": 8,
        "grbal": {"hidden_sizes": [32, 32], "action_gains": True},
        "mb": {"hidden_sizes": [32, 32]},
        "mbde": {"hidden_sizes": [32, 32]},
        "rebal": {"hidden_size": 8, "cell": "gru", "action_gains": True, "hidden_sizes": [32, 32]},
    },
}


#: The one planner table of configs written before each planner had its own config type.
_FLAT_PLANNER_KEYS = frozenset({"name", "num_candidates", "horizon", "num_iterations",
                                "elite_frac", "alpha", "noise_sigma", "lambda_", "beta"})


#: What each planner took from the flat table, and what it was then without a setting for it.
_FLAT_PLANNER_TOOK = {
    "random_shooting": ({"num_candidates", "horizon"}, {}),
    "cem": ({"num_candidates", "horizon", "num_iterations", "elite_frac", "alpha"},
            {"warm_start": False}),
    "mppi": ({"num_candidates", "horizon", "noise_sigma", "lambda_", "beta"}, {}),
}


def upgrade_values(values: dict[str, Any]) -> dict[str, Any]:
    """A config as older versions wrote it, as this one reads it: the flat planner table
    becomes the named planner's, with the fields that planner took and what it was then (CEM
    started afresh, with white noise), so a run reloads with the planner it was built with."""
    planner = values.get("planner")
    if isinstance(planner, dict) and set(planner) == _FLAT_PLANNER_KEYS:
        took, then = _FLAT_PLANNER_TOOK.get(planner["name"], (set(), {}))
        settings = {k: v for k, v in planner.items() if k in took}
        values = {**values, "planner": {"name": planner["name"], **then, **settings}}
    return values


def load_config(path: str | Path | None = None, preset: str | None = None,
                overrides: Sequence[str] = ()) -> TrainConfig:
    """Preset, then the file (TOML, YAML or a run's config.json), then overrides."""
    return build_dataclass(TrainConfig, layered_values(PRESETS, path, preset, overrides,
                                                       upgrade_values))


def config_from_arg(config: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """``CONFIG`` as `adapt train` and `adapt sweep` take it: a preset name, else a config file."""
    if config in PRESETS:
        return load_config(preset=config, overrides=overrides)
    return load_config(config, overrides=overrides)


def config_from_json(text: str) -> TrainConfig:
    return build_dataclass(TrainConfig, upgrade_values(json.loads(text)))
