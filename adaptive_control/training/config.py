"""Typed training configuration: dataclasses, presets, TOML/YAML files and overrides.

Every field is typed with a one-line doc comment. Files and ``--set key=value`` overrides are
checked key by key: an unknown key is refused with the allowed keys listed, a value of the
wrong type or range with the field, the value and what is allowed — always as a
:class:`ConfigError`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptive_control.devices import check_device
from adaptive_control.learners import GrBALConfig, MBConfig, MBDEConfig, ReBALConfig
from adaptive_control.planning import (
    PLANNER_NAMES,
    PlannerConfig,
    RandomShootingConfig,
)

LEARNER_NAMES = ("grbal", "rebal", "mb", "mbde")


class ConfigError(ValueError):
    """A configuration refused before any work: names the key, the value and what is allowed."""


@dataclass(frozen=True)
class CollectConfig:
    """How much data each meta-training iteration collects."""

    #: Iteration 0: random-action rollouts, each in a freshly drawn training condition.
    random_rollouts: int = 5
    #: Later iterations: on-policy rollouts of the adaptive controller (paper: 5).
    rollouts_per_iter: int = 5
    #: Control steps per rollout (paper: 1000).
    episode_steps: int = 1000


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

    #: Which learner: grbal, rebal, mb or mbde.
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
        if self.learner not in LEARNER_NAMES:
            raise ConfigError(f"learner={self.learner!r} is unknown: allowed "
                              f"{', '.join(LEARNER_NAMES)}")
        from sims.registry import get_family

        # A spec file (PATH.toml#FAMILY) is loaded and registered here; the run stores the
        # family's name, and its checkpoint the spec itself.
        object.__setattr__(self, "family", get_family(self.family).name)
        check_device(self.device, "device")
        if not isinstance(self.planner, typing.get_args(PlannerConfig)):
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


#: Settings a table's earlier layers gave before a later layer named another kind (planner) for
#: it: kept where the newly named kind takes them, dropped otherwise (see ``_coerce_named``).
INHERITED = "<inherited>"


def _rename(node: dict[str, Any], keep: set[str] = frozenset()) -> dict[str, Any]:
    """``node`` about to be given another ``name``: its settings (but ``keep``) become
    inherited."""
    moved = {k: v for k, v in node.items() if k not in ("name", INHERITED, *keep)}
    return {**{k: node[k] for k in keep if k in node},
            INHERITED: {**node.get(INHERITED, {}), **moved}}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            old = out[k]
            renamed = "name" in v and v["name"] != old.get("name")
            out[k] = _merge(_rename(old) if renamed else old, v)
        else:
            out[k] = v
    return out


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(path: str, value: Any, tp: Any) -> Any:
    """Check and convert ``value`` to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a table of settings, got {value!r}")
        return build_dataclass(tp, value, path + ".")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}={value!r} is not allowed: allowed "
                              f"{', '.join(map(repr, typing.get_args(tp)))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}={value!r} must be a list")
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(f"{path}[{i}]", v, inner) for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        kinds = _named_kinds(tp)
        if kinds and value is not None:
            return _coerce_named(path, value, kinds)
        for arg in typing.get_args(tp):
            try:
                return _coerce(path, value, arg)
            except ValueError:
                continue
        raise ConfigError(f"{path}={value!r} does not match {tp}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}={value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r} must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}={value!r} must be a string")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{path}={value!r} must be empty")
        return None
    return value


def _named_kinds(tp: Any) -> dict[str, type]:
    """A union of dataclasses told apart by their first field ``name: Literal[...]`` (the
    planner configs) as {name: dataclass}; empty for any other union."""
    kinds: dict[str, type] = {}
    for arg in typing.get_args(tp):
        if arg is type(None):
            continue
        if not dataclasses.is_dataclass(arg):
            return {}
        name_type = _field_types(arg).get("name")
        if typing.get_origin(name_type) is not typing.Literal:
            return {}
        kinds[typing.get_args(name_type)[0]] = arg
    return kinds


def _coerce_named(path: str, value: Any, kinds: dict[str, type]) -> Any:
    """A table of one of ``kinds``, picked by its ``name`` (the first kind when not named), or
    a bare name (that kind's defaults). Its keys must be the named kind's; inherited settings
    (``INHERITED``) are kept where the kind takes them."""
    name_path = path
    if isinstance(value, str):
        value = {"name": value}
    elif isinstance(value, dict):
        name_path = f"{path}.name"
    else:
        raise ConfigError(f"{path}={value!r} must be a table of settings or one of "
                          f"{', '.join(map(repr, kinds))}")
    value = dict(value)
    inherited = value.pop(INHERITED, {})
    name = value.get("name", next(iter(kinds)))
    if not isinstance(name, str) or name not in kinds:
        raise ConfigError(f"{name_path}={name!r} is unknown: allowed {', '.join(kinds)}")
    cls = kinds[name]
    fields = _field_types(cls)
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{path}.{unknown[0]}' for {path}.name={name!r}: "
                          f"allowed keys at this level are {', '.join(sorted(fields))}")
    kept = {k: v for k, v in inherited.items() if k in fields}
    return build_dataclass(cls, {**kept, **value, "name": name}, path + ".")


def build_dataclass(cls: type, values: dict[str, Any], prefix: str = ""):
    """Construct ``cls`` from a nested dict, refusing unknown keys by name."""
    types_ = _field_types(cls)
    unknown = set(values) - set(types_)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"unknown config key '{prefix}{key}': allowed keys at this level are "
                          f"{', '.join(sorted(types_))}")
    kwargs = {k: _coerce(prefix + k, v, types_[k]) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{prefix or cls.__name__}: {e}") from e
    except ValueError as e:  # "CEMConfig.horizon=0 ..." -> "planner.horizon=0 ..."
        own = f"{cls.__name__}."
        if prefix and str(e).startswith(own):
            raise ConfigError(prefix + str(e)[len(own):]) from e
        if isinstance(e, ConfigError):
            raise
        # the configs' own checks (learners, planners, devices, families) name their field
        raise ConfigError(str(e)) from e


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value), the value read as TOML (numbers, bools, lists),
    falling back to a plain string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. optim.max_epochs=5)")
    key, raw = text.split("=", 1)
    keys = [k.strip() for k in key.split(".")]
    if not all(keys):
        raise ConfigError(f"override {text!r}: key={key.strip()!r} has an empty part: allowed "
                          "dotted names such as optim.max_epochs")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return keys, value


def _read_file(path: Path) -> Any:
    """A TOML, YAML or JSON (a run folder's config.json: re-run or vary that run) file's
    values; a file that does not parse is refused naming it."""
    import yaml

    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return yaml.safe_load(path.read_text()) or {}
    except (ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"config={str(path)!r} does not parse as {path.suffix[1:]}: "
                          f"{e}") from e


def layered_values(presets: Mapping[str, dict[str, Any]], path: str | Path | None = None,
                   preset: str | None = None, overrides: Sequence[str] = (),
                   upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None
                   ) -> dict[str, Any]:
    """A config as nested values: the preset, then the file (TOML, YAML, or a run folder's
    config.json; it may name a ``preset``; ``upgrade`` rewrites what older versions wrote),
    then the ``key=value`` overrides. Shared by every typed config loader.

    A layer that names another kind for a table (``--set planner.name=mppi``) starts it
    afresh: the settings of the layers below are kept only where the new kind takes them,
    while the settings the overrides give must all be the new kind's."""
    values: dict[str, Any] = {}
    file_values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config={str(path)!r}: no such file or preset (presets: "
                              f"{', '.join(presets)})")
        if path.suffix in (".toml", ".yaml", ".yml", ".json"):
            file_values = _read_file(path)
        else:
            raise ConfigError(f"config={str(path)!r}: allowed suffixes .toml, .yaml, .yml, "
                              ".json")
        if not isinstance(file_values, dict):
            raise ConfigError(f"config={str(path)!r} must hold a table of settings")
        file_values = dict(file_values if upgrade is None else upgrade(file_values))
        preset = file_values.pop("preset", preset)
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"preset={preset!r} is unknown: allowed {', '.join(presets)}")
        values = copy.deepcopy(presets[preset])
    values = _merge(values, copy.deepcopy(file_values))
    given: set[tuple[str, ...]] = set()  # what the overrides set, whatever their order
    for text in overrides:
        keys, value = parse_override(text)
        parent, node = None, values
        for k in keys[:-1]:
            parent, node = node, node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a table")
        if parent is not None and keys[-1] == "name" and node.get("name") != value:
            keep = {k for k in node if (*keys[:-1], k) in given}
            node = parent[keys[-2]] = _rename(node, keep)
        node[keys[-1]] = value
        given.add(tuple(keys))
    return values


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
