"""Stateful MPC planners: validated configs, warm-start memory, noise drawn from an explicit
``torch.Generator``, all under ``torch.no_grad``; the arithmetic is the pure optimisers'
(:mod:`adaptive_control.planning.optimizers`).

Defaults follow GrBAL (Nagabandi, Clavera et al., ICLR 2019): random shooting with 500 uniform
candidates over a horizon of 10, the first action executed, no warm start; the CEM variant runs
5 iterations with 10 % elites and smoothing 0.1. MPPI is not in that paper; its defaults are
ours and documented on ``MPPIConfig``.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from adaptive_control.planning.objective import Objective, TrajectoryObjective
from adaptive_control.planning.optimizers import cem, mppi, random_shooting, shift_plan
from adaptive_control.types import Predictor, RewardFn

# --------------------------------------------------------------------------------------------
# Configs and validation
# --------------------------------------------------------------------------------------------


def _check_int(cls: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{cls}.{name}={value!r} must be an integer >= {minimum}")


def _check_float(
    cls: str, name: str, value: Any, lo: float, hi: float, lo_open: bool, hi_open: bool
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{cls}.{name}={value!r} must be a number in {rng}")


def _check_fill(cls: str, value: Any) -> None:
    if value not in ("last", "mid"):
        raise ValueError(f"{cls}.warm_start_fill={value!r} must be one of 'last', 'mid'")


def _check_name(config: Any) -> None:
    own = dataclasses.fields(config)[0].default
    if config.name != own:
        raise ValueError(f"{type(config).__name__}.name={config.name!r} must be {own!r} "
                         "(switch_planner gives another planner)")


def _check_hold(config: Any) -> None:
    _check_int(type(config).__name__, "hold", config.hold, 1)
    if config.hold > config.horizon:
        raise ValueError(f"{type(config).__name__}.hold={config.hold!r} is longer than the "
                         f"horizon ({config.horizon}): allowed 1 to {config.horizon}")


def planning_steps(config: Any) -> int:
    """Free steps of a plan: the horizon in units of ``hold`` control steps (rounded up)."""
    return -(-config.horizon // getattr(config, "hold", 1))


_INF = math.inf
WarmStartFill = Literal["last", "mid"]


# Every planner config starts with ``name`` (``_check_name`` reads its default; the config files
# tell the planners apart by it), ``num_candidates`` and ``horizon``, and ends with ``discount``;
# CEM and MPPI share their last five fields. The configs are built from these bases so that the
# fields keep the order the config files, ``config.json`` and checkpoints write them in: a
# dataclass lists its bases' fields in reverse MRO order (the bases right to left), then its
# own, and a field a subclass declares again keeps its first place. ``CEMConfig(_WarmStarted,
# _CEMSettings)`` is name, num_candidates, horizon (``_Problem``), CEM's settings, then beta,
# hold, warm_start, warm_start_fill, discount (``_WarmStarted``).


@dataclass(frozen=True)
class _Problem:
    """The first fields of every planner config: which planner, how many candidates, how far."""

    #: Which planner this configures (the ``name`` of a planner table in config files).
    name: str = ""
    #: Candidate action sequences sampled per plan() call, CEM's per iteration (paper: 500).
    num_candidates: int = 500
    #: Planning horizon in steps (paper: 10).
    horizon: int = 10

    def _check_problem(self) -> None:
        _check_name(self)
        c = type(self).__name__
        _check_int(c, "num_candidates", self.num_candidates, 1)
        _check_int(c, "horizon", self.horizon, 1)


@dataclass(frozen=True)
class _WarmStarted:
    """The last fields of the warm-started planners (CEM, MPPI), after their own settings."""

    #: AR(1) correlation of the noise along the horizon, in [0, 1] (0 = white noise; iCEM's
    #: coloured noise for CEM, whose default is the paper's white noise).
    beta: float = 0.0
    #: Control steps each sampled perturbation is held for: planning steps ``hold`` times
    #: coarser than control steps, the same lookahead with fewer free variables (1 = none).
    hold: int = 1
    #: Start from the previous plan shifted by one step instead of the bounds' midpoint (the
    #: paper's CEM starts afresh; on by default: measured against the oracle, docs/results.md).
    warm_start: bool = True
    #: What to append when shifting a warm-start plan: repeat the "last" step or the "mid"point.
    warm_start_fill: WarmStartFill = "last"
    #: Per-step reward discount in (0, 1] (paper: 1, undiscounted).
    discount: float = 1.0

    def _check_warm_started(self) -> None:
        c = type(self).__name__
        _check_float(c, "beta", self.beta, 0.0, 1.0, False, False)
        _check_hold(self)
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"{c}.warm_start={self.warm_start!r} must be a bool")
        _check_fill(c, self.warm_start_fill)
        _check_float(c, "discount", self.discount, 0.0, 1.0, True, False)


@dataclass(frozen=True)
class RandomShootingConfig(_Problem):
    """Random shooting (GrBAL's planner). Defaults from the paper."""

    #: How the candidates' noise is drawn (one tensor per plan; the ONNX graph takes it as input).
    noise_distribution: ClassVar[str] = "uniform"
    #: Random shooting starts every plan afresh.
    warm_start: ClassVar[bool] = False

    name: Literal["random_shooting"] = "random_shooting"
    #: Per-step reward discount in (0, 1] (paper: 1, undiscounted).
    discount: float = 1.0

    def noise_shape(self, act_dim: int) -> tuple[int, ...]:
        """One draw per plan: candidates x horizon x action."""
        return (self.num_candidates, self.horizon, act_dim)

    def optimize(self, objective: Objective, noise: Tensor, lo: Tensor, hi: Tensor,
                 prior: Tensor) -> Tensor:
        """The best of the uniform candidates (random shooting ignores ``prior``)."""
        best, _ = random_shooting(objective, noise, lo, hi)
        return best

    def __post_init__(self) -> None:
        self._check_problem()
        _check_float(type(self).__name__, "discount", self.discount, 0.0, 1.0, True, False)


@dataclass(frozen=True)
class _CEMSettings(_Problem):
    """CEM's own fields (between ``_Problem``'s and ``_WarmStarted``'s in ``CEMConfig``)."""

    #: CEM iterations per plan() call (paper: 5).
    num_iterations: int = 5
    #: Fraction of candidates kept as elites, in (0, 1] (paper: 0.1).
    elite_frac: float = 0.1
    #: Smoothing: weight of the old mean/std in each update, in [0, 1) (paper: 0.1).
    alpha: float = 0.1
    #: Initial std in units of the action half-range (high − low) / 2 (code: 1 on [−1, 1]).
    init_std: float = 1.0


@dataclass(frozen=True)
class CEMConfig(_WarmStarted, _CEMSettings):
    """Cross-entropy method (GrBAL's CEM variant). Defaults from the paper and its code."""

    noise_distribution: ClassVar[str] = "normal"

    name: Literal["cem"] = "cem"

    def noise_shape(self, act_dim: int) -> tuple[int, ...]:
        """One draw per plan: iterations x candidates x planning steps x action."""
        return (self.num_iterations, self.num_candidates, planning_steps(self), act_dim)

    def optimize(self, objective: Objective, noise: Tensor, lo: Tensor, hi: Tensor,
                 prior: Tensor) -> Tensor:
        """CEM's final mean, started from ``prior``."""
        return cem(objective, noise, lo, hi, prior, self.init_std * (hi - lo) / 2,
                   self.elite_frac, self.alpha, self.beta)

    def __post_init__(self) -> None:
        self._check_problem()
        c = type(self).__name__
        _check_int(c, "num_iterations", self.num_iterations, 1)
        _check_float(c, "elite_frac", self.elite_frac, 0.0, 1.0, True, False)
        _check_float(c, "alpha", self.alpha, 0.0, 1.0, False, True)
        _check_float(c, "init_std", self.init_std, 0.0, _INF, True, True)
        self._check_warm_started()


@dataclass(frozen=True)
class _MPPISettings(_Problem):
    """MPPI's own fields (between ``_Problem``'s and ``_WarmStarted``'s in ``MPPIConfig``)."""

    #: Exploration noise std in units of the action half-range (high − low) / 2, > 0.
    noise_sigma: float = 0.5
    #: Temperature of the softmax over returns, in reward units, > 0 (smaller = greedier).
    lambda_: float = 1.0


@dataclass(frozen=True)
class MPPIConfig(_WarmStarted, _MPPISettings):
    """MPPI with time-correlated noise. Not in GrBAL; defaults are this toolkit's choice."""

    noise_distribution: ClassVar[str] = "normal"

    name: Literal["mppi"] = "mppi"
    #: AR(1) correlation of the noise along the horizon (MPPI's default: correlated).
    beta: float = 0.5

    def noise_shape(self, act_dim: int) -> tuple[int, ...]:
        """One draw per plan: candidates x planning steps x action."""
        return (self.num_candidates, planning_steps(self), act_dim)

    def optimize(self, objective: Objective, noise: Tensor, lo: Tensor, hi: Tensor,
                 prior: Tensor) -> Tensor:
        """One MPPI update around ``prior``."""
        return mppi(objective, noise, prior, lo, hi, self.noise_sigma * (hi - lo) / 2,
                    self.lambda_, self.beta)

    def __post_init__(self) -> None:
        self._check_problem()
        c = type(self).__name__
        _check_float(c, "noise_sigma", self.noise_sigma, 0.0, _INF, True, True)
        _check_float(c, "lambda_", self.lambda_, 0.0, _INF, True, True)
        self._check_warm_started()


def _bounds(low: Tensor | Sequence[float], high: Tensor | Sequence[float]) -> tuple[Tensor, Tensor]:
    """Validate action bounds: 1-D, same shape, finite, low < high elementwise."""
    lo = torch.as_tensor(low, dtype=torch.float32).detach().clone()
    hi = torch.as_tensor(high, dtype=torch.float32).detach().clone()
    if lo.dim() != 1 or lo.numel() == 0:
        raise ValueError(
            f"low must be a non-empty 1-D [act_dim] tensor, got shape {tuple(lo.shape)}"
        )
    if hi.shape != lo.shape:
        raise ValueError(
            f"high has shape {tuple(hi.shape)}, must equal low shape {tuple(lo.shape)}"
        )
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise ValueError(f"low={lo.tolist()} and high={hi.tolist()} must be finite")
    if not (lo < hi).all():
        bad = torch.nonzero(lo >= hi).flatten().tolist()
        raise ValueError(
            f"low must be < high elementwise; violated at action indices {bad}: "
            f"low={lo.tolist()}, high={hi.tolist()}"
        )
    return lo, hi


def make_objective(config: PlannerConfig, predictor: Predictor, reward_fn: RewardFn,
                   obs: Tensor, **hooks: Any) -> TrajectoryObjective:
    """The objective ``config``'s planner maximises from ``obs``: the predicted return,
    discounted by ``config.discount``; ``hooks`` are :class:`TrajectoryObjective`'s
    (``terminal_value``, ``members``, ``aggregate``), off by default, except ``members``: an
    ensemble's predictor (``ensemble_size``) has every candidate scored under each member."""
    hooks.setdefault("members", getattr(predictor, "ensemble_size", 1))
    return TrajectoryObjective(predictor, reward_fn, obs, config.discount, **hooks)


def optimize(config: PlannerConfig, objective: Objective, noise: Tensor, lo: Tensor,
             hi: Tensor, prior: Tensor) -> Tensor:
    """One plan ``[H, act_dim]`` maximising ``objective`` (:func:`make_objective`) by
    ``config``'s pure optimiser (its ``optimize``: the one mapping from a config to its
    optimiser's arguments) from ``prior`` (the warm start; random shooting ignores it) and
    ``noise`` of ``config.noise_shape``; shared by the planners, the ONNX graphs and parity. The
    discount is the objective's."""
    return config.optimize(objective, noise, lo, hi, prior)


def warm_start_prior(config: PlannerConfig, prev_plan: Tensor | None, lo: Tensor,
                     hi: Tensor) -> Tensor:
    """Where a plan starts ``[H, act_dim]``: ``prev_plan`` shifted by one step (filled by the
    ``warm_start_fill`` rule) when ``config`` warm-starts and one is given, else the bounds'
    midpoint. The one rule of the planners, the ONNX graphs and parity."""
    mid = (lo + hi) / 2
    if config.warm_start and prev_plan is not None:
        return shift_plan(prev_plan.to(lo), None if config.warm_start_fill == "last" else mid)
    return mid.expand(config.horizon, mid.shape[0]).clone()


# --------------------------------------------------------------------------------------------
# Stateful planners
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Planner(Protocol):
    """An MPC planner: one ``plan()`` call per control step returns the action to execute."""

    #: Full ``[H, act_dim]`` plan of the latest ``plan()`` call (None after ``reset()``).
    last_plan: Tensor | None

    def reset(self) -> None:
        """Forget any warm-start state (call at episode start)."""
        ...

    def plan(
        self, obs: Tensor, predictor: Predictor, reward_fn: RewardFn, generator: torch.Generator
    ) -> Tensor:
        """obs ``[obs_dim]`` -> first action ``[act_dim]``; noise drawn from ``generator``."""
        ...


class _SamplingPlanner:
    """Shared plumbing: bounds, warm-start memory, noise drawing, the objective."""

    config: PlannerConfig

    def __init__(self, low: Tensor | Sequence[float], high: Tensor | Sequence[float]) -> None:
        self.low, self.high = _bounds(low, high)
        self.act_dim: int = self.low.shape[0]
        self.last_plan: Tensor | None = None
        #: The mean/prior sequence the latest ``plan()`` call started from.
        self.last_prior: Tensor | None = None

    def reset(self) -> None:
        self.last_plan = None
        self.last_prior = None

    def _setup(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        if obs.dim() != 1:
            raise ValueError(f"obs must be a single observation [obs_dim], got {tuple(obs.shape)}")
        if not obs.is_floating_point():
            obs = obs.float()
        return self.low.to(obs), self.high.to(obs)

    @staticmethod
    def _draw(kind: str, shape: tuple[int, ...], obs: Tensor, gen: torch.Generator) -> Tensor:
        # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move.
        device = gen.device if gen is not None else obs.device
        fn = torch.rand if kind == "uniform" else torch.randn
        return fn(shape, generator=gen, device=device, dtype=obs.dtype).to(obs.device)

    @torch.no_grad()
    def plan(
        self, obs: Tensor, predictor: Predictor, reward_fn: RewardFn, generator: torch.Generator
    ) -> Tensor:
        """obs ``[obs_dim]`` -> first action ``[act_dim]`` of the plan maximising
        ``make_objective(self.config, predictor, reward_fn, obs)``; noise drawn from
        ``generator``."""
        lo, hi = self._setup(obs)
        objective = make_objective(self.config, predictor, reward_fn, obs.to(lo))
        return self._plan(objective, lo, hi, generator)

    @torch.no_grad()
    def plan_objective(self, objective: TrajectoryObjective, generator: torch.Generator) -> Tensor:
        """As :meth:`plan`, maximising ``objective``: from its ``obs`` ``[obs_dim]``, with its
        discount (not ``config.discount``) and its hooks (terminal value, members)."""
        lo, hi = self._setup(objective.obs)
        return self._plan(objective, lo, hi, generator)

    def _plan(self, objective: TrajectoryObjective, lo: Tensor, hi: Tensor,
              generator: torch.Generator) -> Tensor:
        raise NotImplementedError


class RandomShooting(_SamplingPlanner):
    """GrBAL's planner: best of N uniform sequences, first action executed, no warm start."""

    def __init__(
        self,
        config: RandomShootingConfig | None,
        low: Tensor | Sequence[float],
        high: Tensor | Sequence[float],
    ) -> None:
        super().__init__(low, high)
        self.config = config if config is not None else RandomShootingConfig()
        #: Predicted returns of all candidates in the latest call.
        self.last_returns: Tensor | None = None

    def _plan(self, objective: TrajectoryObjective, lo: Tensor, hi: Tensor,
              generator: torch.Generator) -> Tensor:
        cfg = self.config
        noise = self._draw(cfg.noise_distribution, cfg.noise_shape(self.act_dim), objective.obs,
                           generator)
        best, returns = random_shooting(objective, noise, lo, hi)
        self.last_plan, self.last_returns = best, returns
        return best[0].clone()


class _WarmStartedPlanner(_SamplingPlanner):
    """CEM and MPPI: each plan starts from ``warm_start_prior`` of the previous one."""

    def _plan(self, objective: TrajectoryObjective, lo: Tensor, hi: Tensor,
              generator: torch.Generator) -> Tensor:
        cfg = self.config
        prev = self.last_plan
        if prev is not None and prev.shape[0] != cfg.horizon:
            prev = None  # a plan of another horizon cannot seed this one
        prior = warm_start_prior(cfg, prev, lo, hi)
        noise = self._draw(cfg.noise_distribution, cfg.noise_shape(self.act_dim), objective.obs,
                           generator)
        plan = optimize(cfg, objective, noise, lo, hi, prior)
        self.last_prior, self.last_plan = prior, plan
        return plan[0].clone()


class CEM(_WarmStartedPlanner):
    """Cross-entropy method; returns the first step of the final mean sequence."""

    def __init__(
        self,
        config: CEMConfig | None,
        low: Tensor | Sequence[float],
        high: Tensor | Sequence[float],
    ) -> None:
        super().__init__(low, high)
        self.config = config if config is not None else CEMConfig()


class MPPI(_WarmStartedPlanner):
    """MPPI with AR(1)-smoothed noise, warm-started from the shifted previous plan."""

    def __init__(
        self,
        config: MPPIConfig | None,
        low: Tensor | Sequence[float],
        high: Tensor | Sequence[float],
    ) -> None:
        super().__init__(low, high)
        self.config = config if config is not None else MPPIConfig()


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

#: The one registry of planners: name -> (config class, planner class). A new planner is its
#: config (with ``noise_shape`` and ``optimize``) and planner class plus one line here; every
#: list of planner names, the config files' union and the exporter read it.
_REGISTRY: dict[str, tuple[type, type]] = {
    "random_shooting": (RandomShootingConfig, RandomShooting),
    "cem": (CEMConfig, CEM),
    "mppi": (MPPIConfig, MPPI),
}
#: Names accepted by ``planner_config`` (the ``name`` of each planner config).
PLANNER_NAMES: tuple[str, ...] = tuple(_REGISTRY)
#: The planner config types, in ``PLANNER_NAMES`` order.
PLANNER_CONFIGS: tuple[type, ...] = tuple(c for c, _ in _REGISTRY.values())
#: Any planner's config: its ``name`` field says which planner (the config files' discriminator).
PlannerConfig = typing.Union[PLANNER_CONFIGS]  # noqa: UP007 (built from the registry)
#: The settings every planner has: the planning problem, kept by ``switch_planner``.
PROBLEM_FIELDS: tuple[str, ...] = ("num_candidates", "horizon", "discount")


def planner_config_class(name: str) -> type:
    """The config dataclass of planner ``name``; an unknown name raises ``ValueError``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown planner {name!r}; allowed: {', '.join(PLANNER_NAMES)}")
    return _REGISTRY[name][0]


def planner_settings(name: str) -> tuple[str, ...]:
    """The fields of planner ``name``'s config other than ``name`` itself."""
    return tuple(f.name for f in dataclasses.fields(planner_config_class(name))
                 if f.name != "name")


def planner_config(name: str, **fields: Any) -> PlannerConfig:
    """Planner ``name``'s config: paper defaults with ``fields`` replaced.

    ``planner_config("cem", num_iterations=8)``. Unknown names or fields raise ``ValueError``
    listing what is allowed.
    """
    config_cls = planner_config_class(name)
    allowed = planner_settings(name)
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown {config_cls.__name__} field(s) {unknown} for planner {name!r}; "
            f"allowed: {', '.join(allowed)}"
        )
    return config_cls(**fields)


def switch_planner(config: PlannerConfig, name: str) -> PlannerConfig:
    """Planner ``name`` for the problem of ``config`` (its ``PROBLEM_FIELDS``), with the new
    planner's own settings at their defaults; ``config`` itself when it already is ``name``."""
    if config.name == name:
        return config
    return planner_config(name, **{k: getattr(config, k) for k in PROBLEM_FIELDS})


def with_settings(config: PlannerConfig, **fields: Any) -> PlannerConfig:
    """``config`` with ``fields`` replaced (``dataclasses.replace``, with an unknown field
    refused by name and the allowed ones listed)."""
    own = {k: getattr(config, k) for k in planner_settings(config.name)}
    return planner_config(config.name, **{**own, **fields})


def make_planner(
    config: PlannerConfig,
    action_low: Tensor | Sequence[float],
    action_high: Tensor | Sequence[float],
) -> Planner:
    """The planner ``config`` configures, acting within ``[action_low, action_high]``.

    ``make_planner(planner_config("cem", num_iterations=8), low, high)``.
    """
    entry = _REGISTRY.get(getattr(config, "name", None))  # type: ignore[arg-type]
    if entry is None or not isinstance(config, entry[0]):
        raise ValueError(f"config={config!r} is not a planner config: allowed "
                         f"{', '.join(c.__name__ for c, _ in _REGISTRY.values())}")
    return entry[1](config, action_low, action_high)
