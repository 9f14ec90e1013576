"""Batched sampling-based MPC planners: random shooting, CEM and MPPI.

Two layers:

* Pure core functions (``rollout_returns``, ``random_shooting``, ``cem``, ``mppi``,
  ``smooth_noise``, ``shift_plan``). They take every random number as a tensor argument, contain
  no Python randomness and no Python control flow on tensor *values* (loops run over static
  sizes such as the horizon or the number of CEM iterations), so they can be traced
  (``torch.export`` / ``torch.onnx.export(dynamo=True)``) with the noise as a graph input.
  They do not switch off autograd themselves, so a caller may also differentiate through them.
* Thin stateful classes (``RandomShooting``, ``CEM``, ``MPPI``) that own a validated config,
  draw noise from an explicitly passed ``torch.Generator``, warm-start from the previous plan
  and run under ``torch.no_grad``.

Defaults follow GrBAL (Nagabandi, Clavera et al., ICLR 2019): random shooting with 500 uniform
candidates over a horizon of 10, the first action executed, no warm start; the CEM variant runs
5 iterations with 10 % elites and smoothing 0.1. MPPI is not in that paper; its defaults are
ours and documented on ``MPPIConfig``.

Every candidate is evaluated with one predictor call per horizon step for all N candidates at
once; there are no per-candidate Python loops.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

from adaptive_control.types import Predictor, RewardFn

__all__ = [
    "CEM",
    "CEMConfig",
    "MPPI",
    "MPPIConfig",
    "PLANNER_NAMES",
    "Planner",
    "RandomShooting",
    "RandomShootingConfig",
    "cem",
    "make_planner",
    "mppi",
    "num_elites",
    "random_shooting",
    "rollout_returns",
    "shift_plan",
    "smooth_noise",
    "smoothing_matrix",
]

Bound = Tensor | float
WarmStartFill = Literal["last", "mid"]


# --------------------------------------------------------------------------------------------
# Pure core functions
# --------------------------------------------------------------------------------------------


def _as_bound(x: Bound, like: Tensor) -> Tensor:
    """A bound as a tensor on ``like``'s device and dtype (floats broadcast over actions)."""
    return torch.as_tensor(x, dtype=like.dtype, device=like.device)


def _clamp(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    # maximum/minimum rather than clamp(tensor bounds): maps to ONNX Max/Min without surprises.
    return torch.minimum(torch.maximum(x, low), high)


def _sanitize(returns: Tensor) -> Tensor:
    """Make NaN/inf returns finite so a diverging model's candidate can never win.

    NaN and -inf become the most negative finite value, +inf the largest. Done with tensor ops
    (no Python branching) so it stays traceable.
    """
    big = torch.finfo(returns.dtype).max
    return torch.nan_to_num(returns, nan=-big, posinf=big, neginf=-big)


def _check_actions(name: str, actions: Tensor, ndim: int, low: Tensor, high: Tensor) -> None:
    # Shape checks only look at static sizes, so they are harmless under tracing.
    if actions.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(actions.shape)}")
    da = actions.shape[-1]
    for bname, b in (("low", low), ("high", high)):
        if b.dim() > 1 or (b.dim() == 1 and b.shape[0] not in (1, da)):
            raise ValueError(
                f"{bname} must be a scalar or have shape [{da}] (action dim of {name}), "
                f"got shape {tuple(b.shape)}"
            )


def rollout_returns(
    predictor: Predictor,
    reward_fn: RewardFn,
    obs: Tensor,
    actions: Tensor,
    discount: float = 1.0,
) -> Tensor:
    """Discounted sum of rewards along predicted trajectories.

    ``obs`` is ``[obs_dim]`` (shared start state, broadcast over candidates) or ``[N, obs_dim]``;
    ``actions`` is ``[N, H, act_dim]``. Returns ``[N]``. The predictor's state (``None`` for
    feed-forward models) is initialised with ``predictor.initial_state(N)`` and threaded through
    the horizon; the predictor is called once per step for all N candidates.
    """
    if actions.dim() != 3:
        raise ValueError(f"actions must be [N, H, act_dim], got shape {tuple(actions.shape)}")
    n, horizon = actions.shape[0], actions.shape[1]
    if obs.dim() == 1:
        # A view, not a copy: every candidate starts from the same observation.
        cur = obs.unsqueeze(0).expand(n, obs.shape[0])
    elif obs.dim() == 2 and obs.shape[0] == n:
        cur = obs
    else:
        raise ValueError(
            f"obs must be [obs_dim] or [{n}, obs_dim], got shape {tuple(obs.shape)}"
        )
    state: Any = predictor.initial_state(n)
    returns = actions.new_zeros(n)
    for t in range(horizon):  # static horizon: unrolled when traced
        act = actions[:, t]
        nxt, state = predictor(cur, act, state)
        returns = returns + (discount**t) * reward_fn(cur, act, nxt)
        cur = nxt
    return returns


def random_shooting(
    predictor: Predictor,
    reward_fn: RewardFn,
    obs: Tensor,
    noise: Tensor,
    low: Bound,
    high: Bound,
    discount: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Random shooting: uniform candidates in ``[low, high]``, keep the best sequence.

    ``noise`` is ``[N, H, act_dim]`` uniform in ``[0, 1)``; candidate = low + noise·(high − low).
    Returns (best action sequence ``[H, act_dim]``, returns of all candidates ``[N]``).
    """
    lo, hi = _as_bound(low, noise), _as_bound(high, noise)
    _check_actions("noise", noise, 3, lo, hi)
    actions = lo + noise * (hi - lo)
    returns = rollout_returns(predictor, reward_fn, obs, actions, discount)
    best = torch.argmax(_sanitize(returns)).reshape(1)
    # index_select with a tensor index (no .item()): stays in the traced graph.
    return actions.index_select(0, best).squeeze(0), returns


def num_elites(num_candidates: int, elite_frac: float) -> int:
    """Number of CEM elites: floor(N · frac), at least 1 (as in GrBAL's code)."""
    # The epsilon guards against float error, e.g. 0.29 * 100 == 28.999999999999996.
    return max(1, math.floor(num_candidates * elite_frac + 1e-9))


def cem(
    predictor: Predictor,
    reward_fn: RewardFn,
    obs: Tensor,
    noise: Tensor,
    low: Bound,
    high: Bound,
    init_mean: Tensor,
    init_std: Tensor | float,
    elite_frac: float = 0.1,
    alpha: float = 0.1,
    discount: float = 1.0,
) -> Tensor:
    """Cross-entropy method over action sequences; returns the final mean ``[H, act_dim]``.

    ``noise`` is ``[I, N, H, act_dim]`` standard normal: I iterations of N candidates
    ``clip(mean + std · noise[i], low, high)``. The top ``max(1, floor(N · elite_frac))``
    candidates refit mean and std, smoothed as ``new = alpha · old + (1 − alpha) · elite_stat``
    (alpha weighs the *old* value, as in GrBAL's code). ``init_std`` is absolute (same units as
    the actions), scalar or broadcastable to ``[H, act_dim]``. The mean stays inside the bounds:
    the initial mean is clipped and every update is a convex combination of in-bound values.
    """
    if not 0.0 < elite_frac <= 1.0:
        raise ValueError(f"elite_frac={elite_frac!r} must be in (0, 1]")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} must be in [0, 1)")
    lo, hi = _as_bound(low, noise), _as_bound(high, noise)
    _check_actions("noise", noise, 4, lo, hi)
    iters, n = noise.shape[0], noise.shape[1]
    if tuple(init_mean.shape) != tuple(noise.shape[2:]):
        raise ValueError(
            f"init_mean must have shape {tuple(noise.shape[2:])}, got {tuple(init_mean.shape)}"
        )
    k = num_elites(n, elite_frac)
    mean = _clamp(init_mean.to(noise), lo, hi)
    std = torch.broadcast_to(_as_bound(init_std, noise), mean.shape)
    for i in range(iters):  # static iteration count: unrolled when traced
        samples = _clamp(mean + std * noise[i], lo, hi)
        returns = rollout_returns(predictor, reward_fn, obs, samples, discount)
        elite_idx = torch.topk(_sanitize(returns), k).indices
        elites = samples.index_select(0, elite_idx)
        mean = alpha * mean + (1.0 - alpha) * elites.mean(0)
        # Population std (unbiased=False): defined for a single elite.
        std = alpha * std + (1.0 - alpha) * elites.std(0, unbiased=False)
    # The mean is a convex combination of in-bound values; the clamp only removes float
    # rounding (e.g. 0.2000001 from averaging 0.2s).
    return _clamp(mean, lo, hi)


def smoothing_matrix(
    horizon: int, beta: float, dtype: torch.dtype = torch.float32, device: Any = None
) -> Tensor:
    """Lower-triangular ``[H, H]`` matrix L with ``smooth_noise(n) = L @ n`` along time.

    It implements the AR(1) filter e_0 = n_0, e_t = beta · e_{t−1} + sqrt(1 − beta²) · n_t.
    """
    t = torch.arange(horizon, device=device)
    lag = (t.unsqueeze(1) - t.unsqueeze(0)).to(dtype)
    # beta ** lag on and below the diagonal, 0 above (0 ** 0 == 1 keeps beta = 0 exact).
    decay = torch.where(lag >= 0, torch.full_like(lag, beta).pow(lag.clamp(min=0)), 0.0)
    # Column 0 is the first draw (scale 1); later innovations are scaled by sqrt(1 - beta^2).
    innov = math.sqrt(max(0.0, 1.0 - beta * beta))
    scale = torch.cat([torch.ones(1, dtype=dtype, device=device),
                       torch.full((horizon - 1,), innov, dtype=dtype, device=device)])
    return decay * scale.unsqueeze(0)


def smooth_noise(noise: Tensor, beta: float) -> Tensor:
    """Time-correlate white noise ``[..., H, act_dim]`` along the horizon (axis −2).

    AR(1) filter e_0 = n_0, e_t = beta · e_{t−1} + sqrt(1 − beta²) · n_t. For standard-normal
    input every e_t is again standard normal (the sqrt keeps the marginal variance at 1, so
    ``noise_sigma`` keeps its meaning), with correlation beta^|s−t| between steps s and t.
    beta = 0 is white noise; beta = 1 repeats the first draw over the whole horizon. Computed as
    one matrix product (no sequential loop), which traces to a single MatMul.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta={beta!r} must be in [0, 1]")
    mat = smoothing_matrix(noise.shape[-2], beta, noise.dtype, noise.device)
    return torch.matmul(mat, noise)


def mppi(
    predictor: Predictor,
    reward_fn: RewardFn,
    obs: Tensor,
    noise: Tensor,
    prev_plan: Tensor,
    low: Bound,
    high: Bound,
    noise_sigma: Tensor | float,
    lambda_: float = 1.0,
    beta: float = 0.5,
    discount: float = 1.0,
) -> Tensor:
    """One MPPI update around ``prev_plan``; returns the new plan ``[H, act_dim]``.

    ``noise`` is ``[N, H, act_dim]`` standard normal. Candidates are
    ``clip(prev_plan + noise_sigma · smooth_noise(noise, beta), low, high)`` (``noise_sigma``
    absolute, scalar or ``[act_dim]``); the plan is their average weighted by
    ``softmax(returns / lambda_)`` (information-theoretic MPPI weights without the control-cost
    term, as in PDDM-style MBRL). Weighting the *clipped* candidates makes the plan a convex
    combination of in-bound sequences, so it respects the bounds (a final clamp absorbs float
    rounding). With all-zero noise the result
    is ``clip(prev_plan)``.
    """
    if not lambda_ > 0.0:
        raise ValueError(f"lambda_={lambda_!r} must be > 0")
    lo, hi = _as_bound(low, noise), _as_bound(high, noise)
    _check_actions("noise", noise, 3, lo, hi)
    if tuple(prev_plan.shape) != tuple(noise.shape[1:]):
        raise ValueError(
            f"prev_plan must have shape {tuple(noise.shape[1:])}, got {tuple(prev_plan.shape)}"
        )
    eps = smooth_noise(noise, beta) * _as_bound(noise_sigma, noise)
    candidates = _clamp(prev_plan.to(noise).unsqueeze(0) + eps, lo, hi)
    returns = rollout_returns(predictor, reward_fn, obs, candidates, discount)
    weights = torch.softmax(_sanitize(returns) / lambda_, dim=0)
    # Convex combination of in-bound candidates; the clamp only removes float rounding.
    return _clamp(torch.einsum("n,nhd->hd", weights, candidates), lo, hi)


def shift_plan(plan: Tensor, fill: Tensor | float | None = None) -> Tensor:
    """Warm start: drop the executed first step and append ``fill`` at the end.

    ``fill`` is ``None`` (repeat the last step), a scalar, or an ``[act_dim]`` tensor.
    """
    if plan.dim() != 2:
        raise ValueError(f"plan must be [H, act_dim], got shape {tuple(plan.shape)}")
    tail = plan[-1:] if fill is None else torch.broadcast_to(_as_bound(fill, plan), plan[-1:].shape)
    return torch.cat([plan[1:], tail], dim=0)


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


_INF = math.inf


@dataclass(frozen=True)
class RandomShootingConfig:
    """Random shooting (GrBAL's planner). Defaults from the paper."""

    #: Candidate action sequences sampled per plan() call (paper: 500).
    num_candidates: int = 500
    #: Planning horizon in steps (paper: 10).
    horizon: int = 10
    #: Per-step reward discount in (0, 1] (paper: 1, undiscounted).
    discount: float = 1.0

    def __post_init__(self) -> None:
        c = type(self).__name__
        _check_int(c, "num_candidates", self.num_candidates, 1)
        _check_int(c, "horizon", self.horizon, 1)
        _check_float(c, "discount", self.discount, 0.0, 1.0, True, False)


@dataclass(frozen=True)
class CEMConfig:
    """Cross-entropy method (GrBAL's CEM variant). Defaults from the paper and its code."""

    #: Candidate action sequences per iteration (paper: 500, as for random shooting).
    num_candidates: int = 500
    #: Planning horizon in steps (paper: 10).
    horizon: int = 10
    #: CEM iterations per plan() call (paper: 5).
    num_iterations: int = 5
    #: Fraction of candidates kept as elites, in (0, 1] (paper: 0.1).
    elite_frac: float = 0.1
    #: Smoothing: weight of the old mean/std in each update, in [0, 1) (paper: 0.1).
    alpha: float = 0.1
    #: Initial std in units of the action half-range (high − low) / 2 (code: 1 on [−1, 1]).
    init_std: float = 1.0
    #: Start from the previous plan shifted by one step instead of the bounds' midpoint.
    warm_start: bool = False
    #: What to append when shifting a warm-start plan: repeat the "last" step or the "mid"point.
    warm_start_fill: WarmStartFill = "last"
    #: Per-step reward discount in (0, 1] (paper: 1, undiscounted).
    discount: float = 1.0

    def __post_init__(self) -> None:
        c = type(self).__name__
        _check_int(c, "num_candidates", self.num_candidates, 1)
        _check_int(c, "horizon", self.horizon, 1)
        _check_int(c, "num_iterations", self.num_iterations, 1)
        _check_float(c, "elite_frac", self.elite_frac, 0.0, 1.0, True, False)
        _check_float(c, "alpha", self.alpha, 0.0, 1.0, False, True)
        _check_float(c, "init_std", self.init_std, 0.0, _INF, True, True)
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"{c}.warm_start={self.warm_start!r} must be a bool")
        _check_fill(c, self.warm_start_fill)
        _check_float(c, "discount", self.discount, 0.0, 1.0, True, False)


@dataclass(frozen=True)
class MPPIConfig:
    """MPPI with time-correlated noise. Not in GrBAL; defaults are this toolkit's choice."""

    #: Candidate action sequences per plan() call (500, matching the paper's budget).
    num_candidates: int = 500
    #: Planning horizon in steps (10, as the paper's planner).
    horizon: int = 10
    #: Exploration noise std in units of the action half-range (high − low) / 2, > 0.
    noise_sigma: float = 0.5
    #: Temperature of the softmax over returns, in reward units, > 0 (smaller = greedier).
    lambda_: float = 1.0
    #: AR(1) correlation of the noise along the horizon, in [0, 1] (0 = white noise).
    beta: float = 0.5
    #: Start from the previous plan shifted by one step instead of the bounds' midpoint.
    warm_start: bool = True
    #: What to append when shifting a warm-start plan: repeat the "last" step or the "mid"point.
    warm_start_fill: WarmStartFill = "last"
    #: Per-step reward discount in (0, 1].
    discount: float = 1.0

    def __post_init__(self) -> None:
        c = type(self).__name__
        _check_int(c, "num_candidates", self.num_candidates, 1)
        _check_int(c, "horizon", self.horizon, 1)
        _check_float(c, "noise_sigma", self.noise_sigma, 0.0, _INF, True, True)
        _check_float(c, "lambda_", self.lambda_, 0.0, _INF, True, True)
        _check_float(c, "beta", self.beta, 0.0, 1.0, False, False)
        if not isinstance(self.warm_start, bool):
            raise ValueError(f"{c}.warm_start={self.warm_start!r} must be a bool")
        _check_fill(c, self.warm_start_fill)
        _check_float(c, "discount", self.discount, 0.0, 1.0, True, False)


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
    """Shared plumbing: bounds, warm-start memory, noise drawing."""

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

    def _prior(
        self, warm: bool, fill_mode: str, horizon: int, lo: Tensor, hi: Tensor
    ) -> Tensor:
        mid = (lo + hi) / 2
        if warm and self.last_plan is not None and self.last_plan.shape[0] == horizon:
            fill = None if fill_mode == "last" else mid
            return shift_plan(self.last_plan.to(lo), fill)
        return mid.expand(horizon, self.act_dim).clone()


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

    @torch.no_grad()
    def plan(
        self, obs: Tensor, predictor: Predictor, reward_fn: RewardFn, generator: torch.Generator
    ) -> Tensor:
        lo, hi = self._setup(obs)
        cfg = self.config
        noise = self._draw("uniform", (cfg.num_candidates, cfg.horizon, self.act_dim), obs,
                           generator)
        best, returns = random_shooting(predictor, reward_fn, obs.to(lo), noise, lo, hi,
                                        cfg.discount)
        self.last_plan, self.last_returns = best, returns
        return best[0].clone()


class CEM(_SamplingPlanner):
    """Cross-entropy method; returns the first step of the final mean sequence."""

    def __init__(
        self,
        config: CEMConfig | None,
        low: Tensor | Sequence[float],
        high: Tensor | Sequence[float],
    ) -> None:
        super().__init__(low, high)
        self.config = config if config is not None else CEMConfig()

    @torch.no_grad()
    def plan(
        self, obs: Tensor, predictor: Predictor, reward_fn: RewardFn, generator: torch.Generator
    ) -> Tensor:
        lo, hi = self._setup(obs)
        cfg = self.config
        prior = self._prior(cfg.warm_start, cfg.warm_start_fill, cfg.horizon, lo, hi)
        noise = self._draw(
            "normal", (cfg.num_iterations, cfg.num_candidates, cfg.horizon, self.act_dim), obs,
            generator,
        )
        init_std = cfg.init_std * (hi - lo) / 2
        mean = cem(predictor, reward_fn, obs.to(lo), noise, lo, hi, prior, init_std,
                   cfg.elite_frac, cfg.alpha, cfg.discount)
        self.last_prior, self.last_plan = prior, mean
        return mean[0].clone()


class MPPI(_SamplingPlanner):
    """MPPI with AR(1)-smoothed noise, warm-started from the shifted previous plan."""

    def __init__(
        self,
        config: MPPIConfig | None,
        low: Tensor | Sequence[float],
        high: Tensor | Sequence[float],
    ) -> None:
        super().__init__(low, high)
        self.config = config if config is not None else MPPIConfig()

    @torch.no_grad()
    def plan(
        self, obs: Tensor, predictor: Predictor, reward_fn: RewardFn, generator: torch.Generator
    ) -> Tensor:
        lo, hi = self._setup(obs)
        cfg = self.config
        prior = self._prior(cfg.warm_start, cfg.warm_start_fill, cfg.horizon, lo, hi)
        noise = self._draw("normal", (cfg.num_candidates, cfg.horizon, self.act_dim), obs,
                           generator)
        sigma = cfg.noise_sigma * (hi - lo) / 2
        new_plan = mppi(predictor, reward_fn, obs.to(lo), noise, prior, lo, hi, sigma,
                        cfg.lambda_, cfg.beta, cfg.discount)
        self.last_prior, self.last_plan = prior, new_plan
        return new_plan[0].clone()


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

_REGISTRY: dict[str, tuple[type, type]] = {
    "random_shooting": (RandomShootingConfig, RandomShooting),
    "cem": (CEMConfig, CEM),
    "mppi": (MPPIConfig, MPPI),
}
#: Names accepted by ``make_planner``.
PLANNER_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def make_planner(
    name: str,
    action_low: Tensor | Sequence[float],
    action_high: Tensor | Sequence[float],
    **overrides: Any,
) -> Planner:
    """Build a planner by name with paper defaults, overriding config fields by keyword.

    ``make_planner("cem", low, high, num_iterations=8)``. Unknown names or fields raise
    ``ValueError`` listing what is allowed.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown planner {name!r}; allowed: {', '.join(PLANNER_NAMES)}")
    config_cls, planner_cls = _REGISTRY[name]
    fields = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {config_cls.__name__} field(s) {unknown} for planner {name!r}; "
            f"allowed: {', '.join(fields)}"
        )
    return planner_cls(config_cls(**overrides), action_low, action_high)
