"""MB (a plain supervised dynamics model) and MB+DE (MB with dynamic evaluation: online SGD
on the recent transitions at test time, carried across calls)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from adaptive_control.learners.base import (
    Adaptation,
    Learner,
    MLPPredictor,
    _cat_time,
    _check_non_negative_int,
    _check_positive,
    _check_recent,
    inner_update,
)
from adaptive_control.models.dynamics import MLPDynamics
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.types import Predictor, Transitions, WindowBatch


@dataclass(frozen=True)
class MBConfig:
    """Non-adaptive MLP dynamics model (the paper's MB baseline)."""

    #: MLP hidden widths; the paper's MB baseline uses 2 × 512.
    hidden_sizes: tuple[int, ...] = (512, 512)
    #: Outer (Adam) learning rate, read by the trainer.
    lr: float = 1e-3
    #: Seed of the weight initialisation.
    seed: int = 0
    #: Open-loop steps each prediction is scored over (1 = one-step loss, the paper's); see
    #: ``MLPDynamics.functional_loss``.
    rollout_steps: int = 1

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "rollout_steps")
        _check_non_negative_int(self, "rollout_steps")



@dataclass(frozen=True)
class MBDEConfig:
    """MB + dynamic evaluation: MB training, online SGD on recent data at test time."""

    #: MLP hidden widths (as MB).
    hidden_sizes: tuple[int, ...] = (512, 512)
    #: Outer (Adam) learning rate, read by the trainer.
    lr: float = 1e-3
    #: SGD steps on the recent transitions per ``adapt`` call.
    online_steps: int = 1
    #: SGD step size on the normalised-Δ MSE (the scale GrBAL's inner lr 0.01 also uses).
    online_lr: float = 0.01
    #: Seed of the weight initialisation.
    seed: int = 0
    #: Open-loop steps each training prediction is scored over (as MB).
    rollout_steps: int = 1

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "online_lr", "rollout_steps")
        _check_non_negative_int(self, "online_steps", "rollout_steps")


class MB(Learner):
    """Supervised MSE on every transition of each window (past and future); no adaptation."""

    name = "mb"

    def __init__(self, obs_dim: int, act_dim: int, config: MBConfig | None = None,
                 normalizer: Normalizer | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else MBConfig()
        self.model = MLPDynamics(obs_dim, act_dim, self.config.hidden_sizes, normalizer,
                                 seed=self.config.seed)

    def loss(self, batch: WindowBatch) -> Tensor:
        return self.model.functional_loss(self.model.params(), _cat_time(batch.past, batch.future),
                                          self.config.rollout_steps)

    def adapt(self, recent: Transitions) -> Predictor:
        _check_recent(recent, type(self).__name__)
        return MLPPredictor(self.model)

    def adaptation(self) -> Adaptation:
        return Adaptation("none", "none", "nothing", "none")


class MBDE(MB):
    """MB + dynamic evaluation.

    Training is exactly MB's. At test time ``adapt`` takes ``online_steps`` SGD steps on the
    recent transitions, continuing from its own online copy of the weights (created from the
    trained weights on first use, kept across calls); the trained weights are never modified.
    The online copy is a plain attribute, not a parameter: optimisers, ``state_dict`` and
    ``.to()`` do not see it (``reset()`` after moving or further training).
    """

    name = "mbde"

    def __init__(self, obs_dim: int, act_dim: int, config: MBDEConfig | None = None,
                 normalizer: Normalizer | None = None) -> None:
        cfg = config if config is not None else MBDEConfig()
        super().__init__(obs_dim, act_dim, MBConfig(cfg.hidden_sizes, cfg.lr, cfg.seed,
                                                         cfg.rollout_steps),
                         normalizer)
        self.config = cfg
        self._online: dict[str, Tensor] | None = None

    def online_params(self) -> dict[str, Tensor]:
        """The current online weights (a detached copy of the trained ones after a reset)."""
        if self._online is None:
            self._online = {k: v.detach().clone() for k, v in self.model.named_parameters()}
        return dict(self._online)

    def adapt(self, recent: Transitions) -> Predictor:
        _check_recent(recent, type(self).__name__)
        params = inner_update(self.model, self.online_params(), recent, self.config.online_lr,
                              self.config.online_steps, create_graph=False)
        self._online = {k: v.detach() for k, v in params.items()}
        return MLPPredictor(self.model, self._online)

    def adaptation(self) -> Adaptation:
        return Adaptation("online_sgd", "window", "weights", "online_weights",
                          inner_lr=self.config.online_lr, inner_steps=self.config.online_steps)

    def prior(self) -> Predictor:
        """The current online weights (the trained ones after a reset)."""
        return MLPPredictor(self.model, self.online_params())

    def reset(self) -> None:
        self._online = None
