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
from typing import Any

import numpy as np
import torch

from adaptive_control.devices import module_device
from adaptive_control.learners import Learner
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
    recorded actions, and return ``(t, {k: error})`` per window. Runs on the learner's
    device (the trajectory is moved there)."""
    device = module_device(learner)
    obs, act, scale = obs.to(device), act.to(device), scale.to(device)
    kmax = max(horizons)
    steps = act.shape[0]
    # MB+DE's online SGD runs at every step, as in control; the others adapt per window.
    every_step = adapted and learner.adaptation().carries_weights
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
        # An ensemble rolls one row per member; its prediction is the members' mean.
        members = getattr(predictor, "ensemble_size", 1)
        with torch.no_grad():
            o = obs[t][None].expand(members, -1)
            state = predictor.initial_state(members)
            for j in range(kmax):
                o, state = predictor(o, act[t + j][None].expand(members, -1), state)
                if j + 1 in horizons:
                    err = (o.mean(0) - obs[t + j + 1]) / scale
                    errs[j + 1] = float((err ** 2).mean())
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


@dataclass
class ModelErrors:
    """One model's k-step errors, unadapted (``prior``) and adapted, per k."""

    checkpoint: str
    #: The learner: the checkpoint's, or mbde for MB's weights updated online.
    name: str
    prior: dict[int, ErrorSummary]
    adapted: dict[int, ErrorSummary]


@dataclass
class ModelComparison:
    """`adapt eval-model`'s results: the models of one family on the same held-out data."""

    family: str
    split: str
    m: int
    horizons: tuple[int, ...]
    conditions: list[str]
    trajectories: int
    steps: int
    models: list[ModelErrors]

    def to_dict(self) -> dict:
        return {"family": self.family, "split": self.split, "m": self.m,
                "horizons": list(self.horizons), "conditions": list(self.conditions),
                "methods": {r.name: {"checkpoint": r.checkpoint,
                                     "prior": {k: v.to_dict() for k, v in r.prior.items()},
                                     "adapted": {k: v.to_dict() for k, v in r.adapted.items()}}
                            for r in self.models}}


@dataclass
class LoadedModels:
    """The learners of checkpoints of one family, as `adapt eval-model` compares them: each
    ``(checkpoint, name, learner, config)``, an MB checkpoint also as ``mbde``."""

    family: TaskFamily
    learners: list[tuple[str, str, Learner, Any]]


def load_models(checkpoints: list[str], device: torch.device | str = "cpu") -> LoadedModels:
    """The learners of ``checkpoints`` (checkpoint files or run folders, one family) on
    ``device``, an MB checkpoint also as MB+DE (its weights updated online)."""
    from adaptive_control.builders import learner_from_checkpoint, mbde_from_mb
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.runs import checkpoint_path
    from sims.registry import get_family

    loaded = []
    for path in checkpoints:
        ckpt = load_checkpoint(checkpoint_path(path))
        learner, cfg = learner_from_checkpoint(ckpt, device)
        loaded.append((str(path), cfg.learner, learner, cfg))
        if cfg.learner == "mb":  # MB+DE is MB's weights updated online: evaluate it too
            loaded.append((str(path), "mbde", mbde_from_mb(learner, cfg), cfg))
    families = {cfg.family for *_, cfg in loaded}
    if len(families) != 1:
        raise ValueError(f"checkpoints come from different families {sorted(families)}: "
                         "compare models of one family at a time")
    return LoadedModels(get_family(families.pop()), loaded)


def compare_models(models: LoadedModels, split: str = "test", trajectories: int = 3,
                   steps: int = 300, horizons: tuple[int, ...] = (1, 10), stride: int = 5,
                   seed: int = 1234) -> ModelComparison:
    """k-step errors of ``models`` (:func:`load_models`) on random-action trajectories of
    ``steps`` control steps of their family (decisions, for ``FAMILY@K``) in its ``split``
    conditions, in units of ``reference_scale``."""
    if min(horizons) < 1:
        raise ValueError(f"horizons={horizons}: every k must be >= 1")
    family = models.family
    data = heldout_data(family, split, trajectories, steps, seed)
    scale = reference_scale(family)
    errors = [ModelErrors(path, name,
                          prediction_errors(learner, data, cfg.m, horizons, stride, False, scale),
                          prediction_errors(learner, data, cfg.m, horizons, stride, True, scale))
              for path, name, learner, cfg in models.learners]
    return ModelComparison(family.name, split, models.learners[0][3].m, horizons,
                           list(data.conditions), data.n_trajectories, data.horizon, errors)
