"""One interface for the four model-learning methods compared in GrBAL/ReBAL (ICLR 2019).

- ``MB``: plain supervised dynamics model; no adaptation.
- ``MBDE``: MB + dynamic evaluation — online SGD on the recent transitions at test time,
  carried across calls.
- ``GrBAL``: gradient-based adaptive learner (MAML on the dynamics model), optionally
  first-order or Meta-SGD; meta-batches are vectorised with ``torch.func.vmap``.
- ``ReBAL``: recurrent model whose hidden state, after reading the recent window, is the
  adaptation; ``ReBALGains`` (``ReBALConfig.action_gains``) reads it into per-motor command
  gains with one GRU shared by all motors.

Training: ``opt = torch.optim.Adam(learner.parameters(), lr=learner.config.lr)`` and minimise
``learner.loss(batch)``. Test time: ``predictor = learner.adapt(recent)`` every control step,
then roll candidates through ``predictor``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from adaptive_control.models.dynamics import (
    ActuatorGainEncoder,
    Hidden,
    MLPDynamics,
    RecurrentDynamics,
)
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.types import Predictor, Transitions, WindowBatch

# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MBConfig:
    """Non-adaptive MLP dynamics model (the paper's MB baseline)."""

    #: MLP hidden widths; the paper's MB baseline uses 2 × 512.
    hidden_sizes: tuple[int, ...] = (512, 512)
    #: Outer (Adam) learning rate, read by the trainer.
    lr: float = 1e-3
    #: Seed of the weight initialisation.
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "lr")


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

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "online_lr")
        _check_non_negative_int(self, "online_steps")


@dataclass(frozen=True)
class GrBALConfig:
    """GrBAL: MAML on the dynamics MLP (paper defaults)."""

    #: MLP hidden widths; the paper uses 3 × 512.
    hidden_sizes: tuple[int, ...] = (512, 512, 512)
    #: Outer (Adam) learning rate, read by the trainer.
    lr: float = 1e-3
    #: Inner SGD step size (paper: 0.01); the initial value of the Meta-SGD rates.
    inner_lr: float = 0.01
    #: Inner SGD steps on the past M transitions (paper: 1).
    inner_steps: int = 1
    #: Drop second-order terms (FOMAML): the inner gradient is treated as a constant.
    first_order: bool = False
    #: Meta-SGD: learn one inner learning rate per parameter element.
    learn_inner_lr: bool = False
    #: Meta-batch implementation: "vmap" (torch.func) or "lowrank" (exact, faster when wide).
    meta_impl: Literal["vmap", "lowrank"] = "vmap"
    #: Per-actuator command gains in front of the MLP, adapted by the inner step too
    #: (identifies dead, weak and reversed motors, including ones training never broke).
    action_gains: bool = False
    #: Inner SGD step size of the action gains (with action_gains).
    gain_inner_lr: float = 10.0
    #: Seed of the weight initialisation.
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "inner_lr", "gain_inner_lr")
        _check_non_negative_int(self, "inner_steps")
        if self.meta_impl == "lowrank" and self.action_gains:
            raise ValueError("GrBALConfig: action_gains=True needs meta_impl='vmap' (the "
                             "low-rank form covers the MLP weights only)")
        if self.meta_impl not in ("vmap", "lowrank"):
            raise ValueError(f"GrBALConfig.meta_impl must be 'vmap' or 'lowrank', "
                             f"got {self.meta_impl!r}")
        if self.meta_impl == "lowrank" and self.learn_inner_lr:
            raise ValueError("GrBALConfig: meta_impl='lowrank' needs a scalar inner lr; "
                             "Meta-SGD (learn_inner_lr=True) needs meta_impl='vmap'")


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
) -> dict[str, Tensor]:
    """``steps`` plain SGD steps on ``model.functional_loss(·, past)`` starting from ``params``.

    ``inner_lr`` is a float or a per-parameter mapping (Meta-SGD; broadcast elementwise).
    ``create_graph=False`` treats each inner gradient as a constant (first-order MAML, and
    test-time adaptation). Uses ``torch.func.grad``, so it works unbatched, under ``vmap``,
    under an outer ``torch.no_grad`` and under ``make_fx`` tracing.
    """
    grad_fn = torch.func.grad(model.functional_loss)
    p = dict(params)
    for _ in range(steps):
        g = grad_fn(p, past)
        if not create_graph:
            g = {k: v.detach() for k, v in g.items()}
        if isinstance(inner_lr, Mapping):
            p = {k: p[k] - inner_lr[k] * g[k] for k in p}
        else:
            p = {k: p[k] - inner_lr * g[k] for k in p}
    return p


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
        return self.model.loss(_cat_time(batch.past, batch.future))

    def adapt(self, recent: Transitions) -> Predictor:
        _check_recent(recent, type(self).__name__)
        return MLPPredictor(self.model)


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
        super().__init__(obs_dim, act_dim, MBConfig(cfg.hidden_sizes, cfg.lr, cfg.seed),
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

    def prior(self) -> Predictor:
        """The current online weights (the trained ones after a reset)."""
        return MLPPredictor(self.model, self.online_params())

    def reset(self) -> None:
        self._online = None


class GrBAL(Learner):
    """Gradient-based adaptive learner: MAML on the dynamics MLP.

    Per task: ``inner_steps`` SGD steps on the past M from θ, then the adapted model's loss
    on the future K. The meta-batch is vectorised with ``vmap`` over tasks (one batched
    computation, not a Python loop). With ``learn_inner_lr`` (Meta-SGD) the per-element
    inner learning rates are parameters in ``inner_lrs``, initialised to ``inner_lr``.
    """

    name = "grbal"

    def __init__(self, obs_dim: int, act_dim: int, config: GrBALConfig | None = None,
                 normalizer: Normalizer | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else GrBALConfig()
        self.model = MLPDynamics(obs_dim, act_dim, self.config.hidden_sizes, normalizer,
                                 seed=self.config.seed, action_gain=self.config.action_gains)
        self.inner_lrs: nn.ParameterDict | None = None
        if self.config.learn_inner_lr:
            # ParameterDict keys may not contain '.', hence the renaming.
            self.inner_lrs = nn.ParameterDict({
                _lr_key(k): nn.Parameter(torch.full_like(p.detach(), self._initial_lr(k)))
                for k, p in self.model.named_parameters()
            })

    def _initial_lr(self, name: str) -> float:
        return self.config.gain_inner_lr if name == "act_gain" else self.config.inner_lr

    def inner_lr(self) -> float | dict[str, Tensor]:
        """The inner step size: a float, or per-parameter tensors keyed like the model params
        (Meta-SGD, or a separate rate for the action gains)."""
        if self.inner_lrs is not None:
            return {k: self.inner_lrs[_lr_key(k)] for k, _ in self.model.named_parameters()}
        if self.model.has_action_gain:
            return {k: torch.tensor(self._initial_lr(k)) for k, _ in self.model.named_parameters()}
        return self.config.inner_lr

    def task_losses(self, batch: WindowBatch,
                    impl: Literal["vmap", "loop", "lowrank"] | None = None) -> Tensor:
        """Post-adaptation future loss of every task, ``[B]``.

        ``impl`` defaults to ``config.meta_impl``; "loop" is the per-task reference.
        """
        impl = impl if impl is not None else self.config.meta_impl
        steps, first_order = self.config.inner_steps, self.config.first_order
        if impl == "lowrank":
            lr = self.inner_lr()
            if isinstance(lr, Mapping):
                raise ValueError("GrBAL: impl='lowrank' needs a scalar inner lr (no Meta-SGD)")
            return lowrank_task_losses(self.model, batch, float(lr), steps, first_order)
        if impl not in ("vmap", "loop"):
            raise ValueError(f"GrBAL.task_losses: unknown impl {impl!r}")
        params, lr = self.model.params(), self.inner_lr()

        def one(po: Tensor, pa: Tensor, pn: Tensor, fo: Tensor, fa: Tensor,
                fn: Tensor) -> Tensor:
            adapted = inner_update(self.model, params, Transitions(po, pa, pn), lr, steps,
                                   not first_order)
            return self.model.functional_loss(adapted, Transitions(fo, fa, fn))

        args = (batch.past.obs, batch.past.act, batch.past.next_obs,
                batch.future.obs, batch.future.act, batch.future.next_obs)
        if impl == "vmap":
            return torch.vmap(one)(*args)
        return torch.stack([one(*(a[i] for a in args)) for i in range(batch.batch_size)])

    def preadapt_losses(self, batch: WindowBatch) -> Tensor:
        """Future loss of θ itself (no adaptation) per task, ``[B]`` — the baseline to beat."""
        per_elem = (self.model.forward_norm_delta(batch.future.obs, batch.future.act)
                    - self.model.target(batch.future)) ** 2
        return per_elem.mean(dim=(-2, -1))

    def loss(self, batch: WindowBatch) -> Tensor:
        return self.task_losses(batch).mean()

    def adapted_params(self, recent: Transitions) -> dict[str, Tensor]:
        """θ* adapted on ``recent`` (fresh from θ* each call), detached."""
        _check_recent(recent, type(self).__name__)
        params = {k: v.detach() for k, v in self.model.named_parameters()}
        lr = self.inner_lr()
        if isinstance(lr, dict):
            lr = {k: v.detach() for k, v in lr.items()}
        out = inner_update(self.model, params, recent, lr, self.config.inner_steps,
                           create_graph=False)
        return {k: v.detach() for k, v in out.items()}

    def adapt(self, recent: Transitions) -> Predictor:
        return MLPPredictor(self.model, self.adapted_params(recent))


def lowrank_task_losses(
    model: MLPDynamics,
    batch: WindowBatch,
    inner_lr: float,
    steps: int = 1,
    first_order: bool = False,
) -> Tensor:
    """Per-task post-adaptation future losses ``[B]``, equal to the vmap path, without ever
    forming per-task weights; tasks batched with ``torch.func.vmap``, the inner gradient taken
    with ``torch.func.grad``.

    One SGD step on a linear layer changes ``W`` by ``-lr * Gᵀ H`` (``G``: loss gradients at
    the layer's outputs, ``H``: its inputs, over the M past steps) — a rank-≤M update — and
    ``b`` by ``-lr * 1ᵀ G``. So the adapted layer applied to ``x`` is
    ``x Wᵀ + b - lr * (x Hᵀ + 1) G``: matrix products with the shared ``W`` plus small
    ``[K, M]`` kernels per task. ``G`` is the gradient of the inner loss with respect to a zero
    perturbation of each layer's pre-activations. The plain vmap path instead materialises
    every task's adapted ``[width, width]`` weights and their gradients, which is memory-bound
    for wide layers. Plain SGD with a scalar lr only (not Meta-SGD, not action gains).
    """
    layers = _mlp_layers(model)
    n_layers = len(layers)

    def forward(x: Tensor, corrections: list[list[tuple[Tensor, Tensor]]],
                eps: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        hs = []
        for i, lin in enumerate(layers):
            hs.append(x)
            z = torch.nn.functional.linear(x, lin.weight, lin.bias)
            for g, h in corrections[i]:
                z = z - inner_lr * ((x @ h.transpose(-1, -2) + 1.0) @ g)
            if eps is not None:
                z = z + eps[i]
            x = torch.relu(z) if i < n_layers - 1 else z
        return x, hs

    def one(x_past: Tensor, y_past: Tensor, x_fut: Tensor, y_fut: Tensor) -> Tensor:
        corrections: list[list[tuple[Tensor, Tensor]]] = [[] for _ in layers]
        zeros = [x_past.new_zeros(x_past.shape[0], lin.out_features) for lin in layers]
        for _ in range(steps):
            def inner(eps: list[Tensor], corr=corrections) -> tuple[Tensor, list[Tensor]]:
                out, hs = forward(x_past, corr, eps)
                return ((out - y_past) ** 2).mean(), hs

            gs, hs = torch.func.grad(inner, has_aux=True)(zeros)
            if first_order:
                gs = [g.detach() for g in gs]
                hs = [h.detach() for h in hs]
            corrections = [c + [(g, h)] for c, g, h in zip(corrections, gs, hs, strict=True)]
        out, _ = forward(x_fut, corrections)
        return ((out - y_fut) ** 2).mean()

    past, fut = batch.past, batch.future
    return torch.vmap(one)(model.net_inputs(past.obs, past.act), model.target(past),
                           model.net_inputs(fut.obs, fut.act), model.target(fut))


def _mlp_layers(model: MLPDynamics) -> list[nn.Linear]:
    """The Linear layers of a Linear-ReLU-...-Linear net (what lowrank_task_losses assumes)."""
    mods = list(model.net)
    ok = len(mods) % 2 == 1 and all(
        isinstance(m, nn.Linear) if i % 2 == 0 else isinstance(m, nn.ReLU)
        for i, m in enumerate(mods)
    )
    if not ok:
        raise ValueError("lowrank_task_losses needs a Linear-ReLU-...-Linear MLP")
    return [m for m in mods if isinstance(m, nn.Linear)]


def _lr_key(param_name: str) -> str:
    return param_name.replace(".", "__")


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

    def prior(self) -> Predictor:
        """No history: a zero hidden state and the dataset-mean previous delta."""
        h = torch.zeros(self.model.hidden_size)
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

    def prior(self) -> Predictor:
        """No history: every gain 1."""
        return MLPPredictor(self.model, self._params(torch.ones(self.model.act_dim)))


# --------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------

LEARNERS: dict[str, tuple[type[Learner], type]] = {
    "mb": (MB, MBConfig),
    "mbde": (MBDE, MBDEConfig),
    "grbal": (GrBAL, GrBALConfig),
    "rebal": (ReBAL, ReBALConfig),
}


def make_learner(
    name: str,
    obs_dim: int,
    act_dim: int,
    config: MBConfig | MBDEConfig | GrBALConfig | ReBALConfig | None = None,
    normalizer: Normalizer | None = None,
    actuator_velocity_index: tuple[int, ...] | None = None,
) -> Learner:
    """Build a learner by name (case-insensitive; "MB+DE"/"mb_de" are accepted for "mbde").

    ``actuator_velocity_index`` (the robot's ``Robot.actuator_velocity_index``) is needed by
    ReBAL with ``action_gains`` only.
    """
    key = name.lower().replace("+", "").replace("-", "").replace("_", "")
    if key not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; allowed: {', '.join(LEARNERS)}")
    cls, cfg_cls = LEARNERS[key]
    if config is not None and type(config) is not cfg_cls:
        raise ValueError(f"learner {key!r} takes a {cfg_cls.__name__}, "
                         f"got {type(config).__name__}")
    if isinstance(config, ReBALConfig) and config.action_gains:
        return ReBALGains(obs_dim, act_dim, config, normalizer, actuator_velocity_index)
    return cls(obs_dim, act_dim, config, normalizer)
