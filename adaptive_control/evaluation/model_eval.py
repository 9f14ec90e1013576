"""Open-loop prediction error of learners on held-out conditions (``adapt eval-model``).

For windows along held-out trajectories: adapt on the M transitions before time t (or not, for
the unadapted prior), then predict open loop k steps ahead with the recorded actions and
compare with what happened. Errors are mean squared errors over observation dimensions, each
dimension scaled by the evaluation data's own standard deviation so that all dimensions and
all methods are measured on one scale.

The scale is the per-dimension standard deviation of random-action data from the family's
*training* conditions (``reference_scale``), the same for every method and every held-out
condition. (Scaling by the held-out data's own spread would inflate exactly the dimensions a
condition immobilises: a disabled joint barely moves, so its tiny spread would blow its
errors up.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adaptive_control.learners import MBDE, Learner
from adaptive_control.types import Transitions
from sims.collect import collect_open_loop
from sims.dataset import Dataset
from sims.families import TaskFamily


def heldout_data(family: TaskFamily, split: str, trajectories_per_condition: int, steps: int,
                 seed: int, progress: bool = False) -> Dataset:
    """Random-action trajectories in each condition of ``split`` (seeded)."""
    rng = np.random.default_rng(seed)
    conds = (family.conditions("test") if split == "test"
             else family.conditions("train", rng, n=len(family.test_conditions)))
    conds = [c for c in conds for _ in range(trajectories_per_condition)]
    return collect_open_loop(family.robot, conds, steps, rng, progress=progress,
                             family=family.name)


def reference_scale(family: TaskFamily, seed: int = 0, trajectories: int = 8,
                    steps: int = 300) -> np.ndarray:
    """Per-dimension std of random-action observations under training conditions."""
    rng = np.random.default_rng(seed)
    conds = family.conditions("train", rng, n=trajectories)
    data = collect_open_loop(family.robot, conds, steps, rng, progress=False)
    return data.obs.reshape(-1, data.obs.shape[-1]).std(0) + 1e-6


@dataclass
class ErrorSummary:
    """Mean, standard error and median of the k-step error over windows (the median too,
    because one diverging open-loop prediction can dominate a mean)."""

    mean: float
    sem: float
    n: int
    median: float = float("nan")

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "sem": self.sem, "n": self.n, "median": self.median}


def window_errors(learner: Learner, obs: torch.Tensor, act: torch.Tensor, m: int,
                  horizons: tuple[int, ...], stride: int, adapted: bool,
                  scale: torch.Tensor) -> list[tuple[int, dict[int, float]]]:
    """Along one trajectory (``obs [T+1, do]``, ``act [T, da]``): for t = M, M+stride, ...,
    adapt on the M transitions before t (or take the prior), predict open loop with the
    recorded actions, and return ``(t, {k: error})`` per window."""
    kmax = max(horizons)
    steps = act.shape[0]
    # MB+DE's online SGD runs at every step, as in control; the others adapt per window.
    every_step = adapted and isinstance(learner, MBDE)
    learner.reset()
    out = []
    for t in range(m, steps - kmax + 1):
        evaluate = (t - m) % stride == 0
        if not (evaluate or every_step):
            continue
        past = Transitions(obs[t - m:t], act[t - m:t], obs[t - m + 1:t + 1])
        predictor = learner.adapt(past) if adapted else learner.prior()
        if not evaluate:
            continue
        errs = {}
        with torch.no_grad():
            o = obs[t][None]
            state = predictor.initial_state(1)
            for j in range(kmax):
                o, state = predictor(o, act[t + j][None], state)
                if j + 1 in horizons:
                    errs[j + 1] = float((((o[0] - obs[t + j + 1]) / scale) ** 2).mean())
        out.append((t, errs))
    return out


def prediction_errors(learner: Learner, data: Dataset, m: int, horizons: tuple[int, ...] = (1, 10),
                      stride: int = 5, adapted: bool = True,
                      scale: np.ndarray | None = None) -> dict[int, ErrorSummary]:
    """k-step open-loop errors over a dataset, for each k in ``horizons``."""
    kmax = max(horizons)
    if m + kmax > data.horizon:
        raise ValueError(f"M + max horizon = {m} + {kmax} exceeds the trajectories' "
                         f"{data.horizon} steps")
    if scale is None:  # without a reference, the data's own spread
        scale = data.obs.reshape(-1, data.obs.shape[-1]).std(0) + 1e-6
    scale_t = torch.as_tensor(scale, dtype=torch.float32)
    errs: dict[int, list[float]] = {k: [] for k in horizons}
    obs_all = torch.from_numpy(data.obs)
    act_all = torch.from_numpy(data.act)
    for i in range(data.n_trajectories):
        for _, e in window_errors(learner, obs_all[i], act_all[i], m, horizons, stride, adapted,
                                  scale_t):
            for k, v in e.items():
                errs[k].append(v)
    out = {}
    for k, v in errs.items():
        a = np.asarray(v)
        out[k] = ErrorSummary(float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a)))
                              if len(a) > 1 else 0.0, len(a), float(np.median(a)))
    return out


def prediction_errors_at(learner: Learner, obs: np.ndarray, act: np.ndarray, m: int, k: int,
                         stride: int, scale: np.ndarray) -> tuple[list[int], list[float]]:
    """The k-step error of the adapted learner along one episode: (steps, errors)."""
    scale = torch.as_tensor(scale, dtype=torch.float32)
    res = window_errors(learner, torch.as_tensor(obs), torch.as_tensor(act), m, (k,), stride,
                        True, scale)
    return [t for t, _ in res], [e[k] for _, e in res]
