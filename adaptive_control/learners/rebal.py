"""ReBAL: the recurrent adaptive learner, whose hidden state after reading the recent window
is the adaptation; :class:`ReBALGains` (``ReBALConfig.action_gains``) reads it into per-motor
command gains with one GRU shared by all motors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from adaptive_control.learners.base import (
    Adaptation,
    Learner,
    MLPPredictor,
    RecurrentPredictor,
    _check_positive,
    _check_recent,
)
from adaptive_control.models.dynamics import ActuatorGainEncoder, MLPDynamics, RecurrentDynamics
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.types import Predictor, Transitions, WindowBatch


@dataclass(frozen=True)
class ReBALConfig:
    """ReBAL: recurrent dynamics whose hidden state encodes the condition."""

    #: RNN hidden units (paper: LSTM, 256).
    hidden_size: int = 256
    #: Recurrent cell type.
    cell: Literal["gru", "lstm"] = "lstm"
    #: Outer (Adam) learning rate, read by the trainer (paper: 1e-2).
    lr: float = 1e-2
    #: Weight of the one-step predictions inside the past window in the loss (0 = future only).
    past_weight: float = 0.0
    #: Action-gain ReBAL: a GRU shared by all motors reads the window into one command gain
    #: per motor, in front of an MLP (generalises to failures of motors training never broke).
    action_gains: bool = False
    #: MLP hidden widths of the action-gain variant.
    hidden_sizes: tuple[int, ...] = (256, 256)
    #: Seed of the weight initialisation.
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "hidden_size")
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"ReBALConfig.cell must be 'gru' or 'lstm', got {self.cell!r}")
        if self.past_weight < 0:
            raise ValueError(f"ReBALConfig.past_weight must be >= 0, got {self.past_weight}")


class ReBAL(Learner):
    """Recurrent-based adaptive learner: adaptation = encoding the recent window."""

    name = "rebal"

    def __init__(self, obs_dim: int, act_dim: int, config: ReBALConfig | None = None,
                 normalizer: Normalizer | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ReBALConfig()
        self.model = RecurrentDynamics(obs_dim, act_dim, self.config.hidden_size,
                                       self.config.cell, normalizer, seed=self.config.seed,
                                       past_weight=self.config.past_weight)

    def loss(self, batch: WindowBatch) -> Tensor:
        return self.model.loss(batch)

    def adapt(self, recent: Transitions) -> Predictor:
        _check_recent(recent, type(self).__name__)
        with torch.no_grad():
            context = self.model.encode(recent)
        last_delta = (recent.next_obs[-1] - recent.obs[-1]).detach()
        return RecurrentPredictor(self.model, context, last_delta)

    def adaptation(self) -> Adaptation:
        return Adaptation("recurrent", "window", "context", "hidden", cell=self.config.cell,
                          hidden_size=self.config.hidden_size)

    def prior(self) -> Predictor:
        """No history: a zero hidden state and the dataset-mean previous delta."""
        h = self.normalizer.delta_mean.new_zeros(self.model.hidden_size)  # on the model's device
        context = (h, h.clone()) if self.model.cell == "lstm" else h
        return RecurrentPredictor(self.model, context, self.normalizer.delta_mean.clone())


class ReBALGains(Learner):
    """ReBAL with action gains: the recurrent state that absorbs the window is per motor.

    An :class:`~adaptive_control.models.dynamics.ActuatorGainEncoder` (one GRU of
    ``hidden_size`` units shared by all motors) reads the past M transitions into one command
    gain per motor; the dynamics are an :class:`~adaptive_control.models.dynamics.MLPDynamics`
    behind those gains. Trained on
    the same windows: encode the past M, predict the future K. Adaptation is the encoder's
    forward pass; no gradient step at run time.
    """

    name = "rebal"

    def __init__(self, obs_dim: int, act_dim: int, config: ReBALConfig | None = None,
                 normalizer: Normalizer | None = None,
                 actuator_velocity_index: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ReBALConfig(action_gains=True)
        if actuator_velocity_index is None or len(actuator_velocity_index) != act_dim:
            raise ValueError(f"ReBAL with action_gains needs the observation index of every "
                             f"motor's joint velocity ({act_dim}), got {actuator_velocity_index!r}")
        self.model = MLPDynamics(obs_dim, act_dim, self.config.hidden_sizes, normalizer,
                                 seed=self.config.seed, action_gain=True)
        self.model.act_gain.requires_grad_(False)  # the gains come from the encoder
        self.encoder = ActuatorGainEncoder(actuator_velocity_index, self.config.hidden_size,
                                           seed=self.config.seed + 1)

    def gains(self, past: Transitions) -> Tensor:
        return self.encoder(past, self.model.normalizer)

    def _params(self, gain: Tensor) -> dict[str, Tensor]:
        return {**self.model.params(), "act_gain": gain}

    def loss(self, batch: WindowBatch) -> Tensor:
        gain = self.gains(batch.past).unsqueeze(-2)  # [B, 1, A]: one gain per window
        return self.model.functional_loss(self._params(gain), batch.future)

    def adapt(self, recent: Transitions) -> Predictor:
        _check_recent(recent, "ReBAL")
        with torch.no_grad():
            gain = self.gains(recent)
        return MLPPredictor(self.model, self._params(gain))

    def adaptation(self) -> Adaptation:
        return Adaptation("gains", "window", "action_gains", "none", cell="gru",
                          hidden_size=self.config.hidden_size, encoder=self.encoder)

    def prior(self) -> Predictor:
        """No history: every gain 1."""
        ones = self.model.normalizer.act_mean.new_ones(self.model.act_dim)  # model's device
        return MLPPredictor(self.model, self._params(ones))
