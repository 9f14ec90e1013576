"""What the trajectory optimisers maximise: a score per candidate action sequence.

An objective is any callable ``actions [N, H, act_dim] -> returns [N]``; the optimisers
(:mod:`adaptive_control.planning.optimizers`) only call it, as mbrl-lib's
``optimize(obj_fun, x0)`` and TorchRL's ``MPPIPlanner(env, advantage_module)`` do. The one this
package builds, :class:`TrajectoryObjective`, rolls the candidates through a predictor from a
start observation and sums the discounted rewards, with two optional hooks:

* ``terminal_value``: a value of the last predicted state, added discounted by
  ``discount ** H`` (the tail of the return beyond the horizon);
* ``members`` and ``aggregate``: every candidate evaluated ``members`` times (ensemble members
  or particles, told apart by their row; see :class:`TrajectoryObjective`), the ``[M, N]``
  returns combined into one score per candidate: their mean (:func:`member_mean`), or the
  mean less ``k`` times their spread (:func:`mean_minus_std`, a disagreement penalty).

With neither hook (the default) the score is :func:`rollout_returns`, the same arithmetic in the
same order. Like the optimisers it has no Python control flow on tensor values, so it traces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from adaptive_control.types import Predictor, RewardFn

#: Scores candidate action sequences: ``actions [N, H, act_dim] -> returns [N]``.
Objective = Callable[[Tensor], Tensor]


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
    returns, _ = _rollout(predictor, reward_fn, obs, actions, discount)
    return returns


def _rollout(predictor: Predictor, reward_fn: RewardFn, obs: Tensor, actions: Tensor,
             discount: float) -> tuple[Tensor, Tensor]:
    """(returns ``[N]``, last predicted state ``[N, obs_dim]``) of :func:`rollout_returns`."""
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
    return returns, cur


def member_mean(returns: Tensor) -> Tensor:
    """Members' returns ``[M, N]`` -> their mean ``[N]`` (PETS' particle average)."""
    return returns.mean(0)


def mean_minus_std(k: float) -> Callable[[Tensor], Tensor]:
    """An ``aggregate`` penalising disagreement: ``mean − k · std`` over the members (population
    std, so defined for one member, where it is 0)."""

    def aggregate(returns: Tensor) -> Tensor:
        return returns.mean(0) - k * returns.std(0, unbiased=False)

    return aggregate


@dataclass(frozen=True, eq=False)  # eq=False: no elementwise == on the tensors
class TrajectoryObjective:
    """Discounted predicted return of each candidate from ``obs``: ``objective(actions [N, H,
    act_dim]) -> [N]``.

    ``obs`` is ``[obs_dim]`` (every candidate starts there) or ``[N, obs_dim]``.

    Hooks (off by default; then the score is exactly :func:`rollout_returns`):

    * ``terminal_value``: last predicted states ``[N, obs_dim]`` -> values ``[N]``, added as
      ``discount ** H · terminal_value(s_H)``.
    * ``members`` (M): each candidate is rolled out M times in one batch of ``M · N`` rows,
      member-major (row ``m · N + n`` is member ``m`` of candidate ``n``, so a predictor of an
      ensemble reshapes its batch to ``[M, N, ...]``; ``predictor.initial_state(M · N)``); the
      returns, as ``[M, N]``, go to ``aggregate`` (default :func:`member_mean`) for one score
      per candidate. ``aggregate`` is only used when ``members > 1``.
    """

    predictor: Predictor
    reward_fn: RewardFn
    obs: Tensor
    discount: float = 1.0
    terminal_value: Callable[[Tensor], Tensor] | None = None
    members: int = 1
    aggregate: Callable[[Tensor], Tensor] = member_mean

    def __post_init__(self) -> None:
        if isinstance(self.members, bool) or not isinstance(self.members, int) \
                or self.members < 1:
            raise ValueError(f"members={self.members!r} must be an integer >= 1")

    def __call__(self, actions: Tensor) -> Tensor:
        if self.terminal_value is None and self.members == 1:
            return rollout_returns(self.predictor, self.reward_fn, self.obs, actions,
                                   self.discount)
        m = self.members
        obs = self.obs
        if m > 1:
            # Member-major tiling: member m sees candidates in rows m*N .. m*N + N - 1.
            actions = actions.repeat(m, 1, 1)
            if obs.dim() == 2:
                obs = obs.repeat(m, 1)
        returns, last = _rollout(self.predictor, self.reward_fn, obs, actions, self.discount)
        if self.terminal_value is not None:
            returns = returns + (self.discount ** actions.shape[1]) * self.terminal_value(last)
        if m > 1:
            returns = self.aggregate(returns.reshape(m, -1))
        return returns
