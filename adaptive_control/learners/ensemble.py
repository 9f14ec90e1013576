"""An ensemble of learners of one kind: each member adapts by its own step, and the planner
scores every candidate under every member (PETS' ensemble, with GrBAL/ReBAL's adaptation).

The members share nothing but their inputs: trained together on the same batches from their own
initial weights (``loss`` is the sum of theirs), or trained in separate runs and joined
(``builders.ensemble_of``); adapted separately on the same window. The
predictor they hand the planner takes a batch of ``M · N`` rows, member-major (row ``m · N + n``
is member ``m`` of candidate ``n``), the layout :class:`TrajectoryObjective`'s ``members`` hook
rolls out; the planner reads the size from :attr:`EnsemblePredictor.ensemble_size`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from adaptive_control.learners.base import Adaptation, Learner
from adaptive_control.types import Predictor, Transitions, WindowBatch


class EnsemblePredictor:
    """Member ``m``'s predictor on rows ``m · N .. m · N + N − 1`` of an ``M · N`` batch."""

    def __init__(self, members: Sequence[Predictor]) -> None:
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)

    @property
    def ensemble_size(self) -> int:
        """M: how many times the objective tiles each candidate."""
        return len(self.members)

    def _rows(self, batch_size: int) -> int:
        m = len(self.members)
        if batch_size % m:
            raise ValueError(f"an ensemble of {m} members takes a batch of a multiple of {m} "
                             f"rows (member-major), got {batch_size}")
        return batch_size // m

    def initial_state(self, batch_size: int) -> tuple[Any, ...]:
        n = self._rows(batch_size)
        return tuple(p.initial_state(n) for p in self.members)

    def __call__(self, obs: Tensor, act: Tensor, state: tuple[Any, ...]
                 ) -> tuple[Tensor, tuple[Any, ...]]:
        n = self._rows(obs.shape[0])
        outs, states = [], []
        for i, p in enumerate(self.members):
            rows = slice(i * n, (i + 1) * n)
            nxt, s = p(obs[rows], act[rows], state[i])
            outs.append(nxt)
            states.append(s)
        return torch.cat(outs, 0), tuple(states)


class Ensemble(Learner):
    """``members`` learners of one kind, adapted side by side: trained together (``loss`` sums
    the members' losses, so each member's gradient is what it would get trained alone on the
    same batch; ``builders.build_learner`` gives them one normaliser, the one
    :attr:`normalizer` returns) or trained apart and joined (each keeps its own normaliser).
    """

    name: ClassVar[str] = "ensemble"

    def __init__(self, members: Sequence[Learner]) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        kinds = {type(m).__name__ for m in members}
        if len(kinds) != 1:
            raise ValueError(f"ensemble members must be of one kind, got {sorted(kinds)}")
        self.members = nn.ModuleList(members)
        self.config = members[0].config

    @property
    def model(self) -> nn.Module:  # type: ignore[override]
        """The first member's model (its normaliser describes the data for every member)."""
        return self.members[0].model

    def loss(self, batch: WindowBatch) -> Tensor:
        return torch.stack([m.loss(batch) for m in self.members]).sum()

    def adapt(self, recent: Transitions) -> EnsemblePredictor:
        return EnsemblePredictor([m.adapt(recent) for m in self.members])

    def prior(self) -> EnsemblePredictor:
        return EnsemblePredictor([m.prior() for m in self.members])

    def reset(self) -> None:
        for m in self.members:
            m.reset()

    def adaptation(self) -> Adaptation:
        return self.members[0].adaptation()
