"""Trajectory datasets: fixed-length trajectories labelled by condition, stored as ``.npz``.

Arrays (no pickle anywhere; loading uses ``allow_pickle=False``):
  obs           [N, T+1, obs_dim] float32  observations the controller saw (noisy if the
                                            condition adds observation noise)
  act           [N, T, act_dim]   float32  actions applied
  condition_id  [N]               int64    index into ``conditions``
  conditions    [C]               str      each condition as JSON (``Condition.to_json``)
  robot, family, source           str      provenance
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sims.atomic import atomic_write
from sims.conditions import Condition

FORMAT_VERSION = 1


@dataclass
class Dataset:
    obs: np.ndarray
    act: np.ndarray
    condition_id: np.ndarray
    conditions: list[str]
    robot: str
    family: str = ""
    source: str = ""  # "random", "open_loop", "closed_loop:<controller>", ...
    stats: dict = field(default_factory=dict)  # collection statistics (dropped rollouts, ...)

    def __post_init__(self) -> None:
        self.obs = np.asarray(self.obs, dtype=np.float32)
        self.act = np.asarray(self.act, dtype=np.float32)
        self.condition_id = np.asarray(self.condition_id, dtype=np.int64)
        n, t1 = self.obs.shape[:2] if self.obs.ndim == 3 else (None, None)
        if self.obs.ndim != 3 or self.act.ndim != 3:
            raise ValueError(f"Dataset.obs must be [N, T+1, obs_dim] and act [N, T, act_dim]; got "
                             f"{self.obs.shape} and {self.act.shape}")
        if self.act.shape[:2] != (n, t1 - 1):
            raise ValueError(f"Dataset.act has shape {self.act.shape}: expected ({n}, {t1 - 1}, "
                             "act_dim) to match obs")
        if self.condition_id.shape != (n,):
            raise ValueError(f"Dataset.condition_id has shape {self.condition_id.shape}: "
                             f"expected ({n},)")
        if n and (self.condition_id.min() < 0 or self.condition_id.max() >= len(self.conditions)):
            raise ValueError("Dataset.condition_id indexes outside Dataset.conditions")
        bad = int((~np.isfinite(self.obs)).sum() + (~np.isfinite(self.act)).sum())
        if bad:
            raise ValueError(f"Dataset holds {bad} NaN/inf values; refusing it")

    # ------------------------------------------------------------------ views
    @property
    def n_trajectories(self) -> int:
        return self.obs.shape[0]

    @property
    def horizon(self) -> int:
        return self.act.shape[1]

    @property
    def n_transitions(self) -> int:
        return self.n_trajectories * self.horizon

    def condition(self, i: int) -> Condition:
        """The condition of trajectory ``i``."""
        return Condition.from_json(self.conditions[int(self.condition_id[i])])

    def transitions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (obs, act, next_obs) flattened to ``[N*T, dim]``."""
        o = self.obs[:, :-1].reshape(-1, self.obs.shape[-1])
        a = self.act.reshape(-1, self.act.shape[-1])
        n = self.obs[:, 1:].reshape(-1, self.obs.shape[-1])
        return o, a, n

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.obs[index], self.act[index], self.condition_id[index],
                       list(self.conditions), self.robot, self.family, self.source,
                       dict(self.stats))

    # ------------------------------------------------------------------ combine
    @staticmethod
    def concatenate(parts: list[Dataset]) -> Dataset:
        """Join datasets of one robot and horizon, merging their condition tables."""
        if not parts:
            raise ValueError("Dataset.concatenate needs at least one dataset")
        robots = {p.robot for p in parts}
        if len(robots) != 1:
            raise ValueError(f"cannot concatenate datasets of different robots: {sorted(robots)}")
        table: dict[str, int] = {}
        ids = []
        for p in parts:
            remap = np.array([table.setdefault(c, len(table)) for c in p.conditions],
                             dtype=np.int64)
            ids.append(remap[p.condition_id] if len(p.conditions) else p.condition_id)
        sources = sorted({p.source for p in parts})
        return Dataset(
            np.concatenate([p.obs for p in parts]), np.concatenate([p.act for p in parts]),
            np.concatenate(ids), list(table), parts[0].robot, parts[0].family,
            "+".join(sources), {"parts": len(parts)},
        )

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write atomically: a crash mid-write never leaves a truncated file at ``path``."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"dataset path={str(path)!r} must end in .npz")
        with atomic_write(path) as f:
            np.savez_compressed(
                f, obs=self.obs, act=self.act, condition_id=self.condition_id,
                conditions=np.array(self.conditions, dtype=np.str_),
                robot=np.array(self.robot), family=np.array(self.family),
                source=np.array(self.source), stats=np.array(json.dumps(self.stats)),
                format_version=np.array(FORMAT_VERSION),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"dataset path={str(path)!r} must end in .npz")
        if not path.is_file():
            raise ValueError(f"dataset path={str(path)!r}: no such file")
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"dataset {str(path)!r} is not an .npz archive")
        with z:
            missing = {"obs", "act", "condition_id", "conditions", "robot"} - set(z.files)
            if missing:
                raise ValueError(f"dataset {str(path)!r} lacks arrays {sorted(missing)}")
            version = int(z["format_version"]) if "format_version" in z.files else 0
            if version != FORMAT_VERSION:
                raise ValueError(f"dataset {str(path)!r} has format_version={version}: "
                                 f"this toolkit reads {FORMAT_VERSION}")
            return cls(
                z["obs"], z["act"], z["condition_id"], [str(c) for c in z["conditions"]],
                str(z["robot"]), str(z["family"]) if "family" in z.files else "",
                str(z["source"]) if "source" in z.files else "",
                json.loads(str(z["stats"])) if "stats" in z.files else {},
            )
