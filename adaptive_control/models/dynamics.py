"""Dynamics models: a feed-forward MLP (MB, MB+DE, GrBAL) and a recurrent model (ReBAL).

Both predict the z-scored state change Δs = s' − s (Nagabandi, Clavera et al., ICLR 2019) and
carry their :class:`~adaptive_control.models.normalizer.Normalizer` as a submodule of buffers.
Weights are initialised from an explicit seed (PyTorch's default layer init, drawn from a
private ``torch.Generator``), so construction never touches the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from adaptive_control.models.normalizer import Normalizer
from adaptive_control.types import Transitions, WindowBatch

#: A recurrent hidden state: ``h`` for a GRU, ``(h, c)`` for an LSTM, each ``[..., hidden]``.
Hidden = Tensor | tuple[Tensor, Tensor]


def _linear(n_in: int, n_out: int) -> nn.Linear:
    """An uninitialised Linear (no global-RNG draw); callers initialise it with a seed."""
    return nn.utils.skip_init(nn.Linear, n_in, n_out)


def _init_linear_(layer: nn.Linear, gen: torch.Generator) -> None:
    """PyTorch's default ``nn.Linear`` init, but from ``gen`` instead of the global RNG."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
    if layer.bias is not None:
        bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
        nn.init.uniform_(layer.bias, -bound, bound, generator=gen)


class MLPDynamics(nn.Module):
    """ReLU MLP on concat(norm obs, norm act) -> normalised Δs.

    Parameters live under ``net.`` (the normaliser holds buffers), plus ``act_gain`` when
    ``action_gain`` is set, so the dict from :meth:`params` is exactly what
    :meth:`functional_forward` / :meth:`functional_loss` take.

    ``action_gain``: one gain per actuator multiplies the command before the network
    (``a' = g ⊙ a``, g initialised to 1). A dead, weak or reversed motor is exactly a change of
    its gain, so adapting these few numbers identifies actuator faults the training
    distribution never showed for that motor: the gradient with respect to g_j is computed
    the same way for every actuator, while the network's weights for one never-failed motor
    have nothing to generalise from.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (512, 512, 512),
        normalizer: Normalizer | None = None,
        seed: int = 0,
        action_gain: bool = False,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.normalizer = _check_normalizer(normalizer, obs_dim, act_dim)
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        width = obs_dim + act_dim
        for h in self.hidden_sizes:
            layers += [_linear(width, h), nn.ReLU()]
            width = h
        layers.append(_linear(width, obs_dim))
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                _init_linear_(m, gen)
        self.act_gain: nn.Parameter | None = (
            nn.Parameter(torch.ones(act_dim)) if action_gain else None)

    @property
    def has_action_gain(self) -> bool:
        return self.act_gain is not None

    def params(self) -> dict[str, Tensor]:
        """The trainable parameters by name (the keys the functional methods expect)."""
        return dict(self.named_parameters())

    def net_inputs(self, obs: Tensor, act: Tensor, act_gain: Tensor | None = None) -> Tensor:
        if act_gain is not None:
            act = act * act_gain
        return torch.cat([self.normalizer.norm_obs(obs), self.normalizer.norm_act(act)], dim=-1)

    def forward_norm_delta(self, obs: Tensor, act: Tensor) -> Tensor:
        """Network output: predicted normalised Δs, ``[..., obs_dim]``."""
        return self.net(self.net_inputs(obs, act, self.act_gain))

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        """Predicted next observation (denormalised), ``[..., obs_dim]``."""
        return obs + self.normalizer.denorm_delta(self.forward_norm_delta(obs, act))

    def loss(self, t: Transitions) -> Tensor:
        """MSE between predicted and true Δs in normalised space, averaged over everything."""
        return F.mse_loss(self.forward_norm_delta(t.obs, t.act), self.target(t))

    def target(self, t: Transitions) -> Tensor:
        return self.normalizer.norm_delta(t.next_obs - t.obs)

    # --- functional path (torch.func) -------------------------------------------------------
    def _functional_norm_delta(self, params: Mapping[str, Tensor], obs: Tensor,
                               act: Tensor) -> Tensor:
        # Call the inner Sequential so that the normaliser buffers are used as-is; strict=True
        # so that a misspelt or missing key fails loudly instead of falling back to θ.
        net_params = {k[4:]: v for k, v in params.items() if k.startswith("net.")}
        gain = params.get("act_gain") if self.has_action_gain else None
        if len(net_params) + (gain is not None) != len(params) or (
                self.has_action_gain and gain is None):
            extra = sorted(k for k in params if not k.startswith("net."))
            raise KeyError(f"MLPDynamics: unexpected parameter names {extra} (action_gain="
                           f"{self.has_action_gain})")
        return functional_call(self.net, net_params, (self.net_inputs(obs, act, gain),),
                               strict=True)

    def fold_action_gain(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The ``net.*`` weights of the plain MLP equal to ``params`` (the gains folded into
        the first layer by :func:`fold_gain`)."""
        out = {k: v for k, v in params.items() if k.startswith("net.")}
        if not self.has_action_gain:
            return out
        first = next(k[:-len(".weight")] for k in out if k.endswith(".weight"))
        w, b = out[first + ".weight"], out[first + ".bias"]
        w_act, out[first + ".bias"] = fold_gain(w[:, self.obs_dim:].t(), b, params["act_gain"],
                                                self.normalizer)
        out[first + ".weight"] = torch.cat([w[:, :self.obs_dim], w_act.t()], dim=1)
        return out

    def functional_forward(self, params: Mapping[str, Tensor], obs: Tensor,
                           act: Tensor) -> Tensor:
        """:meth:`forward` with the weights taken from ``params`` (names as in :meth:`params`)."""
        return obs + self.normalizer.denorm_delta(self._functional_norm_delta(params, obs, act))

    def functional_loss(self, params: Mapping[str, Tensor], t: Transitions,
                        rollout_steps: int = 1) -> Tensor:
        """:meth:`loss` with the weights taken from ``params``; usable under grad/vmap.

        ``rollout_steps`` > 1 scores open-loop predictions instead, as the planner uses them:
        the time axis (−2) is cut into chunks of that many transitions (a remainder shorter
        than a chunk is left out) and the model rolls through each chunk from its first true
        state on its own predictions. Every prediction's error is measured in normalised-Δ
        units ((ŝ − s') / σ_Δ), so the first step of each chunk is exactly the one-step loss.
        """
        if rollout_steps == 1:
            return F.mse_loss(self._functional_norm_delta(params, t.obs, t.act), self.target(t))
        h = rollout_steps
        n = t.obs.shape[-2] // h
        if n == 0:
            raise ValueError(f"rollout_steps={h} is longer than the {t.obs.shape[-2]} "
                             "transitions scored")

        def chunks(x: Tensor) -> Tensor:
            return x[..., :n * h, :].reshape(*x.shape[:-2], n, h, x.shape[-1])

        obs, act, nxt = chunks(t.obs), chunks(t.act), chunks(t.next_obs)
        std = self.normalizer.delta_std
        cur, total = obs[..., 0, :], obs.new_zeros(())
        for j in range(h):  # static length: one batched model call per step
            cur = self.functional_forward(params, cur, act[..., j, :])
            total = total + (((cur - nxt[..., j, :]) / std) ** 2).mean()
        return total / h


def fold_gain(w_act: Tensor, bias: Tensor, gain: Tensor, normalizer: Normalizer
              ) -> tuple[Tensor, Tensor]:
    """Fold action gains into a first layer: its action rows ``w_act`` (``[act_dim, out]``,
    input-major) and ``bias`` such that the layer on ``norm_act(a)`` equals the original on
    ``norm_act(g ⊙ a)``. Since ``norm_act(g ⊙ a) = g ⊙ norm_act(a) + μ ⊙ (g − 1) / σ``, the rows
    scale by g and the bias absorbs the constant."""
    shift = normalizer.act_mean * (gain - 1.0) / normalizer.act_std
    return w_act * gain.unsqueeze(-1), bias + torch.matmul(shift, w_act)


class RecurrentDynamics(nn.Module):
    """GRU/LSTM dynamics for ReBAL.

    Step input: concat(norm obs_t, norm act_t, norm Δ_{t-1}); a linear head on the RNN output
    predicts norm Δ_t. The first step of a window has no previous transition, so its
    Δ_{t-1} is 0 in normalised space (the dataset-mean delta).

    **Fixed-context design.** After :meth:`encode` absorbs the past M transitions, the
    resulting hidden state is treated as a *condition context* and held fixed: every future
    prediction is one RNN step from that context, ``head(rnn(x_{M+k}, h_M))``, never from a
    hidden state advanced through predicted steps. :meth:`loss` trains exactly that (future
    inputs use the true previous Δ), and :class:`~adaptive_control.learners.ReBAL`'s predictor
    plans the same way, threading only the previous Δ as its state. Why: the paper's view of
    ReBAL is that the hidden state summarises the condition; keeping it fixed means imagined
    rollouts cannot drift the condition estimate, the planning/export state is a plain
    ``[N, obs_dim]`` tensor, and training and planning compute the same function.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_size: int = 256,
        cell: Literal["gru", "lstm"] = "gru",
        normalizer: Normalizer | None = None,
        seed: int = 0,
        past_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"RecurrentDynamics: cell must be 'gru' or 'lstm', got {cell!r}")
        if past_weight < 0:
            raise ValueError(f"RecurrentDynamics: past_weight must be >= 0, got {past_weight}")
        self.obs_dim, self.act_dim, self.hidden_size = obs_dim, act_dim, hidden_size
        self.cell = cell
        # Weight of the teacher-forced one-step predictions inside the past window in loss().
        self.past_weight = float(past_weight)
        self.normalizer = _check_normalizer(normalizer, obs_dim, act_dim)
        rnn_cls = nn.GRU if cell == "gru" else nn.LSTM
        # Built on the meta device so the constructor's init draws nothing from the global
        # RNG, then given real (uninitialised) storage; the seeded init follows.
        self.rnn = rnn_cls(2 * obs_dim + act_dim, hidden_size, batch_first=True,
                           device="meta").to_empty(device="cpu")
        self.head = _linear(hidden_size, obs_dim)
        gen = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(hidden_size)  # PyTorch's default RNN init, seeded
        for p in self.rnn.parameters():
            nn.init.uniform_(p, -bound, bound, generator=gen)
        _init_linear_(self.head, gen)

    # --- helpers ---------------------------------------------------------------------------
    def _step_inputs(self, obs: Tensor, act: Tensor, prev_delta_n: Tensor) -> Tensor:
        n = self.normalizer
        return torch.cat([n.norm_obs(obs), n.norm_act(act), prev_delta_n], dim=-1)

    def _seq_inputs(self, t: Transitions) -> tuple[Tensor, Tensor]:
        """[B, T, in] step inputs and [B, T, obs] normalised true deltas of a 3-D window."""
        delta_n = self.normalizer.norm_delta(t.next_obs - t.obs)
        prev = torch.cat([torch.zeros_like(delta_n[:, :1]), delta_n[:, :-1]], dim=1)
        return self._step_inputs(t.obs, t.act, prev), delta_n

    def _run(self, past: Transitions) -> tuple[Tensor, Hidden, Tensor]:
        """RNN over a ``[B, M, ·]`` window -> (outputs [B, M, H], rnn hidden, norm deltas)."""
        x, delta_n = self._seq_inputs(past)
        out, hn = self.rnn(x)
        return out, hn, delta_n

    # --- public API ------------------------------------------------------------------------
    def encode(self, past: Transitions) -> Hidden:
        """Hidden state after absorbing ``past`` (``[..., M, dim]``): ``[..., H]`` (or (h, c))."""
        lead = past.obs.shape[:-2]
        flat = Transitions(*(x.reshape(-1, *x.shape[-2:])
                             for x in (past.obs, past.act, past.next_obs)))
        _, hn, _ = self._run(flat)
        return _map_hidden(hn, lambda h: h[0].reshape(*lead, self.hidden_size))

    def step(self, obs: Tensor, act: Tensor, prev_delta: Tensor,
             hidden: Hidden) -> tuple[Tensor, Hidden]:
        """One RNN step. obs/act/prev_delta ``[N, ·]`` (raw units), hidden ``[N, H]`` or ``[H]``.

        Returns (next_obs ``[N, obs_dim]``, the advanced hidden ``[N, H]``). Fixed-context
        planning passes the same context every step and ignores the returned hidden.
        """
        n = obs.shape[0]
        x = self._step_inputs(obs, act, self.normalizer.norm_delta(prev_delta)).unsqueeze(1)
        h0 = _map_hidden(hidden, lambda h: h.expand(n, self.hidden_size).unsqueeze(0).contiguous())
        out, hn = self.rnn(x, h0)
        next_obs = obs + self.normalizer.denorm_delta(self.head(out[:, 0]))
        return next_obs, _map_hidden(hn, lambda h: h[0])

    def loss(self, windows: WindowBatch) -> Tensor:
        """Normalised-Δ MSE on the K future steps, each one RNN step from the fixed context h_M.

        Plus ``past_weight`` × the MSE of the ordinary recurrent one-step predictions inside
        the past window (extra supervision; 0 by default).
        """
        past, fut = windows.past, windows.future
        b, k = fut.obs.shape[0], fut.obs.shape[1]
        out_p, h_m, delta_p = self._run(past)
        # Future step inputs: the true previous Δ (the last past Δ for the first future step).
        delta_f = self.normalizer.norm_delta(fut.next_obs - fut.obs)
        prev_f = torch.cat([delta_p[:, -1:], delta_f[:, :-1]], dim=1)
        x_f = self._step_inputs(fut.obs, fut.act, prev_f).reshape(b * k, 1, -1)
        # All K future steps start from the same h_M: repeat it per step, one batched RNN call.
        h0 = _map_hidden(h_m, lambda h: h.unsqueeze(2).expand(1, b, k, self.hidden_size)
                         .reshape(1, b * k, self.hidden_size))
        out_f, _ = self.rnn(x_f, h0)
        pred_f = self.head(out_f[:, 0]).reshape(b, k, self.obs_dim)
        loss = F.mse_loss(pred_f, delta_f)
        if self.past_weight > 0:
            loss = loss + self.past_weight * F.mse_loss(self.head(out_p), delta_p)
        return loss


def _map_hidden(hidden: Hidden, fn: Callable[[Tensor], Tensor]) -> Hidden:
    if isinstance(hidden, tuple):
        return (fn(hidden[0]), fn(hidden[1]))
    return fn(hidden)


def _check_normalizer(normalizer: Normalizer | None, obs_dim: int, act_dim: int) -> Normalizer:
    if normalizer is None:
        return Normalizer.identity(obs_dim, act_dim)
    if normalizer.obs_dim != obs_dim or normalizer.act_dim != act_dim:
        raise ValueError(
            f"normalizer is for obs_dim={normalizer.obs_dim}, act_dim={normalizer.act_dim}; "
            f"model has obs_dim={obs_dim}, act_dim={act_dim}"
        )
    # A private copy: two models built from one fitted normaliser must not share buffers.
    return Normalizer.identity(obs_dim, act_dim, normalizer.obs_mean.dtype).update_from(normalizer)


def actuator_features(obs: Tensor, act: Tensor, next_obs: Tensor, velocity_index: Tensor,
                      normalizer: Normalizer) -> Tensor:
    """What :class:`ActuatorGainEncoder` reads per motor and step: ``[..., M, act_dim, 3]`` =
    (normalised command, change and value of the motor's joint velocity)."""
    a = normalizer.norm_act(act)
    dv = torch.index_select(normalizer.norm_delta(next_obs - obs), -1, velocity_index)
    v = torch.index_select(normalizer.norm_obs(obs), -1, velocity_index)
    return torch.stack([a, dv, v], dim=-1)


class ActuatorGainEncoder(nn.Module):
    """Per-motor command gains from a window of transitions, by one GRU shared by all motors.

    For motor j the GRU reads, step by step, ``(norm a_j, norm Δv_j, norm v_j)``: its command
    and the change and value of its own joint's velocity (``velocity_index[j]`` in the
    observation). A linear head maps the final hidden state to ``g_j − 1`` (zero-initialised,
    so untrained gains are 1). Sharing the weights across motors is the point: what training
    shows about one motor's failure (command and joint response decorrelate) applies to every
    motor, including one training never broke — an encoder with per-motor weights has nothing
    to generalise from for that motor.
    """

    def __init__(self, velocity_index: Sequence[int], hidden_size: int = 32,
                 seed: int = 0) -> None:
        super().__init__()
        self.hidden_size = int(hidden_size)
        self.register_buffer("velocity_index", torch.as_tensor(list(velocity_index),
                                                               dtype=torch.long))
        self.rnn = nn.GRU(3, self.hidden_size, batch_first=True,
                          device="meta").to_empty(device="cpu")
        self.head = _linear(self.hidden_size, 1)
        gen = torch.Generator().manual_seed(seed)
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.rnn.parameters():
            nn.init.uniform_(p, -bound, bound, generator=gen)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def act_dim(self) -> int:
        return int(self.velocity_index.numel())

    def forward(self, past: Transitions, normalizer: Normalizer) -> Tensor:
        """Gains ``[..., act_dim]`` after reading the window."""
        x = actuator_features(past.obs, past.act, past.next_obs, self.velocity_index,
                              normalizer).transpose(-3, -2)  # [..., act_dim, M, 3]
        lead = x.shape[:-2]
        _, h = self.rnn(x.reshape(-1, *x.shape[-2:]))
        return 1.0 + self.head(h[0]).reshape(lead)
