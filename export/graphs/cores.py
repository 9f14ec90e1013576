"""The model cores the graphs are built from: the trained networks as buffers with explicit
forwards, and their adaptation.

* :class:`MLPCore` — the dynamics MLP with its normaliser, weights stored transposed
  (``[in, out]``) so every layer is one ``x @ W + b`` MatMul without a per-call Transpose. Its
  SGD step is the learners' own (:func:`adaptive_control.learners.inner_update`, or GrBAL's
  low-rank factors from :func:`adaptive_control.learners.lowrank_steps`), recorded with
  ``make_fx`` for the window length: ``torch.onnx.export`` cannot trace ``torch.func.grad``
  itself, but it exports the recorded plain tensor operations.
* :class:`RecurrentCore` — ReBAL's GRU/LSTM as explicit cell equations: a masked encoder over
  the recent window and the fixed-context step the planner uses; :class:`GainEncoderCore` —
  ReBAL's motor-shared gain encoder, likewise.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.fx.experimental.proxy_tensor import make_fx

from adaptive_control.learners import (
    inner_update,
    lowrank_steps,
    masked_rows,
    mlp_layers,
)
from adaptive_control.models.dynamics import (
    ActuatorGainEncoder,
    MLPDynamics,
    RecurrentDynamics,
    actuator_features,
    fold_gain,
)
from adaptive_control.types import Transitions

Params = list[tuple[Tensor, Tensor]]  # per layer (W transposed [in, out], b [out])


class LowRankParams:
    """θ plus SGD steps kept as factors: ``W' = W − Σ Hᵀ (lr·G)``, ``b' = b − Σ 1ᵀ (lr·G)``.

    One SGD step changes a layer by ``−lr · Hᵀ G`` (H: the layer's inputs, G: the loss
    gradients at its outputs, over the M window rows) — rank ≤ M. Applying it as
    ``x W − (x Hᵀ)(lr·G)`` keeps W the constant trained weight, which ONNX Runtime packs once
    at load instead of re-packing an adapted matrix in every planning MatMul; the extra work
    is two thin products with inner size M. Same idea as
    ``adaptive_control.learners.lowrank_task_losses``, whose
    :func:`~adaptive_control.learners.lowrank_steps` computes the factors.
    """

    def __init__(self, base: Params) -> None:
        self.base = base
        # per layer: (H [M, in], lr·G [M, out], Σ_rows lr·G [out])
        self.factors: list[list[tuple[Tensor, Tensor, Tensor]]] = [[] for _ in base]

    def linear(self, i: int, x: Tensor) -> Tensor:
        w_t, b = self.base[i]
        fs = self.factors[i]
        if not fs:
            return torch.matmul(x, w_t) + b
        for _, _, lg_sum in fs:  # bias updates are cheap and the same for every row
            b = b - lg_sum
        # addmm: one Gemm (C + A·B) per term instead of MatMul, Add and Sub nodes
        z = torch.addmm(b, x, w_t) if x.dim() == 2 else torch.matmul(x, w_t) + b
        for h, lg, _ in fs:
            xh = torch.matmul(x, h.transpose(0, 1))
            z = (torch.addmm(z, xh, lg, alpha=-1.0) if x.dim() == 2
                 else z - torch.matmul(xh, lg))
        return z

    def dense(self) -> Params:
        out = []
        for (w_t, b), fs in zip(self.base, self.factors, strict=True):
            for h, lg, lg_sum in fs:
                w_t = w_t - torch.matmul(h.transpose(0, 1), lg)
                b = b - lg_sum
            out.append((w_t, b))
        return out


AnyParams = Params | LowRankParams


def _dense(params: AnyParams) -> Params:
    return params.dense() if isinstance(params, LowRankParams) else params


def _linear(params: AnyParams, i: int, x: Tensor) -> Tensor:
    if isinstance(params, LowRankParams):
        return params.linear(i, x)
    w_t, b = params[i]
    return torch.matmul(x, w_t) + b



def _normalizer_copy(model: nn.Module) -> nn.Module:
    """The model's own ``Normalizer`` (buffers, float32): the graphs use its arithmetic."""
    return copy.deepcopy(model.normalizer).float()


class MLPCore(nn.Module):
    """An :class:`MLPDynamics` as buffers, with an explicit forward and its masked SGD step.

    ``inner_lr`` is a float or per-parameter tensors keyed like ``model.named_parameters()``
    (Meta-SGD, or a separate action-gain rate); ``steps`` SGD steps are unrolled. The step is
    :func:`~adaptive_control.learners.inner_update` on the masked window loss, run on a
    float copy of the model; :meth:`trace` records it for a fixed window length, which the
    ONNX export needs (until then it runs eagerly).
    """

    def __init__(self, model: MLPDynamics, inner_lr: float | Mapping[str, Tensor] = 0.0,
                 steps: int = 0, max_norm: float = 0.0) -> None:
        super().__init__()
        linears = mlp_layers(model)
        self.obs_dim, self.act_dim = model.obs_dim, model.act_dim
        named = [(k, p) for k, p in model.named_parameters() if k.startswith("net.")]
        self.param_names = [k for k, _ in named]
        self.param_shapes = [tuple(p.shape) for _, p in named]
        # Action gains (GrBALConfig.action_gains) are adapted alongside the weights and then
        # folded into the first layer, so the planner's rollout graph stays a plain MLP.
        self.has_gain = model.act_gain is not None
        if self.has_gain:
            assert model.act_gain is not None
            self.register_buffer("act_gain", model.act_gain.detach().clone().float())
        self.n_layers = len(linears)
        for i, lin in enumerate(linears):
            self.register_buffer(f"w{i}", lin.weight.detach().t().contiguous().float())
            self.register_buffer(f"b{i}", lin.bias.detach().clone().float())
        self.normalizer = _normalizer_copy(model)
        self.steps = int(steps)
        self.max_norm = float(max_norm)
        self.inner_lr: float | dict[str, Tensor] = (
            {k: v.detach().clone().float() for k, v in inner_lr.items()}
            if isinstance(inner_lr, Mapping) else float(inner_lr))
        self.scalar_lr = _net_lr(inner_lr)
        # The learners' functional code runs on this copy. A tuple, so it is no submodule:
        # the recorded steps hold what they read as constants.
        self._fn: tuple[MLPDynamics] = (copy.deepcopy(model).float().requires_grad_(False),)
        self.recorded = nn.ModuleDict()

    # ------------------------------------------------------------------ parameters
    def raw_theta(self) -> Params:
        """The trained network weights θ* (without the action gains folded in)."""
        return [(getattr(self, f"w{i}"), getattr(self, f"b{i}")) for i in range(self.n_layers)]

    def theta(self) -> Params:
        """The trained model θ* as a plain MLP (action gains, if any, folded in)."""
        raw = self.raw_theta()
        return self.fold_gain(raw, self.act_gain) if self.has_gain else raw

    def fold_gain(self, params: Params, gain: Tensor) -> Params:
        """The plain MLP equal to ``params`` behind the action gains ``gain``
        (:func:`adaptive_control.models.dynamics.fold_gain` on the first layer)."""
        (w0, b0), rest = params[0], list(params[1:])
        w_act, b0 = fold_gain(w0[self.obs_dim:], b0, gain, self.normalizer)
        return [(torch.cat([w0[:self.obs_dim], w_act], dim=0), b0)] + rest

    def to_state_dict_layout(self, params: AnyParams) -> list[Tensor]:
        """Params in ``named_parameters`` order and PyTorch layout (weights ``[out, in]``)."""
        out: list[Tensor] = []
        for w_t, b in _dense(params):
            out += [w_t.transpose(0, 1), b]
        return out

    def from_state_dict_layout(self, tensors: Sequence[Tensor]) -> Params:
        return [(tensors[2 * i].transpose(0, 1), tensors[2 * i + 1])
                for i in range(self.n_layers)]

    # ------------------------------------------------------------------ forward
    def inputs(self, obs: Tensor, act: Tensor) -> Tensor:
        return torch.cat([self.normalizer.norm_obs(obs), self.normalizer.norm_act(act)], dim=-1)

    def predict(self, params: AnyParams, obs: Tensor, act: Tensor) -> Tensor:
        """Next observation ``[N, obs_dim]`` (``MLPDynamics.functional_forward``)."""
        x = self.inputs(obs, act)
        for i in range(self.n_layers):
            x = _linear(params, i, x)
            if i < self.n_layers - 1:
                x = torch.relu(x)
        return obs + self.normalizer.denorm_delta(x)

    # ------------------------------------------------------------------ adaptation
    def _dense_step(self, recent: Sequence[Tensor], delta: Sequence[Tensor]
                    ) -> tuple[Tensor, ...]:
        """The SGD steps from θ* (plus ``delta``, the carried change of the ``net.*`` weights
        in ``state_dict`` layout): the ``net.*`` weights, then the action gains if any."""
        model = self._fn[0]
        start = {k: v.detach() for k, v in model.named_parameters()}
        for k, d in zip(self.param_names, delta, strict=False):
            start[k] = start[k] + d
        r_obs, r_act, r_next, mask = recent
        out = inner_update(model, start, Transitions(r_obs, r_act, r_next), self.inner_lr,
                           self.steps, create_graph=False, mask=mask, max_norm=self.max_norm)
        return (*(out[k] for k in self.param_names), *(out[k] for k in out if k == "act_gain"))

    def _lowrank_step(self, recent: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """The same steps from θ* as factors: (G, H) per step, per layer, flattened. The
        gains step with the weights (later steps' factors see the moved gains) and the norm
        limit scales each step's G as it scales the dense gradient (``lowrank_steps``)."""
        model = self._fn[0]
        r_obs, r_act, r_next, mask = recent
        past = Transitions(*masked_rows(mask, r_obs, r_act, r_next))
        assert self.scalar_lr is not None
        gain = model.act_gain.detach() if self.has_gain else None
        gain_lr = (self.inner_lr["act_gain"] if isinstance(self.inner_lr, Mapping)
                   and "act_gain" in self.inner_lr else self.scalar_lr)
        corrections, _ = lowrank_steps(
            mlp_layers(model),
            lambda g: model.net_inputs(past.obs, past.act, g),
            model.target(past), self.scalar_lr, self.steps, first_order=True, mask=mask,
            max_norm=self.max_norm, gain=gain, gain_lr=gain_lr)
        return tuple(t for layer in corrections for gh in layer for t in gh)

    @property
    def lowrank_exact(self) -> bool:
        """Whether the factored form equals the SGD steps: one step size for the ``net.*``
        weights (Meta-SGD's per-element rates make the update full-rank)."""
        return self.scalar_lr is not None

    def factored(self, i: int, rank: int) -> bool:
        """Whether layer ``i`` keeps θ* plus factors when planning: only where both sides are
        wider than twice the update's rank (a thin layer is cheaper dense: its factors cost
        about what its product does), and never the first layer behind adapted action gains
        (the gains are folded into its weights)."""
        w_t, _ = self.raw_theta()[i]
        return min(w_t.shape) > 2 * rank and not (i == 0 and self.has_gain)

    def trace(self, window: int, carried: bool, lowrank: bool) -> None:
        """Record the SGD step for ``window`` rows with ``make_fx`` (``carried``: it starts
        from θ* plus a carried change; ``lowrank``: also the factored form)."""
        recent = [torch.zeros(window, self.obs_dim), torch.zeros(window, self.act_dim),
                  torch.zeros(window, self.obs_dim), torch.ones(window)]
        delta = [torch.zeros(s) for s in self.param_shapes] if carried else []
        # make_fx counts a bound method's ``self`` as an input: trace plain functions
        self.recorded["dense"] = make_fx(lambda r, d: self._dense_step(r, d))(recent, delta)
        if lowrank:
            self.recorded["lowrank"] = make_fx(lambda r: self._lowrank_step(r))(recent)

    def sgd(self, recent: Sequence[Tensor], delta: Sequence[Tensor] = (),
            lowrank: bool = False) -> AnyParams:
        """``self.steps`` SGD steps on the masked-mean normalised-Δ MSE of the recent window
        (:func:`adaptive_control.learners.window_loss`; all-zero mask: no change), from θ*
        plus ``delta``; the adapted gains, if any, folded in. ``lowrank`` (where
        :attr:`lowrank_exact`, no carried change) returns :class:`LowRankParams`: θ* plus
        factors for the wide layers, the adapted weights for the thin ones
        (:meth:`factored`)."""
        step = self.recorded["dense"] if "dense" in self.recorded else self._dense_step
        out = list(step(list(recent), list(delta)))
        dense = self.from_state_dict_layout(out[:2 * self.n_layers])
        if self.has_gain:
            dense = self.fold_gain(dense, out[-1])
        if not lowrank:
            return dense
        if not self.lowrank_exact or delta:
            raise ValueError("lowrank adaptation needs one inner lr for the net weights (not "
                             "Meta-SGD) and no carried change")
        assert self.scalar_lr is not None
        step = self.recorded["lowrank"] if "lowrank" in self.recorded else self._lowrank_step
        flat = list(step(list(recent)))
        params = LowRankParams(self.raw_theta())
        rank = recent[0].shape[0] * self.steps
        for i in range(self.n_layers):
            if not self.factored(i, rank):
                params.base[i] = dense[i]
                continue
            for s in range(self.steps):
                k = 2 * (i * self.steps + s)
                lg = self.scalar_lr * flat[k]
                params.factors[i].append((flat[k + 1], lg, lg.sum(0)))
        return params


def _net_lr(inner_lr: float | Mapping[str, Tensor]) -> float | None:
    """The one SGD step size of the ``net.*`` weights, or None when they have several
    (Meta-SGD's per-element rates)."""
    if not isinstance(inner_lr, Mapping):
        return float(inner_lr)
    rates = [v for k, v in inner_lr.items() if k.startswith("net.")]
    if not rates or any(v.numel() != 1 for v in rates):
        return None
    values = {float(v) for v in rates}
    return values.pop() if len(values) == 1 else None


class MLPPredictorGraph:
    """Planner-facing predictor (``adaptive_control.types.Predictor``) over fixed params."""

    def __init__(self, core: MLPCore, params: AnyParams) -> None:
        self.core, self.params = core, params

    def initial_state(self, batch_size: int) -> None:
        return None

    def __call__(self, obs: Tensor, act: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.core.predict(self.params, obs, act), state


# --------------------------------------------------------------------------------------------
# Recurrent (ReBAL)
# --------------------------------------------------------------------------------------------


def gru_cell(gx: Tensor, gh: Tensor, h: Tensor, hs: int) -> Tensor:
    """PyTorch's GRU update from input gates ``gx`` and hidden gates ``gh`` (order r, z, n)."""
    r = torch.sigmoid(gx[..., :hs] + gh[..., :hs])
    z = torch.sigmoid(gx[..., hs:2 * hs] + gh[..., hs:2 * hs])
    n = torch.tanh(gx[..., 2 * hs:] + r * gh[..., 2 * hs:])
    return (1.0 - z) * n + z * h


class RecurrentCore(nn.Module):
    """ReBAL's RNN as explicit GRU/LSTM cell equations (PyTorch's gate order and formulas).

    GRU: r, z = σ(x W_ir + b_ir + h W_hr + b_hr), σ(...); n = tanh(x W_in + b_in +
    r ⊙ (h W_hn + b_hn)); h' = (1 − z) ⊙ n + z ⊙ h. LSTM gates i, f, g, o:
    c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').
    """

    def __init__(self, model: RecurrentDynamics) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = model.obs_dim, model.act_dim
        self.hidden_size, self.cell = model.hidden_size, model.cell
        rnn = model.rnn
        w_ih = rnn.weight_ih_l0.detach().t().contiguous().float()  # [in, G·H]
        n_x = self.obs_dim + self.act_dim
        # Split the input weights: (obs, act) part and the previous-Δ part, so the encoder can
        # compute the (obs, act) contribution for all M rows in one MatMul.
        self.register_buffer("w_x", w_ih[:n_x].contiguous())
        self.register_buffer("w_d", w_ih[n_x:].contiguous())
        self.register_buffer("b_ih", rnn.bias_ih_l0.detach().clone().float())
        self.register_buffer("w_hh", rnn.weight_hh_l0.detach().t().contiguous().float())
        self.register_buffer("b_hh", rnn.bias_hh_l0.detach().clone().float())
        self.register_buffer("w_head", model.head.weight.detach().t().contiguous().float())
        self.register_buffer("b_head", model.head.bias.detach().clone().float())
        self.normalizer = _normalizer_copy(model)

    @property
    def is_lstm(self) -> bool:
        return self.cell == "lstm"

    def _cell(self, gx: Tensor, gh: Tensor, h: Tensor, c: Tensor | None
              ) -> tuple[Tensor, Tensor | None]:
        hs = self.hidden_size
        if not self.is_lstm:
            return gru_cell(gx, gh, h, hs), None
        g = gx + gh
        i = torch.sigmoid(g[..., :hs])
        f = torch.sigmoid(g[..., hs:2 * hs])
        gg = torch.tanh(g[..., 2 * hs:3 * hs])
        o = torch.sigmoid(g[..., 3 * hs:])
        assert c is not None
        c2 = f * c + i * gg
        return o * torch.tanh(c2), c2

    def _gx(self, obs: Tensor, act: Tensor, prev_delta_n: Tensor) -> Tensor:
        x = torch.cat([self.normalizer.norm_obs(obs), self.normalizer.norm_act(act)], dim=-1)
        return torch.matmul(x, self.w_x) + torch.matmul(prev_delta_n, self.w_d) + self.b_ih

    def hidden_gates(self, h: Tensor) -> Tensor:
        return torch.matmul(h, self.w_hh) + self.b_hh

    def step(self, obs: Tensor, act: Tensor, prev_delta: Tensor, h: Tensor,
             c: Tensor | None, gh: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """One step (``RecurrentDynamics.step``): (next_obs, h', c'). ``h``/``c`` broadcast."""
        gx = self._gx(obs, act, self.normalizer.norm_delta(prev_delta))
        h2, c2 = self._cell(gx, self.hidden_gates(h) if gh is None else gh, h, c)
        next_obs = obs + self.normalizer.denorm_delta(torch.matmul(h2, self.w_head) + self.b_head)
        return next_obs, h2, c2

    def encode(self, r_obs: Tensor, r_act: Tensor, r_next: Tensor, mask: Tensor
               ) -> tuple[Tensor, Tensor | None, Tensor]:
        """Masked ``RecurrentDynamics.encode`` over ``[M, ·]`` rows, oldest first.

        Masked rows leave h, c and the previous Δ unchanged, so the result equals encoding
        only the valid rows. Returns (h ``[H]``, c ``[H]`` or None, last valid Δ ``[obs]`` in
        raw units — the dataset-mean Δ when no row is valid, as ``ReBAL.prior``).
        """
        r_obs, r_act, r_next = masked_rows(mask, r_obs, r_act, r_next)
        m = r_obs.shape[0]
        delta = r_next - r_obs
        delta_n = self.normalizer.norm_delta(delta)
        n = self.normalizer
        gx_all = torch.matmul(torch.cat([n.norm_obs(r_obs), n.norm_act(r_act)], -1),
                              self.w_x) + self.b_ih  # [M, G·H]
        valid = (mask > 0).unsqueeze(-1)  # [M, 1]
        h = torch.zeros(1, self.hidden_size, dtype=r_obs.dtype)
        c = torch.zeros_like(h) if self.is_lstm else None
        prev_n = torch.zeros(1, self.obs_dim, dtype=r_obs.dtype)  # normalised Δ of the first step
        last = self.normalizer.delta_mean.unsqueeze(0)
        for t in range(m):  # static window length: unrolled
            v = valid[t:t + 1]
            gx = gx_all[t:t + 1] + torch.matmul(prev_n, self.w_d)
            h2, c2 = self._cell(gx, self.hidden_gates(h), h, c)
            h = torch.where(v, h2, h)
            if c is not None:
                assert c2 is not None
                c = torch.where(v, c2, c)
            prev_n = torch.where(v, delta_n[t:t + 1], prev_n)
            last = torch.where(v, delta[t:t + 1], last)
        return h[0], (c[0] if c is not None else None), last[0]


class GainEncoderCore(nn.Module):
    """ReBAL's action-gain encoder (:class:`ActuatorGainEncoder`) as explicit, masked GRU
    equations: the recent window -> one command gain per motor (1 for every motor when no row
    is valid, as ``ReBALGains.prior``)."""

    def __init__(self, encoder: ActuatorGainEncoder, model: MLPDynamics) -> None:
        super().__init__()
        rnn = encoder.rnn
        self.hidden_size = encoder.hidden_size
        self.register_buffer("velocity_index", encoder.velocity_index.clone())
        self.register_buffer("w_ih", rnn.weight_ih_l0.detach().t().contiguous().float())
        self.register_buffer("b_ih", rnn.bias_ih_l0.detach().clone().float())
        self.register_buffer("w_hh", rnn.weight_hh_l0.detach().t().contiguous().float())
        self.register_buffer("b_hh", rnn.bias_hh_l0.detach().clone().float())
        self.register_buffer("w_head", encoder.head.weight.detach().t().contiguous().float())
        self.register_buffer("b_head", encoder.head.bias.detach().clone().float())
        self.normalizer = _normalizer_copy(model)

    def encode(self, r_obs: Tensor, r_act: Tensor, r_next: Tensor, mask: Tensor) -> Tensor:
        """Gains ``[act_dim]``; masked rows leave every motor's hidden state unchanged."""
        r_obs, r_act, r_next = masked_rows(mask, r_obs, r_act, r_next)
        x = actuator_features(r_obs, r_act, r_next, self.velocity_index, self.normalizer)
        gx_all = torch.matmul(x, self.w_ih) + self.b_ih  # [M, A, 3H]
        valid = (mask > 0).reshape(-1, 1, 1)
        h = torch.zeros(x.shape[1], self.hidden_size, dtype=r_obs.dtype)
        for t in range(x.shape[0]):  # static window length: unrolled
            h2 = gru_cell(gx_all[t], torch.matmul(h, self.w_hh) + self.b_hh, h, self.hidden_size)
            h = torch.where(valid[t], h2, h)
        gains = 1.0 + (torch.matmul(h, self.w_head) + self.b_head)[:, 0]
        return torch.where((mask > 0).any(), gains, torch.ones_like(gains))


class RecurrentPredictorGraph:
    """Fixed-context planning (``learners.RecurrentPredictor``): every step is one cell step
    from the same context; the hidden-state gates are computed once for all candidates."""

    def __init__(self, core: RecurrentCore, h: Tensor, c: Tensor | None,
                 last_delta: Tensor) -> None:
        self.core = core
        self.h = h.unsqueeze(0)
        self.c = c.unsqueeze(0) if c is not None else None
        self.gh = core.hidden_gates(self.h)
        self.last_delta = last_delta

    def initial_state(self, batch_size: int) -> Tensor:
        return self.last_delta.unsqueeze(0).expand(batch_size, self.last_delta.shape[0])

    def __call__(self, obs: Tensor, act: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        nxt, _, _ = self.core.step(obs, act, state, self.h, self.c, self.gh)
        return nxt, nxt - obs


