"""From trajectory datasets to meta-learning windows.

A window is M past + K future consecutive transitions of one trajectory (so of one condition):
the learner adapts on the past and is scored on the future. Trajectories — not windows — are
split into training and validation, so no validation window shares a transition with training.

``load_training_data`` reads datasets given by the user (``adapt train --data``) and checks
them against the family's robot and the window before any training starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from adaptive_control.types import Transitions, WindowBatch
from sims.conditions import Condition
from sims.dataset import Dataset
from sims.families import TaskFamily
from sims.registry import get_family, get_robot
from sims.robots import base_name


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
    """Samples meta-batches of windows from a fixed set of trajectories, every window (start
    position within a trajectory's length) equally likely."""

    dataset: Dataset
    m: int
    k: int
    trajectories: np.ndarray  # indices of the trajectories this sampler draws from

    def __post_init__(self) -> None:
        if len(self.trajectories) == 0:
            raise ValueError("WindowSampler needs at least one trajectory")
        lengths = self.dataset.lengths[self.trajectories]
        check_window(self.m, self.k, int(lengths.min()))
        self._windows = lengths - self.m - self.k + 1  # start positions per trajectory
        self._first = np.concatenate([[0], np.cumsum(self._windows)])  # of each one's windows
        self._obs = torch.from_numpy(self.dataset.obs)
        self._act = torch.from_numpy(self.dataset.act)

    @property
    def n_windows(self) -> int:
        """Distinct window start positions available."""
        return int(self._first[-1])

    def sample(self, batch_size: int, rng: np.random.Generator) -> WindowBatch:
        window = rng.integers(self.n_windows, size=batch_size)
        i = np.searchsorted(self._first, window, side="right") - 1
        return self._gather(self.trajectories[i], window - self._first[i])

    def all_windows(self, stride: int | None = None, limit: int | None = None) -> WindowBatch:
        """Every window at the given stride (default: non-overlapping), for validation."""
        stride = stride or (self.m + self.k)
        starts = [np.arange(0, w, stride) for w in self._windows]
        traj = np.repeat(self.trajectories, [len(s) for s in starts])
        start = np.concatenate(starts)
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
    return _split(dataset.n_trajectories, val_fraction, rng)


def split_by_part(part_trajectories: Sequence[int], val_fraction: float,
                  rngs: Sequence[np.random.Generator]) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation split of a dataset concatenated from parts (an iteration's data
    each) of ``part_trajectories`` trajectories: each part split by its own generator, as
    ``split_trajectories`` splits it, indices offset to the concatenation.

    Splitting each iteration's data once, rather than the aggregate afresh, keeps a held-back
    trajectory held back as data grows: a validation set the model was fitted on in an
    earlier iteration scores the weights a fit starts from best, and early stopping then keeps
    them whatever the new data says.
    """
    if len(part_trajectories) != len(rngs):
        raise ValueError(f"{len(part_trajectories)} parts but {len(rngs)} generators: one each")
    train, val, offset = [], [], 0
    for n, rng in zip(part_trajectories, rngs, strict=True):
        tr, va = _split(n, val_fraction, rng)
        train.append(tr + offset)
        val.append(va + offset)
        offset += n
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(train) if train else empty, np.concatenate(val) if val else empty)


def _split(n: int, val_fraction: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r}: allowed [0, 1)")
    perm = rng.permutation(n)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ------------------------------------------------------------------------------ user data
def check_training_data(data: Dataset, family: TaskFamily, m: int, k: int,
                        where: str = "dataset") -> None:
    """Refuse data a run of ``family`` with windows of ``m`` + ``k`` cannot train on: another
    robot, observations or actions of other sizes, conditions the robot cannot take, or
    episodes shorter than one window."""
    robot = family.robot
    if data.robot not in ("", robot.name):
        hint = ""
        if base_name(data.robot) == base_name(robot.name):  # another decision step
            hint = (f" (each action held {robot.frame_skip} of its control steps); data "
                    f"recorded every {data.robot!r} step trains with decision_steps="
                    f"{get_robot(data.robot).frame_skip}")
        raise ValueError(f"{where} is of robot {data.robot!r}: family {family.name!r} trains "
                         f"the {robot.name!r} robot{hint}")
    for name, got, want, parts in (
            ("obs", data.obs.shape[-1], robot.obs_dim, "observation values"),
            ("act", data.act.shape[-1], robot.act_dim, "actuators")):
        if got != want:
            raise ValueError(f"{where}: {name} has {got} values per step, but the "
                             f"{robot.name!r} robot of family {family.name!r} has {want} "
                             f"{parts} (see `adapt sims list`)")
    for i, text in enumerate(data.conditions):
        condition = Condition.from_json(text)
        try:
            condition.validate(robot)
        except ValueError as e:
            raise ValueError(f"{where}: conditions[{i}] ({condition.label}) is not a condition "
                             f"of the {robot.name!r} robot: {e}") from e
    short = np.flatnonzero(data.lengths < m + k)
    if len(short):
        shown = ", ".join(f"{i} ({data.lengths[i]})" for i in short[:10])
        raise ValueError(
            f"{where}: {len(short)} episodes are shorter than a window of m + k = {m + k} "
            f"transitions (m={m}, k={k}): episodes (transitions) {shown}"
            f"{', ...' if len(short) > 10 else ''}; drop them or lower m and k")


def load_training_data(sources: Sequence[str | Path | Dataset], family: TaskFamily | str,
                       m: int, k: int) -> Dataset:
    """The datasets ``sources`` (``.npz`` paths in either layout of docs/data.md, or loaded
    ``Dataset``s), each checked against ``family``'s robot and the window, joined into one
    dataset of that robot: what ``train(..., initial_data=...)`` fits on at iteration 0."""
    family = get_family(family) if isinstance(family, str) else family
    if isinstance(sources, (str, Path, Dataset)) or not sources:
        raise ValueError(f"sources={sources!r}: allowed a non-empty list of .npz paths or "
                         "Datasets")
    parts, names = [], []
    for source in sources:
        if isinstance(source, Dataset):
            data, where, name = source, "dataset", "(in memory)"
        else:
            data, where, name = Dataset.load(source), f"data file {str(source)!r}", str(source)
        check_training_data(data, family, m, k, where)
        parts.append(replace(data, robot=family.robot.name))
        names.append(name)
    joined = Dataset.concatenate(parts)
    return replace(joined, family=family.name, source="data",
                   stats={"from": names, "sources": [p.source for p in parts]})
