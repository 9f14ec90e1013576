"""Small shared types: transitions, meta-learning windows and the predictor interface.

Everything downstream of the simulators speaks in these: learners adapt on ``Transitions``,
planners roll candidates through a ``Predictor``, the controller and export glue them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class Transitions:
    """Consecutive transitions of one condition (or a batch of such sequences).

    Shapes: ``obs`` and ``next_obs`` are ``[..., T, obs_dim]``, ``act`` is ``[..., T, act_dim]``;
    ``next_obs[..., t, :]`` follows ``obs[..., t, :]`` under ``act[..., t, :]``.
    """

    obs: Tensor
    act: Tensor
    next_obs: Tensor

    def __post_init__(self) -> None:
        if self.obs.shape != self.next_obs.shape:
            raise ValueError(
                f"Transitions.next_obs has shape {tuple(self.next_obs.shape)}, "
                f"must equal obs shape {tuple(self.obs.shape)}"
            )
        if self.obs.shape[:-1] != self.act.shape[:-1]:
            raise ValueError(
                f"Transitions.act leading shape {tuple(self.act.shape[:-1])} must equal "
                f"obs leading shape {tuple(self.obs.shape[:-1])}"
            )

    def __len__(self) -> int:
        return self.obs.shape[-2]

    def to(self, device: torch.device | str) -> Transitions:
        return Transitions(self.obs.to(device), self.act.to(device), self.next_obs.to(device))

    def slice_time(self, start: int, stop: int) -> Transitions:
        return Transitions(
            self.obs[..., start:stop, :], self.act[..., start:stop, :],
            self.next_obs[..., start:stop, :],
        )


@dataclass(frozen=True)
class WindowBatch:
    """A meta-batch: for each item, M past transitions (adapt on) and K future ones (score on).

    ``past`` tensors are ``[B, M, dim]``, ``future`` tensors ``[B, K, dim]``; within an item the
    future directly continues the past, in the same condition.
    """

    past: Transitions
    future: Transitions

    @property
    def batch_size(self) -> int:
        return self.past.obs.shape[0]

    def to(self, device: torch.device | str) -> WindowBatch:
        return WindowBatch(self.past.to(device), self.future.to(device))


class Predictor(Protocol):
    """A (possibly adapted) dynamics model, batched over candidates.

    ``state`` is the recurrent state for ReBAL-style models and ``None`` for feed-forward ones;
    planners thread it through the horizon without looking inside.
    """

    def initial_state(self, batch_size: int) -> Any: ...

    def __call__(self, obs: Tensor, act: Tensor, state: Any) -> tuple[Tensor, Any]:
        """obs ``[N, obs_dim]``, act ``[N, act_dim]`` -> (next_obs ``[N, obs_dim]``, state)."""
        ...


class RewardFn(Protocol):
    """Task reward on (obs, act, next_obs) batches, in torch: returns ``[N]``."""

    def __call__(self, obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor: ...
