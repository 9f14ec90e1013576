"""The torch modules that become ONNX graphs.

Everything here is written in plain tensor operations (MatMul, elementwise, Where, TopK...),
so ``torch.onnx.export`` sees no autograd and no recurrent-layer modules:

* :class:`MLPCore` — the dynamics MLP with its normaliser, and the inner SGD step of GrBAL /
  MB+DE with the backward pass of the masked MSE written out by hand (exporting
  ``torch.func.grad`` directly fails; see docs/export.md).
* :class:`RecurrentCore` — ReBAL's GRU/LSTM as explicit cell equations: a masked encoder
  over the recent window and the fixed-context step the planner uses.
* Graph modules (:class:`DynamicsGraph`, :class:`RecurrentStepGraph`,
  :class:`AdaptStepGraph`, :class:`EncodeGraph`, :class:`ControllerGraph`,
  :class:`RewardGraph`) whose ``forward`` takes the graph inputs positionally in the order of
  ``input_names``.

Weights are stored transposed (``[in, out]``) so every layer is one ``x @ W + b`` MatMul
without a per-call Transpose; the adapt_step outputs are transposed back to the PyTorch
``state_dict`` layout.

Mask semantics (all graphs taking ``recent_mask``): rows with mask 0 are ignored — replaced by
zeros before any arithmetic (so they may hold garbage, even NaN), excluded from the masked-mean
inner loss, and skipped by the recurrent encoder. With an all-zero mask the inner gradient is
exactly 0, so adaptation returns the prior θ* (GrBAL), the carried online weights (MB+DE) or
ReBAL's prior context (zero hidden state, dataset-mean previous Δ).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from adaptive_control.learners import MBDE, GrBAL, Learner, ReBAL, ReBALGains
from adaptive_control.models.dynamics import (
    ActuatorGainEncoder,
    MLPDynamics,
    RecurrentDynamics,
    actuator_features,
    fold_gain,
)
from adaptive_control.planning import cem, mppi, random_shooting, shift_plan
from export import contract as C

Params = list[tuple[Tensor, Tensor]]  # per layer (W transposed [in, out], b [out])


class LowRankParams:
    """θ plus SGD steps kept as factors: ``W' = W − Σ Hᵀ (lr·G)``, ``b' = b − Σ 1ᵀ (lr·G)``.

    One SGD step changes a layer by ``−lr · Hᵀ G`` (H: the layer's inputs, G: the loss
    gradients at its outputs, over the M window rows) — rank ≤ M. Applying it as
    ``x W − (x Hᵀ)(lr·G)`` keeps W the constant trained weight, which ONNX Runtime packs once
    at load instead of re-packing an adapted matrix in every planning MatMul; the extra work
    is two thin products with inner size M. Same idea as
    ``adaptive_control.learners.lowrank_task_losses``.
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

    def linear_t(self, i: int, g: Tensor) -> Tensor:
        """``g @ W'_iᵀ`` (the backward pass through layer i)."""
        out = torch.matmul(g, self.base[i][0].transpose(0, 1))
        for h, lg, _ in self.factors[i]:
            out = out - torch.matmul(torch.matmul(g, lg.transpose(0, 1)), h)
        return out

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


def _linear_t(params: AnyParams, i: int, g: Tensor) -> Tensor:
    if isinstance(params, LowRankParams):
        return params.linear_t(i, g)
    return torch.matmul(g, params[i][0].transpose(0, 1))


def _normalizer_copy(model: nn.Module) -> nn.Module:
    """The model's own ``Normalizer`` (buffers, float32): the graphs use its arithmetic."""
    return copy.deepcopy(model.normalizer).float()


def masked_rows(mask: Tensor, *xs: Tensor) -> tuple[Tensor, ...]:
    """Zero the rows whose mask is 0, so garbage (even NaN) there cannot leak into sums."""
    keep = (mask > 0).unsqueeze(-1)
    return tuple(torch.where(keep, x, torch.zeros_like(x)) for x in xs)


# --------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------


class MLPCore(nn.Module):
    """An :class:`MLPDynamics` as buffers, with an explicit forward and masked SGD step.

    ``inner_lr`` is a float or per-parameter tensors keyed like ``model.named_parameters()``
    (Meta-SGD); ``steps`` SGD steps are unrolled.
    """

    def __init__(self, model: MLPDynamics, inner_lr: float | Mapping[str, Tensor] = 0.0,
                 steps: int = 0) -> None:
        super().__init__()
        mods = list(model.net)
        ok = len(mods) % 2 == 1 and all(
            isinstance(m, nn.Linear) if i % 2 == 0 else isinstance(m, nn.ReLU)
            for i, m in enumerate(mods))
        if not ok:
            raise ValueError("export supports a Linear-ReLU-...-Linear dynamics MLP only; got "
                             f"{[type(m).__name__ for m in mods]}")
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
            gain_lr = inner_lr["act_gain"] if isinstance(inner_lr, Mapping) else inner_lr
            self.register_buffer("gain_lr", torch.as_tensor(gain_lr).detach().clone().float())
        linears = [m for m in mods if isinstance(m, nn.Linear)]
        self.n_layers = len(linears)
        for i, lin in enumerate(linears):
            self.register_buffer(f"w{i}", lin.weight.detach().t().contiguous().float())
            self.register_buffer(f"b{i}", lin.bias.detach().clone().float())
        self.normalizer = _normalizer_copy(model)
        self.steps = int(steps)
        self.scalar_lr: float | None = None
        if isinstance(inner_lr, Mapping):
            for i in range(self.n_layers):
                w_name, b_name = self.param_names[2 * i], self.param_names[2 * i + 1]
                self.register_buffer(f"lr_w{i}", inner_lr[w_name].detach().t().contiguous()
                                     .float())
                self.register_buffer(f"lr_b{i}", inner_lr[b_name].detach().clone().float())
        else:
            self.scalar_lr = float(inner_lr)

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
    def _layers(self, params: AnyParams, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Inputs and pre-activations of every layer (the backward pass needs both)."""
        hs, zs = [], []
        for i in range(self.n_layers):
            hs.append(x)
            z = _linear(params, i, x)
            zs.append(z)
            x = torch.relu(z) if i < self.n_layers - 1 else z
        return hs, zs

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
    def sgd(self, params: AnyParams, r_obs: Tensor, r_act: Tensor, r_next: Tensor,
            mask: Tensor, lowrank: bool = False) -> AnyParams:
        """``self.steps`` SGD steps on the masked-mean normalised-Δ MSE of the recent window.

        The loss is ``Σ_i mask_i Σ_j (f(x_i)_j − y_ij)² / (max(Σ mask, 1) · obs_dim)``: with an
        all-one mask exactly ``MLPDynamics.functional_loss`` (``F.mse_loss``), with an
        all-zero mask 0 (so the step returns ``params`` unchanged). Backward written out:
        ``dW_l = h_lᵀ g_l``, ``db_l = Σ g_l``, ``g_{l−1} = (g_l W_lᵀ) ⊙ [z_{l−1} > 0]``.
        ``lowrank`` (scalar learning rate only) returns :class:`LowRankParams`.
        """
        if lowrank and self.scalar_lr is None:
            raise ValueError("lowrank adaptation needs a scalar inner lr (not Meta-SGD)")
        if lowrank and not isinstance(params, LowRankParams):
            params = LowRankParams(list(params))
        r_obs, r_act, r_next = masked_rows(mask, r_obs, r_act, r_next)
        w = torch.where(mask > 0, mask, torch.zeros_like(mask))
        scale = 2.0 / (torch.clamp(w.sum(), min=1.0) * self.obs_dim)
        coef = (w * scale).unsqueeze(-1)  # [M, 1]: d loss / d pred = coef * (pred - y)
        gain = self.act_gain if self.has_gain else None
        x0 = self.inputs(r_obs, r_act)
        y = self.normalizer.norm_delta(r_next - r_obs)
        for _ in range(self.steps):
            if gain is not None:
                x0 = self.inputs(r_obs, r_act * gain)
            hs, zs = self._layers(params, x0)
            g = coef * (zs[-1] - y)
            gs: list[Tensor] = [g] * self.n_layers
            for i in reversed(range(self.n_layers)):
                gs[i] = g
                if i > 0:
                    g = _linear_t(params, i, g) * (zs[i - 1] > 0).to(g)
            if gain is not None:
                # d loss / d g_j = Σ_rows (d loss / d x)_{act j} · a_j / σ_j (reads old W0)
                gx = _linear_t(params, 0, gs[0])[:, self.obs_dim:]
                gain = gain - self.gain_lr * (gx * r_act / self.normalizer.act_std).sum(0)
            if isinstance(params, LowRankParams):
                assert self.scalar_lr is not None
                for i in range(self.n_layers):  # after the backward pass: it reads old W
                    lg = self.scalar_lr * gs[i]
                    params.factors[i].append((hs[i], lg, lg.sum(0)))
            else:
                params = [self._update(i, p, (torch.matmul(hs[i].transpose(0, 1), gs[i]),
                                              gs[i].sum(0)))
                          for i, p in enumerate(params)]
        if gain is not None:
            assert not isinstance(params, LowRankParams)
            return self.fold_gain(list(params), gain)
        return params

    def _update(self, i: int, p: tuple[Tensor, Tensor], g: tuple[Tensor, Tensor]
                ) -> tuple[Tensor, Tensor]:
        if self.scalar_lr is None:
            lr_w, lr_b = getattr(self, f"lr_w{i}"), getattr(self, f"lr_b{i}")
            return p[0] - lr_w * g[0], p[1] - lr_b * g[1]
        a = self.scalar_lr
        return p[0] - a * g[0], p[1] - a * g[1]


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


# --------------------------------------------------------------------------------------------
# Adapters: recent window (+ state) -> predictor
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]
    doc: str
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "doc": self.doc}


class Adapter(nn.Module):
    """Turns the recent window (and carried state) into a planner predictor."""

    mode: str

    def state_specs(self) -> list[TensorSpec]:
        """Carried state inputs (``state_in.*``; outputs ``state_out.*`` have equal shapes)."""
        return []

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        raise NotImplementedError


class MLPAdapter(Adapter):
    """``none`` (MB), ``reset`` (GrBAL: SGD from θ* each call) or ``online`` (MB+DE: SGD from
    θ* + carried Δθ, which is returned as the new state)."""

    def __init__(self, core: MLPCore, mode: str) -> None:
        super().__init__()
        if mode not in ("none", "reset", "online"):
            raise ValueError(f"MLPAdapter.mode={mode!r}: allowed none, reset, online")
        self.core, self.mode = core, mode

    def state_specs(self) -> list[TensorSpec]:
        if self.mode != "online":
            return []
        return [TensorSpec(C.STATE_IN_PREFIX + n, s,
                           "online change of this weight relative to the trained one; "
                           "zeros at reset")
                for n, s in zip(self.core.param_names, self.core.param_shapes, strict=True)]

    def adapted_params(self, recent: Sequence[Tensor], state: Sequence[Tensor],
                       lowrank: bool = False) -> AnyParams:
        """θ* adapted on the window. ``lowrank`` (GrBAL with a scalar inner lr) keeps the
        update as factors (for planning); otherwise the weights are materialised."""
        theta = self.core.theta()
        if self.mode == "none":
            return theta
        if self.mode == "online":
            delta = self.core.from_state_dict_layout(list(state))
            start = [(w + dw, b + db) for (w, b), (dw, db) in zip(theta, delta, strict=True)]
            return self.core.sgd(start, *recent)
        return self.core.sgd(self.core.raw_theta(), *recent,
                             lowrank=lowrank and self.core.scalar_lr is not None)

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        params = self.adapted_params(recent, state, lowrank=True)
        new_state: list[Tensor] = []
        if self.mode == "online":
            new_state = [p - t for p, t in zip(self.core.to_state_dict_layout(params),
                                               self.core.to_state_dict_layout(self.core.theta()),
                                               strict=True)]
        return MLPPredictorGraph(self.core, params), new_state


class RecurrentAdapter(Adapter):
    mode = "encode"

    def __init__(self, core: RecurrentCore) -> None:
        super().__init__()
        self.core = core

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        h, c, last = self.core.encode(*recent)
        return RecurrentPredictorGraph(self.core, h, c, last), []


class GainAdapter(Adapter):
    """ReBAL with action gains: encode the window into gains, fold them into the MLP."""

    mode = "encode_gains"

    def __init__(self, core: MLPCore, encoder: GainEncoderCore) -> None:
        super().__init__()
        self.core, self.encoder = core, encoder

    def adapt(self, recent: Sequence[Tensor], state: Sequence[Tensor]
              ) -> tuple[Any, list[Tensor]]:
        gains = self.encoder.encode(*recent)
        return MLPPredictorGraph(self.core, self.core.fold_gain(self.core.raw_theta(), gains)), []


def make_adapter(learner: Learner) -> Adapter:
    """The adapter of a trained learner (MB, MB+DE, GrBAL, ReBAL)."""
    if isinstance(learner, ReBAL):
        assert isinstance(learner.model, RecurrentDynamics)
        return RecurrentAdapter(RecurrentCore(learner.model))
    if isinstance(learner, ReBALGains):
        return GainAdapter(MLPCore(learner.model), GainEncoderCore(learner.encoder,
                                                                    learner.model))
    model = learner.model
    assert isinstance(model, MLPDynamics)
    if isinstance(learner, GrBAL):
        lr = learner.inner_lr()
        if isinstance(lr, dict):
            lr = {k: v.detach() for k, v in lr.items()}
        return MLPAdapter(MLPCore(model, lr, learner.config.inner_steps), "reset")
    if isinstance(learner, MBDE):
        return MLPAdapter(MLPCore(model, learner.config.online_lr, learner.config.online_steps),
                          "online")
    return MLPAdapter(MLPCore(model), "none")


# --------------------------------------------------------------------------------------------
# Graph modules (forward takes the inputs in the order of input_names)
# --------------------------------------------------------------------------------------------


class DynamicsGraph(nn.Module):
    """(obs [N, do], act [N, da]) -> next_obs [N, do] with θ* and the normaliser baked in."""

    def __init__(self, core: MLPCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.core.predict(self.core.theta(), obs, act)


class GainDynamicsGraph(nn.Module):
    """(obs [N, do], act [N, da], action_gains [da]) -> next_obs [N, do] (ReBAL gains)."""

    def __init__(self, core: MLPCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, obs: Tensor, act: Tensor, gains: Tensor) -> Tensor:
        return self.core.predict(self.core.fold_gain(self.core.raw_theta(), gains), obs, act)


class EncodeGainsGraph(nn.Module):
    """ReBAL with action gains: recent window -> action_gains [da]."""

    def __init__(self, encoder: GainEncoderCore) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, r_obs: Tensor, r_act: Tensor, r_next: Tensor, mask: Tensor) -> Tensor:
        return self.encoder.encode(r_obs, r_act, r_next, mask)


class RecurrentStepGraph(nn.Module):
    """ReBAL step: (obs, act, prev_delta, hidden[, cell]) -> (next_obs, next_hidden[, cell])."""

    def __init__(self, core: RecurrentCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, obs: Tensor, act: Tensor, prev_delta: Tensor, hidden: Tensor,
                *cell: Tensor) -> tuple[Tensor, ...]:
        nxt, h, c = self.core.step(obs, act, prev_delta, hidden, cell[0] if cell else None)
        return (nxt, h) if c is None else (nxt, h, c)


class AdaptStepGraph(nn.Module):
    """Recent window [+ state_in.*] -> adapted.* (state_dict layout) [+ state_out.*]."""

    def __init__(self, adapter: MLPAdapter) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        recent, state = args[:4], args[4:]
        params = self.adapter.adapted_params(recent, state)
        flat = self.adapter.core.to_state_dict_layout(params)
        if self.adapter.mode != "online":
            return tuple(flat)
        theta = self.adapter.core.to_state_dict_layout(self.adapter.core.theta())
        return (*flat, *(p - t for p, t in zip(flat, theta, strict=True)))


class EncodeGraph(nn.Module):
    """ReBAL: recent window -> context_hidden [H] (, context_cell [H]), last_delta [do]."""

    def __init__(self, core: RecurrentCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, r_obs: Tensor, r_act: Tensor, r_next: Tensor,
                mask: Tensor) -> tuple[Tensor, ...]:
        h, c, last = self.core.encode(r_obs, r_act, r_next, mask)
        return (h, last) if c is None else (h, c, last)


@dataclass(frozen=True)
class PlannerSpec:
    """A planner as the graph runs it: name and its validated config dataclass."""

    name: str
    config: Any

    @property
    def warm_start(self) -> bool:
        return bool(getattr(self.config, "warm_start", False))

    def noise_shape(self, act_dim: int) -> tuple[int, ...]:
        c = self.config
        base = (c.num_candidates, c.horizon, act_dim)
        return (c.num_iterations, *base) if self.name == "cem" else base

    @property
    def noise_distribution(self) -> str:
        return "uniform" if self.name == "random_shooting" else "normal"


class RewardGraph(nn.Module):
    """(obs, act, next_obs) -> reward: the task reward alone, for runtimes that need it
    outside a controller (a recurrent policy reads the previous step's reward).

    ``reward`` is the :class:`sims.rewards.TaskReward` the environment and the planners use,
    traced as it is, so the graph cannot drift from the simulator's arithmetic.
    """

    def __init__(self, reward: Any) -> None:
        super().__init__()
        self.reward = reward

    def forward(self, obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
        return self.reward(obs, act, next_obs)


class ControllerGraph(nn.Module):
    """The whole adapt-and-plan step.

    Inputs: recent_obs, recent_act, recent_next_obs, recent_mask, obs, noise, [prev_plan],
    [state_in.*]. Outputs: action [da], plan [H, da], [state_out.*]. ``prev_plan`` is the
    ``plan`` output of the previous call; the graph shifts it by one step itself (the
    ``warm_start_fill`` rule), as the torch planners do with their ``last_plan``.
    """

    def __init__(self, adapter: Adapter, planner: PlannerSpec, reward: Any,
                 low: Tensor, high: Tensor) -> None:
        super().__init__()
        self.adapter, self.planner, self.reward = adapter, planner, reward
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32).clone())
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32).clone())
        self.n_state = len(adapter.state_specs())

    @property
    def has_prev_plan(self) -> bool:
        return self.planner.warm_start

    def input_names(self) -> list[str]:
        names = [*C.RECENT_INPUTS, C.OBS, C.NOISE]
        if self.has_prev_plan:
            names.append(C.PREV_PLAN)
        return names + [s.name for s in self.adapter.state_specs()]

    def output_names(self) -> list[str]:
        return [C.ACTION, C.PLAN] + [C.STATE_OUT_PREFIX + s.name[len(C.STATE_IN_PREFIX):]
                                     for s in self.adapter.state_specs()]

    def prior_plan(self, prev_plan: Tensor | None, horizon: int) -> Tensor:
        """The planners' ``_prior``: the shifted previous plan, or the bounds' midpoint."""
        mid = (self.low + self.high) / 2
        if prev_plan is None:
            return mid.unsqueeze(0).expand(horizon, mid.shape[0])
        fill = None if getattr(self.planner.config, "warm_start_fill", "last") == "last" else mid
        return shift_plan(prev_plan, fill)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        recent, obs, noise = args[:4], args[4], args[5]
        rest = args[6:]
        prev_plan = rest[0] if self.has_prev_plan else None
        state = rest[1:] if self.has_prev_plan else rest
        predictor, new_state = self.adapter.adapt(recent, state)
        plan = plan_with(self.planner, predictor, self.reward, obs, noise, self.low, self.high,
                         self.prior_plan(prev_plan, self.planner.config.horizon))
        return (plan[0], plan, *new_state)


def plan_with(planner: PlannerSpec, predictor: Any, reward: Any, obs: Tensor, noise: Tensor,
              lo: Tensor, hi: Tensor, prior: Tensor) -> Tensor:
    """Run the planner's pure function as its stateful class does; returns the plan [H, da]."""
    cfg = planner.config
    if planner.name == "random_shooting":
        best, _ = random_shooting(predictor, reward, obs, noise, lo, hi, cfg.discount)
        return best
    if planner.name == "cem":
        init_std = cfg.init_std * (hi - lo) / 2
        return cem(predictor, reward, obs, noise, lo, hi, prior, init_std, cfg.elite_frac,
                   cfg.alpha, cfg.discount)
    if planner.name == "mppi":
        sigma = cfg.noise_sigma * (hi - lo) / 2
        return mppi(predictor, reward, obs, noise, prior, lo, hi, sigma, cfg.lambda_, cfg.beta,
                    cfg.discount)
    raise ValueError(f"planner={planner.name!r} is unknown: allowed {', '.join(C.PLANNER_NAMES)}")
