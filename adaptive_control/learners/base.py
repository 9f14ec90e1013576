"""What every learner shares: the :class:`Learner` interface, the description of its
adaptation (:class:`Adaptation`), the predictors it hands to the planners and the inner SGD
update (:func:`inner_update`) used by GrBAL's training and adaptation, MB+DE and the exporter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from adaptive_control.models.dynamics import Hidden, MLPDynamics, RecurrentDynamics
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.types import Predictor, Transitions, WindowBatch

# --------------------------------------------------------------------------------------------
# What the adapt step does
# --------------------------------------------------------------------------------------------

#: ``none`` (MB: the window is ignored), ``gradient`` (GrBAL: SGD steps from the trained
#: weights on every call), ``online_sgd`` (MB+DE: SGD steps continuing from online weights
#: carried across calls), ``recurrent`` (ReBAL: an RNN reads the window into a fixed context)
#: or ``gains`` (ReBAL with action gains: a motor-shared GRU reads the window into one command
#: gain per motor).
AdaptationKind = Literal["none", "gradient", "online_sgd", "recurrent", "gains"]


@dataclass(frozen=True)
class Adaptation:
    """What a learner's ``adapt`` step reads, updates and carries, and its settings.

    Code that hosts the adapt step elsewhere (the ONNX exporter) dispatches on this
    description instead of on learner classes.
    """

    #: See :data:`AdaptationKind`.
    kind: AdaptationKind
    #: What ``adapt`` reads: ``window`` (the last M transitions) or ``none``.
    inputs: Literal["none", "window"]
    #: What it changes: ``nothing``, ``weights`` (the MLP's weights, and its action gains
    #: when the model has them), ``context`` (the recurrent hidden state the planner rolls
    #: from) or ``action_gains`` (the per-motor command gains in front of the MLP).
    updates: Literal["nothing", "weights", "context", "action_gains"]
    #: What it keeps besides the trained weights: ``none``, ``online_weights`` (carried from
    #: one call to the next, read with ``learner.online_params()``; ``Learner.reset`` forgets
    #: them) or ``hidden`` (a recurrent hidden state read from the window on every call).
    state: Literal["none", "online_weights", "hidden"]
    #: The SGD step size (``gradient``, ``online_sgd``): a float, or per-parameter tensors
    #: keyed like ``model.named_parameters()`` (Meta-SGD, or a separate action-gain rate).
    inner_lr: float | Mapping[str, Tensor] | None = field(default=None, compare=False)
    #: SGD steps per ``adapt`` call (``gradient``, ``online_sgd``).
    inner_steps: int = 0
    #: Largest norm of an SGD step's gradient (``gradient``); 0: no limit.
    inner_max_norm: float = 0.0
    #: Recurrent cell (``recurrent``: ``gru`` or ``lstm``; ``gains``: ``gru``).
    cell: str | None = None
    #: Recurrent hidden units (``recurrent``, ``gains``).
    hidden_size: int | None = None
    #: The module that reads the window into the gains (``gains``), beside ``learner.model``.
    encoder: nn.Module | None = field(default=None, compare=False, repr=False)

    @property
    def meta_sgd(self) -> bool:
        """Per-parameter step sizes (a mapping) instead of one float."""
        return isinstance(self.inner_lr, Mapping)

    @property
    def sgd(self) -> bool:
        """The adapt step is SGD on the window's normalised-Δ MSE (:func:`inner_update`)."""
        return self.kind in ("gradient", "online_sgd")

    @property
    def carries_weights(self) -> bool:
        return self.state == "online_weights"


# --------------------------------------------------------------------------------------------
# Config checks
# --------------------------------------------------------------------------------------------


def _check_positive(cfg: Any, *names: str) -> None:
    for n in names:
        if not getattr(cfg, n) > 0:
            raise ValueError(f"{type(cfg).__name__}.{n} must be > 0, got {getattr(cfg, n)}")


def _check_non_negative_int(cfg: Any, *names: str) -> None:
    for n in names:
        v = getattr(cfg, n)
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{type(cfg).__name__}.{n} must be an int >= 0, got {v!r}")


# --------------------------------------------------------------------------------------------
# Predictors
# --------------------------------------------------------------------------------------------


class MLPPredictor:
    """Feed-forward predictor: the live model (``params=None``) or a fixed set of weights."""

    def __init__(self, model: MLPDynamics, params: Mapping[str, Tensor] | None = None) -> None:
        self.model = model
        self.params = None if params is None else {k: v.detach() for k, v in params.items()}

    def initial_state(self, batch_size: int) -> None:
        return None

    def __call__(self, obs: Tensor, act: Tensor, state: Any) -> tuple[Tensor, Any]:
        with torch.no_grad():
            if self.params is None:
                return self.model(obs, act), state
            return self.model.functional_forward(self.params, obs, act), state


class RecurrentPredictor:
    """ReBAL predictor: fixed post-adaptation context; the state is the previous Δs [N, obs].

    ``initial_state`` starts from the last Δs of the adaptation window, as in training.
    """

    def __init__(self, model: RecurrentDynamics, context: Hidden, last_delta: Tensor) -> None:
        self.model = model
        self.context = context
        self.last_delta = last_delta

    def initial_state(self, batch_size: int) -> Tensor:
        return self.last_delta.expand(batch_size, -1).clone()

    def __call__(self, obs: Tensor, act: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            next_obs, _ = self.model.step(obs, act, state, self.context)
        return next_obs, next_obs - obs


# --------------------------------------------------------------------------------------------
# The inner update (shared by GrBAL training, GrBAL adaptation, MB+DE and the exporter)
# --------------------------------------------------------------------------------------------


def inner_update(
    model: MLPDynamics,
    params: Mapping[str, Tensor],
    past: Transitions,
    inner_lr: float | Mapping[str, Tensor],
    steps: int = 1,
    create_graph: bool = True,
    mask: Tensor | None = None,
    max_norm: float = 0.0,
) -> dict[str, Tensor]:
    """``steps`` plain SGD steps on ``model.functional_loss(·, past)`` starting from ``params``.

    ``inner_lr`` is a float or a per-parameter mapping (Meta-SGD; broadcast elementwise).
    ``max_norm`` > 0 scales a gradient whose norm (over all parameters) exceeds it down to
    it; below it the step is exactly the plain one.
    ``create_graph=False`` treats each inner gradient as a constant (first-order MAML, and
    test-time adaptation). Uses ``torch.func.grad``, so it works unbatched, under ``vmap``,
    under an outer ``torch.no_grad`` and under ``make_fx`` tracing. ``mask`` (``[M]``) takes
    the step on :func:`window_loss`'s masked mean instead (rows with mask 0 ignored).
    """
    grad_fn = torch.func.grad(lambda p, t: window_loss(model, p, t, mask))
    p = dict(params)
    for _ in range(steps):
        g = grad_fn(p, past)
        if not create_graph:
            g = {k: v.detach() for k, v in g.items()}
        if max_norm > 0:
            g = _clip_norm(g, max_norm)
        if isinstance(inner_lr, Mapping):
            p = {k: p[k] - inner_lr[k] * g[k] for k in p}
        else:
            p = {k: p[k] - inner_lr * g[k] for k in p}
    return p


def _clip_norm(grads: dict[str, Tensor], max_norm: float) -> dict[str, Tensor]:
    """``grads`` scaled to norm ``max_norm`` when above it. A window unlike any trained on
    (a fall, a collision) can have a gradient tens of times the usual, and one full step on
    it throws the adapted model far off (docs/adaptive_control.md, the clipped step). The
    scale is exactly 1 below the limit, and its gradient finite at a zero gradient."""
    scale = clip_scale(sum((v * v).sum() for v in grads.values()), max_norm)
    return {k: v * scale for k, v in grads.items()}


def clip_scale(sq_norm: Tensor, max_norm: float) -> Tensor:
    """The factor that brings a gradient of squared norm ``sq_norm`` down to ``max_norm``:
    exactly 1 below it."""
    # + ε: sqrt's derivative at 0 would make the meta-gradient NaN
    norm = torch.sqrt(sq_norm + 1e-20)
    return max_norm / torch.clamp(norm, min=max_norm)


def masked_rows(mask: Tensor, *xs: Tensor) -> tuple[Tensor, ...]:
    """Zero the rows whose mask is 0, so garbage (even NaN) there cannot leak into sums."""
    keep = (mask > 0).unsqueeze(-1)
    return tuple(torch.where(keep, x, torch.zeros_like(x)) for x in xs)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """The mean of ``(pred - target)²``; with ``mask`` (``[M]`` over the rows) the masked mean
    ``Σ_i w_i Σ_j (pred − target)²_ij / (max(Σ w, 1) · dim)`` with ``w = mask`` where positive
    and 0 elsewhere: an all-one mask gives the plain mean, an all-zero mask 0."""
    if mask is None:
        return ((pred - target) ** 2).mean()
    w = torch.where(mask > 0, mask, torch.zeros_like(mask))
    per_row = ((pred - target) ** 2).sum(-1)
    return (w * per_row).sum() / (torch.clamp(w.sum(), min=1.0) * pred.shape[-1])


def window_loss(model: MLPDynamics, params: Mapping[str, Tensor], past: Transitions,
                mask: Tensor | None = None) -> Tensor:
    """The inner loss: ``model.functional_loss(params, past)``, or with ``mask`` its masked
    mean (:func:`masked_mse`; rows with mask 0 are zeroed before any arithmetic, so they may
    hold anything, and an all-zero mask gives a zero gradient)."""
    if mask is None:
        return model.functional_loss(params, past)
    past = Transitions(*masked_rows(mask, past.obs, past.act, past.next_obs))
    pred = model._functional_norm_delta(params, past.obs, past.act)
    return masked_mse(pred, model.target(past), mask)


# --------------------------------------------------------------------------------------------
# Learners
# --------------------------------------------------------------------------------------------


class Learner(nn.Module, ABC):
    """Common interface. ``parameters()`` is everything the outer optimiser should update."""

    name: ClassVar[str]
    model: nn.Module
    config: Any

    @abstractmethod
    def loss(self, batch: WindowBatch) -> Tensor:
        """Training objective on a meta-batch (the meta-loss for GrBAL)."""

    @abstractmethod
    def adapt(self, recent: Transitions) -> Predictor:
        """Adapt to the last M transitions (unbatched ``[M, dim]``); returns a predictor."""

    @abstractmethod
    def adaptation(self) -> Adaptation:
        """What :meth:`adapt` reads, updates and carries, and its settings."""

    def reset(self) -> None:
        """Forget test-time state (only MB+DE has any)."""

    def prior(self) -> Predictor:
        """The unadapted predictor: what the controller plans with before M transitions exist."""
        return MLPPredictor(self.model)

    @property
    def normalizer(self) -> Normalizer:
        return self.model.normalizer


def _check_recent(recent: Transitions, who: str) -> None:
    if recent.obs.dim() != 2 or len(recent) < 1:
        raise ValueError(
            f"{who}.adapt expects unbatched transitions [M, dim] with M >= 1, "
            f"got obs shape {tuple(recent.obs.shape)}"
        )


def _cat_time(a: Transitions, b: Transitions) -> Transitions:
    return Transitions(*(torch.cat([x, y], dim=-2) for x, y in
                         ((a.obs, b.obs), (a.act, b.act), (a.next_obs, b.next_obs))))
