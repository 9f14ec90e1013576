"""Pure sampling-based trajectory optimisers: random shooting, CEM and MPPI.

Each maximises an *objective*, a callable ``actions [N, H, act_dim] -> returns [N]``
(:mod:`adaptive_control.planning.objective`; mbrl-lib's ``optimize(obj_fun, x0)``): what is
predicted and how it is scored (discount, terminal value, ensemble members) is the objective's,
the sampling and the update rule the optimiser's.

They take every random number as a tensor argument, contain no Python randomness and no
Python control flow on tensor *values* (loops run over static sizes such as the horizon or the
number of CEM iterations), so they can be traced (``torch.export`` /
``torch.onnx.export(dynamo=True)``) with the noise as a graph input. They do not switch off
autograd themselves, so a caller may also differentiate through them. Warm-start state lives
apart, in :mod:`adaptive_control.planning.planners`.

Every batch of N candidates is scored with one objective call (for a
:class:`~adaptive_control.planning.objective.TrajectoryObjective`, one predictor call per horizon
step for all N candidates at once); there are no per-candidate Python loops.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from adaptive_control.planning.objective import Objective

Bound = Tensor | float

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


def random_shooting(
    objective: Objective,
    noise: Tensor,
    low: Bound,
    high: Bound,
) -> tuple[Tensor, Tensor]:
    """Random shooting: uniform candidates in ``[low, high]``, keep the best sequence.

    ``noise`` is ``[N, H, act_dim]`` uniform in ``[0, 1)``; candidate = low + noise·(high − low),
    scored by ``objective``. Returns (best action sequence ``[H, act_dim]``, the ``objective``
    of all candidates ``[N]``).
    """
    lo, hi = _as_bound(low, noise), _as_bound(high, noise)
    _check_actions("noise", noise, 3, lo, hi)
    actions = lo + noise * (hi - lo)
    returns = objective(actions)
    best = torch.argmax(_sanitize(returns)).reshape(1)
    # index_select with a tensor index (no .item()): stays in the traced graph.
    return actions.index_select(0, best).squeeze(0), returns


def hold_steps(noise: Tensor, horizon: int) -> Tensor:
    """Noise drawn per planning step ``[..., P, act_dim]`` stretched over ``horizon`` control
    steps: each draw held for ``ceil(horizon / P)`` steps, the tail cut at ``horizon``.

    A planning step ``k`` times coarser than the control step (iCEM, PDDM): the same lookahead
    searched over ``k`` times fewer free variables. ``P == horizon`` returns ``noise``.
    """
    p = noise.shape[-2]
    if p == horizon:
        return noise
    if not 0 < p < horizon:
        raise ValueError(f"noise has {p} planning steps for a horizon of {horizon}: allowed "
                         f"1 to {horizon}")
    return noise.repeat_interleave(-(-horizon // p), dim=-2)[..., :horizon, :]


def num_elites(num_candidates: int, elite_frac: float) -> int:
    """Number of CEM elites: floor(N · frac), at least 1 (as in GrBAL's code)."""
    # The epsilon guards against float error, e.g. 0.29 * 100 == 28.999999999999996.
    return max(1, math.floor(num_candidates * elite_frac + 1e-9))


def cem(
    objective: Objective,
    noise: Tensor,
    low: Bound,
    high: Bound,
    init_mean: Tensor,
    init_std: Tensor | float,
    elite_frac: float = 0.1,
    alpha: float = 0.1,
    beta: float = 0.0,
) -> Tensor:
    """Cross-entropy method over action sequences; returns the final mean ``[H, act_dim]``.

    ``noise`` is ``[I, N, P, act_dim]`` standard normal: I iterations of N candidates
    ``clip(mean + std · noise[i], low, high)``, the noise time-correlated by ``beta``
    (:func:`smooth_noise`; iCEM's coloured noise, 0 = white) and held over the ``H`` steps of
    ``init_mean`` (:func:`hold_steps`, P ≤ H planning steps). The top
    ``max(1, floor(N · elite_frac))`` candidates by ``objective`` refit mean and std, smoothed as
    ``new = alpha · old + (1 − alpha) · elite_stat`` (alpha weighs the *old* value, as in
    GrBAL's code). ``init_std`` is absolute (same units as the actions), scalar or
    broadcastable to ``[H, act_dim]``. The mean stays inside the bounds: the initial mean is
    clipped and every update is a convex combination of in-bound values.
    """
    if not 0.0 < elite_frac <= 1.0:
        raise ValueError(f"elite_frac={elite_frac!r} must be in (0, 1]")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha={alpha!r} must be in [0, 1)")
    lo, hi = _as_bound(low, noise), _as_bound(high, noise)
    _check_actions("noise", noise, 4, lo, hi)
    iters, n = noise.shape[0], noise.shape[1]
    if init_mean.dim() != 2 or init_mean.shape[1] != noise.shape[3]:
        raise ValueError(f"init_mean must have shape [H, {noise.shape[3]}], got "
                         f"{tuple(init_mean.shape)}")
    if beta:
        noise = smooth_noise(noise, beta)
    noise = hold_steps(noise, init_mean.shape[0])
    k = num_elites(n, elite_frac)
    mean = _clamp(init_mean.to(noise), lo, hi)
    std = torch.broadcast_to(_as_bound(init_std, noise), mean.shape)
    for i in range(iters):  # static iteration count: unrolled when traced
        samples = _clamp(mean + std * noise[i], lo, hi)
        returns = objective(samples)
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
    objective: Objective,
    noise: Tensor,
    prev_plan: Tensor,
    low: Bound,
    high: Bound,
    noise_sigma: Tensor | float,
    lambda_: float = 1.0,
    beta: float = 0.5,
) -> Tensor:
    """One MPPI update around ``prev_plan``; returns the new plan ``[H, act_dim]``.

    ``noise`` is ``[N, P, act_dim]`` standard normal, P ≤ H planning steps held over the
    ``H`` steps of ``prev_plan`` (:func:`hold_steps`). Candidates are
    ``clip(prev_plan + noise_sigma · hold_steps(smooth_noise(noise, beta)), low, high)``
    (``noise_sigma`` absolute, scalar or ``[act_dim]``); the plan is their average weighted by
    ``softmax(objective(candidates) / lambda_)`` (information-theoretic MPPI weights without
    the control-cost term, as in PDDM-style MBRL). Weighting the *clipped* candidates makes the
    plan a convex combination of in-bound sequences, so it respects the bounds (a final clamp
    absorbs float rounding). With all-zero noise the result is ``clip(prev_plan)``.
    """
    if not lambda_ > 0.0:
        raise ValueError(f"lambda_={lambda_!r} must be > 0")
    lo, hi = _as_bound(low, noise), _as_bound(high, noise)
    _check_actions("noise", noise, 3, lo, hi)
    if prev_plan.dim() != 2 or prev_plan.shape[1] != noise.shape[2]:
        raise ValueError(
            f"prev_plan must have shape [H, {noise.shape[2]}], got {tuple(prev_plan.shape)}"
        )
    eps = hold_steps(smooth_noise(noise, beta), prev_plan.shape[0]) * _as_bound(noise_sigma,
                                                                                  noise)
    candidates = _clamp(prev_plan.to(noise).unsqueeze(0) + eps, lo, hi)
    returns = objective(candidates)
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
