"""Policy networks: a recurrent (GRU/LSTM) policy and a feed-forward one with the same inputs.

Inputs at every step: the observation, the previous action and the previous reward (zeros at the
first step of an episode), each normalised inside the module: observations and rewards by running
mean/variance statistics held in buffers (they travel with ``state_dict`` and are baked into the
ONNX export), actions by the robot's bounds to [-1, 1].

Action head: a Gaussian whose mean is tanh-squashed into the action bounds,
``mean = mid + half * tanh(x)``, with a state-independent learned log std. PPO samples
``a ~ N(mean, std)`` and scores the log-probability of that unclipped sample; the environment
clips it to the bounds. Deployment and distillation use the (always in-bounds) mean.

The hidden state is one tensor ``[B, hidden_dim]``: GRU ``h``; LSTM ``h`` and ``c`` concatenated
(``2 * hidden_size``); the MLP has a 1-wide dummy state that it passes through unchanged, so that
every policy has the same step signature.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from policies.config import PolicyNetConfig


class RunningNorm(nn.Module):
    """Running mean / variance (parallel Welford merge) kept in buffers; clips to +-clip."""

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip = clip
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge the statistics of ``x`` ``[..., dim]`` into the running ones."""
        x = x.reshape(-1, self.mean.shape[0]).to(torch.float64)
        if x.shape[0] == 0:
            return
        n_b = float(x.shape[0])
        mean_b, var_b = x.mean(0), x.var(0, unbiased=False)
        n_a = float(self.count)
        if n_a == 0:
            mean, var = mean_b, var_b
        else:
            mean_a, var_a = self.mean.double(), self.var.double()
            delta = mean_b - mean_a
            tot = n_a + n_b
            mean = mean_a + delta * n_b / tot
            var = (var_a * n_a + var_b * n_b + delta * delta * n_a * n_b / tot) / tot
        self.mean.copy_(mean.float())
        self.var.copy_(var.float())
        self.count.fill_(n_a + n_b)

    def forward(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / torch.sqrt(self.var + self.eps)).clamp(-self.clip, self.clip)


class Policy(nn.Module):
    """A Gaussian policy (and value head) over (obs, previous action, previous reward).

    ``step`` advances one control step for a batch; ``unroll`` runs a ``[T, B]`` sequence,
    zeroing the hidden state where ``resets`` is true (the first step of a trial) and cutting
    gradients every ``bptt`` steps (truncated BPTT).
    """

    act_low: Tensor
    act_high: Tensor

    def __init__(self, obs_dim: int, act_dim: int, act_low, act_high,
                 cfg: PolicyNetConfig | None = None):
        super().__init__()
        cfg = cfg or PolicyNetConfig()
        self.obs_dim, self.act_dim, self.arch = obs_dim, act_dim, cfg.arch
        self.hidden_size = cfg.hidden_size
        self.prev_inputs = cfg.prev_inputs
        self.register_buffer("act_low", torch.as_tensor(act_low, dtype=torch.float32).clone())
        self.register_buffer("act_high", torch.as_tensor(act_high, dtype=torch.float32).clone())
        self.obs_norm = RunningNorm(obs_dim)
        self.rew_norm = RunningNorm(1)
        layers: list[nn.Module] = []
        width = obs_dim + act_dim + 1
        for w in cfg.mlp_sizes:
            layers += [nn.Linear(width, w), nn.Tanh()]
            width = w
        self.trunk = nn.Sequential(*layers)
        if cfg.arch == "gru":
            self.cell: nn.Module | None = nn.GRUCell(width, cfg.hidden_size)
            width = cfg.hidden_size
        elif cfg.arch == "lstm":
            self.cell = nn.LSTMCell(width, cfg.hidden_size)
            width = cfg.hidden_size
        else:
            self.cell = None
        self.mean_head = nn.Linear(width, act_dim)
        self.value_head = nn.Linear(width, 1)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(cfg.init_log_std)))
        # Small initial means: the untrained policy starts near the middle of the bounds.
        nn.init.orthogonal_(self.mean_head.weight, gain=0.01)
        nn.init.zeros_(self.mean_head.bias)

    # ------------------------------------------------------------------ shapes
    @property
    def recurrent(self) -> bool:
        return self.cell is not None

    @property
    def hidden_dim(self) -> int:
        """Width of the single hidden-state tensor (LSTM: h and c side by side)."""
        if self.arch == "lstm":
            return 2 * self.hidden_size
        return self.hidden_size if self.arch == "gru" else 1

    def initial_hidden(self, batch: int = 1) -> Tensor:
        return torch.zeros(batch, self.hidden_dim)

    # ------------------------------------------------------------------ one step
    def features(self, obs: Tensor, prev_act: Tensor, prev_rew: Tensor) -> Tensor:
        mid = (self.act_high + self.act_low) / 2
        half = (self.act_high - self.act_low) / 2
        prev = torch.cat([(prev_act - mid) / half, self.rew_norm(prev_rew)], -1)
        if not self.prev_inputs:  # zeroed, not dropped: every policy keeps one step signature
            prev = prev * 0.0
        return self.trunk(torch.cat([self.obs_norm(obs), prev], -1))

    def step(self, obs: Tensor, prev_act: Tensor, prev_rew: Tensor,
             hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step for a batch ``[B, ...]`` (``prev_rew`` is ``[B, 1]``):
        returns (action mean ``[B, A]``, value ``[B]``, next hidden ``[B, hidden_dim]``)."""
        z = self.features(obs, prev_act, prev_rew)
        if self.arch == "gru":
            hidden = self.cell(z, hidden)
            z = hidden
        elif self.arch == "lstm":
            h, c = self.cell(z, (hidden[:, :self.hidden_size], hidden[:, self.hidden_size:]))
            hidden = torch.cat([h, c], -1)
            z = h
        mid = (self.act_high + self.act_low) / 2
        half = (self.act_high - self.act_low) / 2
        mean = mid + half * torch.tanh(self.mean_head(z))
        return mean, self.value_head(z).squeeze(-1), hidden

    def forward(self, obs: Tensor, prev_act: Tensor, prev_rew: Tensor,
                hidden: Tensor) -> tuple[Tensor, Tensor]:
        """Deployment: (deterministic action, next hidden). This is what ONNX export traces."""
        mean, _, hidden = self.step(obs, prev_act, prev_rew, hidden)
        return mean, hidden

    # ------------------------------------------------------------------ sequences
    def unroll(self, obs: Tensor, prev_act: Tensor, prev_rew: Tensor, resets: Tensor,
               hidden: Tensor, bptt: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Run ``[T, B, ...]`` sequences from ``hidden``; ``resets[t]`` (bool ``[T, B]``) zeroes
        the state before step t. Returns (means ``[T, B, A]``, values ``[T, B]``, last hidden)."""
        means, values = [], []
        keep = (~resets).to(hidden.dtype).unsqueeze(-1)
        for t in range(obs.shape[0]):
            if bptt and t and t % bptt == 0:
                hidden = hidden.detach()  # truncated BPTT
            hidden = hidden * keep[t]
            mean, value, hidden = self.step(obs[t], prev_act[t], prev_rew[t], hidden)
            means.append(mean)
            values.append(value)
        return torch.stack(means), torch.stack(values), hidden

    def log_prob(self, mean: Tensor, sample: Tensor) -> Tensor:
        """Log-density of the unclipped ``sample`` under N(mean, exp(log_std)), summed over A."""
        std = self.log_std.exp()
        z = (sample - mean) / std
        return (-0.5 * z * z - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> Tensor:
        return (self.log_std + 0.5 * math.log(2 * math.pi * math.e)).sum()
