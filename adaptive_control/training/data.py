"""From trajectory datasets to meta-learning windows.

A window is M past + K future consecutive transitions of one trajectory (so of one condition):
the learner adapts on the past and is scored on the future. Trajectories — not windows — are
split into training and validation, so no validation window shares a transition with training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adaptive_control.types import Transitions, WindowBatch
from sims.dataset import Dataset


def check_window(m: int, k: int, horizon: int) -> None:
    """M and K must fit inside one trajectory; say so with the numbers when they don't."""
    for name, v in (("M", m), ("K", k)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}={v!r} must be an integer >= 1")
    if m + k > horizon:
        raise ValueError(
            f"M + K = {m} + {k} = {m + k} transitions is longer than an episode of the data "
            f"({horizon} transitions): allowed M + K <= {horizon}"
        )


@dataclass
class WindowSampler:
    """Samples meta-batches of windows from a fixed set of trajectories."""

    dataset: Dataset
    m: int
    k: int
    trajectories: np.ndarray  # indices of the trajectories this sampler draws from

    def __post_init__(self) -> None:
        check_window(self.m, self.k, self.dataset.horizon)
        if len(self.trajectories) == 0:
            raise ValueError("WindowSampler needs at least one trajectory")
        self._obs = torch.from_numpy(self.dataset.obs)
        self._act = torch.from_numpy(self.dataset.act)

    @property
    def n_windows(self) -> int:
        """Distinct window start positions available."""
        return len(self.trajectories) * (self.dataset.horizon - self.m - self.k + 1)

    def sample(self, batch_size: int, rng: np.random.Generator) -> WindowBatch:
        traj = self.trajectories[rng.integers(len(self.trajectories), size=batch_size)]
        start = rng.integers(0, self.dataset.horizon - self.m - self.k + 1, size=batch_size)
        return self._gather(traj, start)

    def all_windows(self, stride: int | None = None, limit: int | None = None) -> WindowBatch:
        """Every window at the given stride (default: non-overlapping), for validation."""
        stride = stride or (self.m + self.k)
        starts = np.arange(0, self.dataset.horizon - self.m - self.k + 1, stride)
        traj, start = np.meshgrid(self.trajectories, starts, indexing="ij")
        traj, start = traj.ravel(), start.ravel()
        if limit is not None and len(traj) > limit:
            pick = np.linspace(0, len(traj) - 1, limit).astype(int)
            traj, start = traj[pick], start[pick]
        return self._gather(traj, start)

    def _gather(self, traj: np.ndarray, start: np.ndarray) -> WindowBatch:
        length = self.m + self.k
        t_idx = torch.from_numpy(start[:, None] + np.arange(length)[None, :])
        b_idx = torch.from_numpy(traj)[:, None]
        obs = self._obs[b_idx, t_idx]
        nxt = self._obs[b_idx, t_idx + 1]
        act = self._act[b_idx, t_idx]
        full = Transitions(obs, act, nxt)
        return WindowBatch(full.slice_time(0, self.m), full.slice_time(self.m, length))


def split_trajectories(dataset: Dataset, val_fraction: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random train / validation split of trajectory indices (at least one of each when
    there are two or more trajectories)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r}: allowed [0, 1)")
    n = dataset.n_trajectories
    perm = rng.permutation(n)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])

