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
    #: Seconds per rollout, rounded to whole decisions (paper: 10 s, 1000 steps of 10 ms).
    episode_s: float = 10.0
    #: End a trajectory once the torso stays fallen (then the rollout's remaining steps go to
    #: fresh resets, sims.collect.FallReset): auto (the robot's: on for the quadruped), on, off.
    fall_reset: Literal["auto", "on", "off"] = "auto"
    #: Uprightness (cos of the torso's tilt) below which a step counts as fallen (0: upside down).
    fall_upright: float = 0.0
    #: Seconds the torso must stay fallen before its trajectory ends.
    fall_seconds: float = 0.2
    #: AR(1) correlation of iteration 0's random actions between control steps, [0, 1) (0: i.i.d.).
    action_beta: float = 0.0
    #: Share of each iteration's rollouts run on the healthy robot on flat ground instead of a
    #: drawn training condition, [0, 1]: data of a robot that runs, where the family's
    #: conditions keep a young controller from running (terrain).
    healthy_share: float = 0.0
    #: Processes running an iteration's on-policy rollouts (spawned; 0 or 1: this process).
    workers: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """Model fitting within one iteration."""

    #: Windows per meta-batch (paper: 10).
    meta_batch: int = 10
    #: Upper bound on epochs per iteration; early stopping usually ends sooner (paper: 100).
    max_epochs: int = 100
    #: Meta-batches per epoch (0: scaled to the data, see ``epoch_passes``).
    steps_per_epoch: int = 0
    #: With ``steps_per_epoch=0``: meta-batches enough to draw this many times as many windows
    #: as the fit's training trajectories hold, so epochs (and patience) grow with the data.
    epoch_passes: float = 1.0
    #: Epochs without validation improvement before stopping.
    patience: int = 5
    #: Fraction of trajectories held back for validation windows (paper: 10 %).
    val_fraction: float = 0.1
    #: Largest number of validation windows scored per epoch.
    val_windows: int = 500
    #: Clip the gradient norm to this (0 = no clipping).
    grad_clip: float = 10.0
    #: Decoupled weight decay of the outer Adam step (AdamW's; 0: none, the paper's).
    weight_decay: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """One meta-training run (defaults are the GrBAL paper's)."""

    #: Which learner: a name of ``learners.LEARNERS`` (grbal, rebal, mb or mbde).
    learner: str = "grbal"
    #: Task family whose training split is meta-trained on (see `adapt sims list`), or a spec
    #: file PATH.toml[#FAMILY]; stored as the family's name.
    family: str = "cheetah-cripple"
    #: Control steps each decision of the controller spans: the run plans in FAMILY@K, each
    #: action held K control steps (0: the robot's default, ``Robot.decision_steps``: 5 for the
    #: cheetah, 50 ms; 1: every control step); stored as resolved.
    decision_steps: int = 0
    #: Outer iterations: 0 collects random data, later ones on-policy data (paper: 50).
    iterations: int = 50
    #: Past transitions adaptation looks at (paper: 16).
    m: int = 16
    #: Future transitions the adapted model is scored on in training (paper: 16).
    k: int = 16
    #: Master seed: every random draw of the run derives from it.
    seed: int = 0
    #: Models trained side by side from their own initial weights, each adapted by the
    #: learner's own step; the planner scores every candidate under each and averages (1: one).
    ensemble: int = 1
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
        from sims.conditions import HEALTHY
        from sims.episode import episode_steps_of
        from sims.registry import decision_family

        # A spec file (PATH.toml#FAMILY) is loaded and registered here; the run stores the
        # name of the family it plans in (FAMILY@K), and its checkpoint the spec itself.
        try:
            family = decision_family(self.family, self.decision_steps)
        except ValueError as e:  # an unknown family, or a decision step it cannot take
            raise ConfigError(str(e)) from None
        object.__setattr__(self, "family", family.name)
        object.__setattr__(self, "decision_steps", family.frame_skip)
        check_device(self.device, "device")
        if not isinstance(self.planner, PLANNER_CONFIGS):
            raise ConfigError(f"planner={self.planner!r} is not a planner config: allowed "
                              f"the configs of {', '.join(PLANNER_NAMES)}")
        for name, lo in (("iterations", 1), ("m", 1), ("k", 1), ("threads", 0),
                         ("ensemble", 1)):
            v = getattr(self, name)
            if v < lo:
                raise ConfigError(f"{name}={v!r} is out of range: allowed >= {lo}")
        c = self.collect
        if c.random_rollouts < 1:
            raise ConfigError(f"collect.random_rollouts={c.random_rollouts!r}: allowed >= 1")
        dt = family.robot.control_timestep
        try:
            steps = episode_steps_of(c.episode_s, dt, "collect.episode_s")
        except ValueError as e:  # too short for two decisions: say which step made it so
            raise ConfigError(f"{e} (at decision_steps={self.decision_steps})") from None
        if c.rollouts_per_iter < 0:
            raise ConfigError(f"collect.rollouts_per_iter={c.rollouts_per_iter!r}: allowed >= 0")
        _check_fall_reset(c, family.robot)
        if not 0.0 <= c.action_beta < 1.0:
            raise ConfigError(f"collect.action_beta={c.action_beta!r}: allowed [0, 1) (the AR(1) "
                              "correlation of random actions; 0: i.i.d. uniform)")
        if not 0.0 <= c.healthy_share <= 1.0:
            raise ConfigError(f"collect.healthy_share={c.healthy_share!r}: allowed [0, 1] (the "
                              "share of rollouts on the healthy robot on flat ground)")
        if c.healthy_share > 0 and family.is_held_out(HEALTHY):
            raise ConfigError(f"collect.healthy_share={c.healthy_share!r}: family "
                              f"{family.name!r} holds out the healthy condition, so training "
                              "may not see it: allowed 0")
        if c.workers < 0:
            raise ConfigError(f"collect.workers={c.workers!r}: allowed >= 0 (0 or 1: the "
                              "rollouts run in this process)")
        if self.m + self.k > steps:
            raise ConfigError(
                f"m + k = {self.m} + {self.k} is longer than a rollout (collect.episode_s="
                f"{c.episode_s:g}: {steps} decisions of {dt:g} s at decision_steps="
                f"{self.decision_steps}): allowed m + k <= the rollout's decisions")
        o = self.optim
        for name in ("meta_batch", "max_epochs", "patience", "val_windows"):
            if getattr(o, name) < 1:
                raise ConfigError(f"optim.{name}={getattr(o, name)!r}: allowed >= 1")
        if o.steps_per_epoch < 0:
            raise ConfigError(f"optim.steps_per_epoch={o.steps_per_epoch!r}: allowed >= 0 "
                              "(0: scaled to the data by optim.epoch_passes)")
        if not (math.isfinite(o.epoch_passes) and o.epoch_passes > 0):
            raise ConfigError(f"optim.epoch_passes={o.epoch_passes!r}: allowed > 0 (passes "
                              "over the training windows per epoch)")
        if not (math.isfinite(o.weight_decay) and o.weight_decay >= 0):
            raise ConfigError(f"optim.weight_decay={o.weight_decay!r}: allowed >= 0 (0: none)")
        if not 0.0 <= o.val_fraction < 1.0:
            raise ConfigError(f"optim.val_fraction={o.val_fraction!r}: allowed [0, 1)")

    @property
    def episode_steps(self) -> int:
        """Decisions per rollout: ``collect.episode_s`` at the run's decision step."""
        from sims.episode import episode_steps_of
        from sims.registry import get_family

        return episode_steps_of(self.collect.episode_s,
                                get_family(self.family).robot.control_timestep,
                                "collect.episode_s")

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
    # The paper's settings (REFERENCE.md): 3 x 512 and its 250 k environment steps (50 iterations
    # x 5 rollouts x 1000 control steps = 200 decisions of 50 ms), at the robot's decision step
    # and the small preset's planner (the paper's random shooting 500 x 10 runs the cheetah at
    # 0.7-0.8 m/s with the true simulator as its model).
    # (meta_impl lowrank: the same second-order meta-gradient, batched with torch.func
    # without forming per-task weights; 3.2x the per-task loop at 3 x 512, plain vmap 0.8x.)
    "paper": {
        "grbal": {"meta_impl": "lowrank"},
        "planner": {"name": "mppi", "num_candidates": 500, "horizon": 15},
    },
    # Minutes on a 2-core machine. Decisions at the robot's decision step (the cheetah's every
    # 50 ms) with MPPI 256 x 15, warm-started: a 0.75 s lookahead (0.6 s on the quadruped).
    # With the true simulator as the model that runs the cheetah at 6.4 m/s healthy and 3.5 m/s
    # on the dead back thigh, upright; deciding every 10 ms with the 0.3 s lookahead of 30
    # steps, 3.0 / 2.4 m/s (docs/results.md, planning rate). 8 iterations: 12 k random decisions
    # (60 x 10 s), then 7 x 5 on-policy rollouts of 10 s; each fit runs until early stopping
    # (patience 5) or 60 epochs. Epochs of a fixed 150 meta-batches: one pass over the data per
    # epoch fits 3-4x longer and runs no better over five seeds (docs/results.md §0).
    "small": {
        "iterations": 8,
        "collect": {"random_rollouts": 60, "rollouts_per_iter": 5, "episode_s": 10.0},
        "optim": {"max_epochs": 60, "steps_per_epoch": 150, "patience": 5, "meta_batch": 16},
        "planner": {"name": "mppi", "num_candidates": 256, "horizon": 15},
        # Action gains: the inner step also fits one command gain per motor, which is what
        # lets one step identify a motor that training never broke (docs/results.md). The
        # paper preset keeps the paper's all-weights inner step.
        # The inner step's gradient norm limited to 10 (in-distribution windows stay below
        # 3): a window unlike any trained on otherwise throws the adapted model far off,
        # and a fit early-stopped by such validation windows stays poor for the whole run.
        # The low-rank meta-gradient: the same meta-loss without per-task weights, 2.2x the
        # vmap path's meta-gradients per second on one core (bench/meta_gradient.py).
        "grbal": {"hidden_sizes": [256, 256], "action_gains": True, "inner_max_norm": 10.0,
                  "meta_impl": "lowrank"},
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
        "collect": {"random_rollouts": 4, "rollouts_per_iter": 1, "episode_s": 3.0},
        "optim": {"max_epochs": 2, "steps_per_epoch": 5, "patience": 1, "meta_batch": 4,
                  "val_windows": 16},
        "planner": {"num_candidates": 16, "horizon": 3},
        "m": 8, "k": 8,
        "grbal": {"hidden_sizes": [32, 32], "action_gains": True, "meta_impl": "lowrank"},
        "mb": {"hidden_sizes": [32, 32]},
        "mbde": {"hidden_sizes": [32, 32]},
        "rebal": {"hidden_size": 8, "cell": "gru", "action_gains": True, "hidden_sizes": [32, 32]},
    },
}


# The small preset's recipe with three models side by side, planned 1.0 s ahead (MPPI 256 x 20):
# the members' mean return keeps the planner off the moves only one model believes in. About
# three times the small preset's fitting and four times its planning; every one of five training
# seeds runs the dead back thigh at 2.0 m/s or more (docs/results.md, planning rate: trained
# together).
PRESETS["ensemble"] = {**PRESETS["small"], "ensemble": 3,
                       "planner": {**PRESETS["small"]["planner"], "horizon": 20}}


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
    started afresh, with white noise), so a run reloads with the planner it was built with; a
    whole config written before ``decision_steps`` existed planned at every control step."""
    if "decision_steps" not in values and _WRITTEN_BEFORE_DECISION_STEPS <= set(values):
        # the family name (NAME or NAME@K, as stored) says how often the run decided
        values = {**values, "decision_steps": 0 if "@" in str(values["family"]) else 1}
    collect = values.get("collect")
    if isinstance(collect, dict) and "episode_steps" in collect:
        values = {**values, "collect": _collect_in_seconds(values, collect)}
    planner = values.get("planner")
    if isinstance(planner, dict) and set(planner) == _FLAT_PLANNER_KEYS:
        took, then = _FLAT_PLANNER_TOOK.get(planner["name"], (set(), {}))
        settings = {k: v for k, v in planner.items() if k in took}
        values = {**values, "planner": {"name": planner["name"], **then, **settings}}
    return values


def _collect_in_seconds(values: dict[str, Any], collect: dict[str, Any]) -> dict[str, Any]:
    """``collect.episode_steps`` (decisions per rollout, as older versions wrote it) as
    ``collect.episode_s``, at the decision step the config names."""
    from sims.registry import decision_family

    family = values.get("family", TrainConfig.family)
    try:
        robot = decision_family(str(family), int(values.get("decision_steps", 0))).robot
    except (ValueError, TypeError) as e:
        raise ConfigError(f"collect.episode_steps: the rollout's length in seconds needs the "
                          f"run's family: {e}") from None
    rest = {k: v for k, v in collect.items() if k != "episode_steps"}
    return {**rest, "episode_s": round(collect["episode_steps"] * robot.control_timestep, 9)}


#: Keys every config written by ``TrainConfig.to_json`` has held (a run's config.json, a
#: checkpoint's config): such a whole config without ``decision_steps`` is an older version's.
_WRITTEN_BEFORE_DECISION_STEPS = frozenset(
    ("learner", "family", "iterations", "m", "k", "seed", "collect", "optim", "planner"))


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
