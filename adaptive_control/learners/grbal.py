"""GrBAL: the gradient-based adaptive learner (MAML on the dynamics MLP), optionally
first-order or Meta-SGD; meta-batches vectorised with ``torch.func.vmap`` or in the exact
low-rank form (:func:`lowrank_task_losses`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from adaptive_control.learners.base import (
    Adaptation,
    Learner,
    MLPPredictor,
    _check_non_negative_int,
    _check_positive,
    _check_recent,
    clip_scale,
    inner_update,
    masked_mse,
)
from adaptive_control.models.dynamics import MLPDynamics
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.types import Predictor, Transitions, WindowBatch


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
    #: Meta-batch implementation: "vmap" (torch.func, per-task weights) or "lowrank" (the
    #: same meta-loss without per-task weights: several times faster at 2 x 256).
    meta_impl: Literal["vmap", "lowrank"] = "vmap"
    #: Per-actuator command gains in front of the MLP, adapted by the inner step too
    #: (identifies dead, weak and reversed motors, including ones training never broke).
    action_gains: bool = False
    #: Inner SGD step size of the action gains (with action_gains).
    gain_inner_lr: float = 10.0
    #: Seed of the weight initialisation.
    seed: int = 0
    #: Open-loop steps the adapted model is scored over on the future K (1 = one-step loss,
    #: the paper's); a planner rolls the model tens of steps, so training on its own
    #: predictions is what keeps those rollouts on track. Needs meta_impl='vmap'.
    rollout_steps: int = 1
    #: Largest norm of the inner step's gradient (over every adapted parameter); a larger one
    #: is scaled down to it (0: no limit, the paper's). A window unlike any trained on can
    #: have a gradient tens of times the usual, and the full step then predicts worse than
    #: not adapting at all (docs/adaptive_control.md).
    inner_max_norm: float = 0.0

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "inner_lr", "gain_inner_lr", "rollout_steps")
        _check_non_negative_int(self, "inner_steps", "rollout_steps")
        if self.meta_impl == "lowrank" and self.rollout_steps != 1:
            raise ValueError(f"GrBALConfig.rollout_steps={self.rollout_steps!r} needs "
                             "meta_impl='vmap' (the low-rank form scores one-step predictions)")
        if self.meta_impl not in ("vmap", "lowrank"):
            raise ValueError(f"GrBALConfig.meta_impl must be 'vmap' or 'lowrank', "
                             f"got {self.meta_impl!r}")
        if not (math.isfinite(self.inner_max_norm) and self.inner_max_norm >= 0):
            raise ValueError(f"GrBALConfig.inner_max_norm={self.inner_max_norm!r}: allowed a "
                             "number >= 0 (0: no limit)")
        if self.meta_impl == "lowrank" and self.learn_inner_lr:
            raise ValueError("GrBALConfig: meta_impl='lowrank' needs a scalar inner lr; "
                             "Meta-SGD (learn_inner_lr=True) needs meta_impl='vmap'")


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
            return {k: torch.tensor(self._initial_lr(k), device=p.device)
                    for k, p in self.model.named_parameters()}
        return self.config.inner_lr

    def task_losses(self, batch: WindowBatch,
                    impl: Literal["vmap", "loop", "lowrank"] | None = None) -> Tensor:
        """Post-adaptation future loss of every task, ``[B]``.

        ``impl`` defaults to ``config.meta_impl``; "loop" is the per-task reference.
        """
        impl = impl if impl is not None else self.config.meta_impl
        steps, first_order = self.config.inner_steps, self.config.first_order
        if impl == "lowrank":
            if self.inner_lrs is not None:
                raise ValueError("GrBAL: impl='lowrank' needs a scalar inner lr (no Meta-SGD)")
            return lowrank_task_losses(self.model, batch, self.config.inner_lr, steps,
                                       first_order, self.config.inner_max_norm,
                                       self.config.gain_inner_lr)
        if impl not in ("vmap", "loop"):
            raise ValueError(f"GrBAL.task_losses: unknown impl {impl!r}")
        params, lr = self.model.params(), self.inner_lr()

        def one(po: Tensor, pa: Tensor, pn: Tensor, fo: Tensor, fa: Tensor,
                fn: Tensor) -> Tensor:
            adapted = inner_update(self.model, params, Transitions(po, pa, pn), lr, steps,
                                   not first_order, max_norm=self.config.inner_max_norm)
            return self.model.functional_loss(adapted, Transitions(fo, fa, fn),
                                              self.config.rollout_steps)

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
                           create_graph=False, max_norm=self.config.inner_max_norm)
        return {k: v.detach() for k, v in out.items()}

    def adapt(self, recent: Transitions) -> Predictor:
        return MLPPredictor(self.model, self.adapted_params(recent))

    def adaptation(self) -> Adaptation:
        lr = self.inner_lr()
        if isinstance(lr, dict):
            lr = {k: v.detach() for k, v in lr.items()}
        return Adaptation("gradient", "window", "weights", "none", inner_lr=lr,
                          inner_steps=self.config.inner_steps,
                          inner_max_norm=self.config.inner_max_norm)


def lowrank_task_losses(
    model: MLPDynamics,
    batch: WindowBatch,
    inner_lr: float,
    steps: int = 1,
    first_order: bool = False,
    max_norm: float = 0.0,
    gain_lr: float = 0.0,
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
    for wide layers. The model's action gains, if any, step at ``gain_lr`` (they are a handful
    of numbers, adapted as they are); ``max_norm`` limits the step as :func:`inner_update`
    does. One scalar lr for the weights (not Meta-SGD).
    """
    layers = mlp_layers(model)
    gain = model.act_gain

    def one(po: Tensor, pa: Tensor, y_past: Tensor, fo: Tensor, fa: Tensor,
            y_fut: Tensor) -> Tensor:
        corrections, adapted_gain = lowrank_steps(
            layers, lambda g: model.net_inputs(po, pa, g), y_past, inner_lr, steps,
            first_order, max_norm=max_norm, gain=gain, gain_lr=gain_lr)
        out, _ = lowrank_forward(layers, model.net_inputs(fo, fa, adapted_gain), corrections,
                                 inner_lr)
        return ((out - y_fut) ** 2).mean()

    past, fut = batch.past, batch.future
    return torch.vmap(one)(past.obs, past.act, model.target(past),
                           fut.obs, fut.act, model.target(fut))


#: Per layer, the factors ``(G, H)`` of every SGD step taken (see :func:`lowrank_task_losses`).
Corrections = list[list[tuple[Tensor, Tensor]]]


def lowrank_forward(layers: list[nn.Linear], x: Tensor, corrections: Corrections,
                    inner_lr: float, eps: list[Tensor] | None = None
                    ) -> tuple[Tensor, list[Tensor]]:
    """The MLP output on ``x`` after the SGD steps in ``corrections`` (never forming the
    adapted weights), and every layer's input. ``eps`` perturbs each layer's pre-activations
    (the inner gradient is taken with respect to it)."""
    hs = []
    for i, lin in enumerate(layers):
        hs.append(x)
        z = torch.nn.functional.linear(x, lin.weight, lin.bias)
        for g, h in corrections[i]:
            z = z - inner_lr * ((x @ h.transpose(-1, -2) + 1.0) @ g)
        if eps is not None:
            z = z + eps[i]
        x = torch.relu(z) if i < len(layers) - 1 else z
    return x, hs


def lowrank_corrections(layers: list[nn.Linear], x_past: Tensor, y_past: Tensor,
                        inner_lr: float, steps: int = 1, first_order: bool = False,
                        mask: Tensor | None = None) -> Corrections:
    """``steps`` SGD steps on the normalised-Δ MSE of the past rows (``x_past``: network
    inputs, ``y_past``: targets), kept as per-layer factors ``(G, H)``: ``G`` the gradient of
    the inner loss at the layer's pre-activations, ``H`` its inputs. ``mask`` (``[M]``)
    takes the masked mean (:func:`~adaptive_control.learners.base.masked_mse`) instead."""
    return lowrank_steps(layers, lambda _g: x_past, y_past, inner_lr, steps, first_order,
                         mask)[0]


def lowrank_steps(layers: list[nn.Linear], inputs: Callable[[Tensor | None], Tensor],
                  y_past: Tensor, inner_lr: float, steps: int = 1, first_order: bool = False,
                  mask: Tensor | None = None, max_norm: float = 0.0,
                  gain: Tensor | None = None, gain_lr: float = 0.0
                  ) -> tuple[Corrections, Tensor | None]:
    """:func:`lowrank_corrections` with the network inputs built by ``inputs(gain)`` from
    action gains that step too (at ``gain_lr``; ``gain=None``: none), and the step's norm over
    every adapted parameter limited to ``max_norm`` (0: no limit) as :func:`inner_update`
    limits it. Returns the factors and the adapted gains.

    The norm comes from ``[M, M]`` Gram matrices, not the weights' gradients: the weight
    gradient ``Gᵀ H`` and the bias gradient ``1ᵀ G`` together have squared norm
    ``Σ (G Gᵀ) ⊙ (H Hᵀ + 1)``. A limited step keeps ``(s G, H)``, ``s`` the scale."""
    corrections: Corrections = [[] for _ in layers]
    zeros = [y_past.new_zeros(y_past.shape[0], lin.out_features) for lin in layers]
    for _ in range(steps):
        def inner(eps: list[Tensor], g: Tensor | None, corr: Corrections = corrections
                  ) -> tuple[Tensor, list[Tensor]]:
            out, hs = lowrank_forward(layers, inputs(g), corr, inner_lr, eps)
            return masked_mse(out, y_past, mask), hs

        if gain is None:
            gs, hs = torch.func.grad(inner, has_aux=True)(zeros, None)
            dgain = None
        else:
            (gs, dgain), hs = torch.func.grad(inner, argnums=(0, 1), has_aux=True)(zeros, gain)
        if first_order:
            gs = [g.detach() for g in gs]
            hs = [h.detach() for h in hs]
            dgain = dgain.detach() if dgain is not None else None
        if max_norm > 0:
            sq = sum(((g @ g.transpose(-1, -2)) * (h @ h.transpose(-1, -2) + 1.0)).sum()
                     for g, h in zip(gs, hs, strict=True))
            if dgain is not None:
                sq = sq + (dgain * dgain).sum()
            scale = clip_scale(sq, max_norm)
            gs = [g * scale for g in gs]
            dgain = dgain * scale if dgain is not None else None
        corrections = [c + [(g, h)] for c, g, h in zip(corrections, gs, hs, strict=True)]
        if gain is not None:
            gain = gain - gain_lr * dgain
    return corrections, gain


def mlp_layers(model: MLPDynamics) -> list[nn.Linear]:
    """The Linear layers of a Linear-ReLU-...-Linear net (what the low-rank form and the ONNX
    export assume)."""
    mods = list(model.net)
    ok = len(mods) % 2 == 1 and all(
        isinstance(m, nn.Linear) if i % 2 == 0 else isinstance(m, nn.ReLU)
        for i, m in enumerate(mods)
    )
    if not ok:
        raise ValueError("the low-rank form and the ONNX export need a Linear-ReLU-...-Linear "
                         f"dynamics MLP; got {[type(m).__name__ for m in mods]}")
    return [m for m in mods if isinstance(m, nn.Linear)]


def _lr_key(param_name: str) -> str:
    return param_name.replace(".", "__")
