"""Dataset z-scoring of observations, actions and state deltas (Δs = s' − s).

The statistics are registered buffers, so they travel with the model in its ``state_dict`` and
follow ``.to()`` / ``.double()``; they are never parameters, so optimisers and the functional
(``torch.func``) paths leave them alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

_NAMES = ("obs_mean", "obs_std", "act_mean", "act_std", "delta_mean", "delta_std")


def _as_2d_float64(x: Any, what: str) -> Tensor:
    """Any array-like -> float64 tensor [N, dim]; rejects non-finite entries with their count."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x.detach())
    t = t.to(dtype=torch.float64, device="cpu")
    if t.dim() < 1:
        raise ValueError(f"Normalizer.fit: {what} must have at least one dimension, got a scalar")
    t = t.reshape(-1, t.shape[-1]) if t.dim() > 1 else t.reshape(-1, 1)
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(
            f"Normalizer.fit: {what} contains {bad} non-finite value(s) (NaN or inf) "
            f"out of {t.numel()}"
        )
    if t.shape[0] == 0:
        raise ValueError(f"Normalizer.fit: {what} is empty")
    return t


class Normalizer(nn.Module):
    """Per-dimension mean/std for obs, actions and deltas, stored as buffers."""

    obs_mean: Tensor
    obs_std: Tensor
    act_mean: Tensor
    act_std: Tensor
    delta_mean: Tensor
    delta_std: Tensor

    def __init__(
        self,
        obs_mean: Tensor,
        obs_std: Tensor,
        act_mean: Tensor,
        act_std: Tensor,
        delta_mean: Tensor,
        delta_std: Tensor,
    ) -> None:
        super().__init__()
        values = dict(zip(_NAMES, (obs_mean, obs_std, act_mean, act_std, delta_mean, delta_std),
                          strict=True))
        for name, v in values.items():
            v = torch.as_tensor(v)
            if v.dim() != 1:
                raise ValueError(f"Normalizer.{name} must be 1-D, got shape {tuple(v.shape)}")
            if name.endswith("_std") and not bool((v > 0).all()):
                raise ValueError(f"Normalizer.{name} must be strictly positive")
            self.register_buffer(name, v.clone())
        if self.obs_mean.shape != self.obs_std.shape or self.obs_mean.shape != self.delta_std.shape:
            raise ValueError("Normalizer: obs and delta statistics must have the same length")
        if self.delta_mean.shape != self.obs_mean.shape:
            raise ValueError("Normalizer: delta_mean must have the obs length")
        if self.act_mean.shape != self.act_std.shape:
            raise ValueError("Normalizer: act_mean and act_std must have the same length")

    @classmethod
    def fit(
        cls,
        obs: Any,
        act: Any,
        next_obs: Any,
        min_std: float = 1e-6,
        dtype: torch.dtype = torch.float32,
    ) -> Normalizer:
        """Statistics over all leading dims of ``[..., dim]`` arrays or tensors.

        Std is the population std floored at ``min_std`` (constant dimensions would otherwise
        divide by zero). Raises ``ValueError`` if any input holds NaN/inf.
        """
        o = _as_2d_float64(obs, "obs")
        a = _as_2d_float64(act, "act")
        n = _as_2d_float64(next_obs, "next_obs")
        if o.shape != n.shape:
            raise ValueError(f"Normalizer.fit: obs {tuple(o.shape)} and next_obs "
                             f"{tuple(n.shape)} differ in shape")
        if a.shape[0] != o.shape[0]:
            raise ValueError(f"Normalizer.fit: {a.shape[0]} actions for {o.shape[0]} observations")
        d = n - o

        def stats(x: Tensor) -> tuple[Tensor, Tensor]:
            return (x.mean(0).to(dtype),
                    x.std(0, unbiased=False).clamp_min(min_std).to(dtype))

        return cls(*stats(o), *stats(a), *stats(d))

    @classmethod
    def identity(cls, obs_dim: int, act_dim: int, dtype: torch.dtype = torch.float32) -> Normalizer:
        """Zero mean, unit std: a no-op normaliser."""
        z_o, o_o = torch.zeros(obs_dim, dtype=dtype), torch.ones(obs_dim, dtype=dtype)
        z_a, o_a = torch.zeros(act_dim, dtype=dtype), torch.ones(act_dim, dtype=dtype)
        return cls(z_o, o_o, z_a, o_a, z_o, o_o)

    @property
    def obs_dim(self) -> int:
        return self.obs_mean.shape[0]

    @property
    def act_dim(self) -> int:
        return self.act_mean.shape[0]

    @torch.no_grad()
    def update_from(self, other: Normalizer) -> Normalizer:
        """Copy ``other``'s statistics into these buffers in place (keeps dtype and device)."""
        for name in _NAMES:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine.shape != theirs.shape:
                raise ValueError(f"Normalizer.update_from: {name} shape {tuple(theirs.shape)} "
                                 f"!= {tuple(mine.shape)}")
            mine.copy_(theirs)
        return self

    def norm_obs(self, obs: Tensor) -> Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def norm_act(self, act: Tensor) -> Tensor:
        return (act - self.act_mean) / self.act_std

    def norm_delta(self, delta: Tensor) -> Tensor:
        return (delta - self.delta_mean) / self.delta_std

    def denorm_delta(self, delta_n: Tensor) -> Tensor:
        return delta_n * self.delta_std + self.delta_mean

    def extra_repr(self) -> str:
        return f"obs_dim={self.obs_dim}, act_dim={self.act_dim}"
