"""The meta-training loop (GrBAL paper, Algorithm 1), top to bottom.

    for iteration in 0..N-1:
        collect: iteration 0 -> random actions in freshly drawn training conditions
                                (or the user's datasets, ``train(..., initial_data=...)``);
                 later      -> the current adaptive controller, on-policy
        aggregate with all earlier data; refit the normalisers
        fit the learner on windows of M past + K future transitions, early-stopping on
        validation windows from held-back trajectories
        checkpoint (atomically): weights, normalisers, optimiser, config, random state

The learner, its optimiser, the meta-batches and the controller's planning live on
``config.device``; simulation stays on the CPU and checkpoints hold CPU tensors.

Every random draw derives from ``(config.seed, iteration, purpose)`` (``builders.run_rng``;
the loop's purposes: 0 conditions and iteration 0's rollouts, 2 the data split and batches,
3 fitting's torch seed, 99 weight init; each on-policy rollout draws from purposes 4 and 5
with its index, ``training.collection``), and each iteration's data is saved before fitting
starts, so a run killed at any point and resumed with ``--resume`` ends with the same data,
weights, optimiser state and logs as one that was never interrupted.

The learner and the controller are built by ``adaptive_control.builders``, as everything that
rebuilds them from a checkpoint builds them.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adaptive_control.builders import build_learner, run_rng, torch_seed
from adaptive_control.checkpoint import save_checkpoint
from adaptive_control.devices import module_device, resolve_device
from adaptive_control.learners import Learner
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.runs import check_run_folder, open_run
from adaptive_control.training.collection import (
    collect_on_policy,
    fall_rule,
    iteration_conditions,
)
from adaptive_control.training.config import OptimConfig, TrainConfig, config_from_json
from adaptive_control.training.data import (
    WindowSampler,
    check_training_data,
    split_by_part,
)
from sims.atomic import atomic_write
from sims.collect import collect_open_loop, flipped_share_of
from sims.dataset import Dataset
from sims.families import TaskFamily
from sims.registry import get_family
from sims.rewards import task_reward
from sims.specs import artifact_spec


# ------------------------------------------------------------------------------ collection
def collect_iteration(it: int, cfg: TrainConfig, family: TaskFamily, learner: Learner,
                      progress: bool) -> Dataset:
    """Iteration 0: random actions (``collect.action_beta``), all rollouts batched in one
    ``mujoco.rollout``. Later: the adaptive controller, on-policy, one rollout at a time on
    ``collect.workers`` processes (``training.collection``: the same data for any number).
    Both end fallen robots' trajectories per ``collect.fall_reset``."""
    rng = run_rng(cfg.seed, it, 0)
    conds = iteration_conditions(it, cfg, family, rng)
    if it == 0:
        return collect_open_loop(family.robot, conds, cfg.episode_steps, rng, progress=progress,
                                 family=family.name, action_beta=cfg.collect.action_beta,
                                 fall_reset=fall_rule(cfg, family))
    return collect_on_policy(it, cfg, family, learner, conds, progress)


#: What collects an iteration's data: ``collect_iteration`` (in this process) by default;
#: ``training.ray_collect.RayCollector`` spreads the rollouts over a Ray cluster.
Collector = Callable[[int, TrainConfig, TaskFamily, Learner, bool], Dataset]


# ------------------------------------------------------------------------------ fitting
@dataclass
class FitResult:
    train_loss: float
    val_loss: float
    epochs: int
    steps: int
    #: Whether patience ended the fit (False: it ran out of ``max_epochs`` while the
    #: validation loss may still have been falling, or there was no validation data).
    early_stopped: bool = False
    #: The epoch whose weights were kept (0: the weights the fit started from).
    best_epoch: int = 0
    #: (epoch, mean training loss, validation loss) per epoch; epoch 0 is the validation loss
    #: before the first step (its training loss NaN).
    curve: list[tuple[int, float, float]] = field(default_factory=list)


def outer_optimizer(learner: Learner, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam at the learner's rate with ``optim.weight_decay`` decoupled from the gradient
    (AdamW's): each step also shrinks every weight by lr × weight_decay."""
    return torch.optim.Adam(learner.parameters(), lr=cfg.learner_config.lr,
                            weight_decay=cfg.optim.weight_decay, decoupled_weight_decay=True)


def epoch_steps(optim: OptimConfig, train_windows: int) -> int:
    """Meta-batches per epoch: ``optim.steps_per_epoch``, or when that is 0, enough to draw
    ``optim.epoch_passes`` times the ``train_windows`` windows (at least one)."""
    if optim.steps_per_epoch:
        return optim.steps_per_epoch
    return max(1, math.ceil(optim.epoch_passes * train_windows / optim.meta_batch))


def fit(learner: Learner, optimizer: torch.optim.Optimizer, data: Dataset,
        part_trajectories: list[int], cfg: TrainConfig, it: int, progress: bool) -> FitResult:
    """Fit on windows of the aggregated data (iterations 0 … ``it``'s data, of
    ``part_trajectories`` trajectories each, in order); early-stop on validation windows; keep
    the best.

    The validation trajectories are each iteration's own held-back share, drawn once by that
    iteration's generator, so no fit validates on trajectories an earlier fit trained on."""
    rng = run_rng(cfg.seed, it, 2)
    torch.manual_seed(torch_seed(cfg.seed, it, 3))
    device = module_device(learner)
    rngs = [run_rng(cfg.seed, i, 2) for i in range(len(part_trajectories) - 1)] + [rng]
    train_idx, val_idx = split_by_part(part_trajectories, cfg.optim.val_fraction, rngs)
    train = WindowSampler(data, cfg.m, cfg.k, train_idx)
    val_batch = None
    if len(val_idx):
        val_batch = WindowSampler(data, cfg.m, cfg.k, val_idx).all_windows(
            limit=cfg.optim.val_windows).to(device)

    def validate() -> float:
        if val_batch is None:
            return math.nan
        learner.eval()
        with torch.enable_grad():  # GrBAL's inner step needs gradients even when scoring
            loss = float(learner.loss(val_batch).detach())
        learner.train()
        return loss

    best_val, best_state, bad_epochs = validate(), copy.deepcopy(learner.state_dict()), 0
    curve = [(0, math.nan, best_val)]
    best_epoch, stopped = 0, False
    losses: list[float] = []
    epochs = steps = 0
    steps_per_epoch = epoch_steps(cfg.optim, train.n_windows)
    bar = tqdm(range(cfg.optim.max_epochs), desc=f"iter {it} fit {cfg.learner}", unit="epoch",
               disable=not progress)
    learner.train()
    for _epoch in bar:
        epoch_losses = []
        for _ in range(steps_per_epoch):
            batch = train.sample(cfg.optim.meta_batch, rng).to(device)
            loss = learner.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(learner.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            epoch_losses.append(float(loss.detach()))
            steps += 1
        epochs += 1
        losses.append(float(np.mean(epoch_losses)))
        val = validate()
        curve.append((epochs, losses[-1], val))
        bar.set_postfix(train=f"{losses[-1]:.4f}", val=f"{val:.4f}")
        if val_batch is None or val < best_val:
            best_val, best_state, bad_epochs = val, copy.deepcopy(learner.state_dict()), 0
            best_epoch = epochs
        else:
            bad_epochs += 1
            if bad_epochs >= cfg.optim.patience:
                stopped = True
                break
    bar.close()
    learner.load_state_dict(best_state)
    learner.reset()
    return FitResult(losses[-1] if losses else math.nan, best_val, epochs, steps, stopped,
                     best_epoch, curve)


# ------------------------------------------------------------------------------ the run
def train(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, collector: Collector | None = None,
          initial_data: Dataset | None = None) -> Path:
    """Meta-train into the folder ``out``; returns the checkpoint path.

    ``collector`` collects each iteration's rollouts (default ``collect_iteration``, here).
    ``initial_data`` (``training.data.load_training_data``) replaces iteration 0's random
    rollouts; later iterations still add on-policy rollouts, so ``iterations=1`` trains
    offline only.

    ``stop_after`` ends the process's work after that many iterations of this call (used to
    simulate a killed run in tests); the checkpoint is as a kill at that point would leave it.
    """
    out = Path(out)
    family = get_family(cfg.family)
    collect = collector or collect_iteration
    device = resolve_device(cfg.device, "device")
    if initial_data is not None:
        check_training_data(initial_data, family, cfg.m, cfg.k)
    check_run_folder(out, resume)
    if initial_data is not None:
        _check_same_data(out / "data" / "iter_000.npz", initial_data)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(torch_seed(cfg.seed, 0, 99))  # weight init
    # Initialised on the CPU (from seeded CPU generators), then moved: same weights anywhere.
    learner = build_learner(cfg, family).to(device)
    optimizer = outer_optimizer(learner, cfg)

    def same_run_config(text: str) -> TrainConfig:
        # A run may be resumed on another device: the device is not part of what must match.
        return replace(config_from_json(text), device=cfg.device)

    with open_run(out, cfg, resume, robot=family.robot.name, parse_config=same_run_config,
                  module=learner, module_key="learner", optimizer=optimizer,
                  tag="train") as run:
        done_this_call = 0
        for it in range(run.iteration, cfg.iterations):
            t0 = time.perf_counter()
            # 1. collect (or reuse what a killed run already collected for this iteration)
            data_path = out / "data" / f"iter_{it:03d}.npz"
            if data_path.exists():
                new = Dataset.load(data_path)
            else:
                new = initial_data if it == 0 and initial_data is not None else collect(
                    it, cfg, family, learner, progress)
                new.save(data_path)
            parts = [Dataset.load(out / "data" / f"iter_{i:03d}.npz") for i in range(it + 1)]
            data = Dataset.concatenate(parts)
            # 2. normalisers from all data so far
            learner.normalizer.update_from(Normalizer.fit(*data.transitions()))
            # 3. fit
            result = fit(learner, optimizer, data, [p.n_trajectories for p in parts], cfg, it,
                         progress)
            # 4. metrics and checkpoint
            row = {
                "iteration": it, "transitions": data.n_transitions,
                "new_transitions": new.n_transitions,
                "dropped_diverged": new.stats.get("dropped_diverged", 0),
                "fall_resets": new.stats.get("fall_resets", 0),
                "flipped_share": flipped_share_of(new, family.robot),
                "collect_return_mean": _mean_return(new, family),
                "train_loss": result.train_loss, "val_loss": result.val_loss,
                "epochs": result.epochs, "fit_steps": result.steps,
                "best_epoch": result.best_epoch, "early_stopped": result.early_stopped,
                "seconds": time.perf_counter() - t0,
            }
            # The fit curve before the checkpoint: a run stopped between the two redoes this
            # iteration, rewriting its rows, instead of resuming after it without them.
            log_fit_curve(out / FIT_CURVE, run.writer, it, result.curve)
            run.metrics.append(row)
            save_checkpoint(run.checkpoint, {
                "robot": family.robot.name, "family": family.name, **artifact_spec(family),
                "learner_name": cfg.learner,
                "config": cfg.to_json(), "iteration": it + 1,
                "learner": learner.state_dict(), "optimizer": optimizer.state_dict(),
                "torch_rng": torch.get_rng_state(), "metrics": json.dumps(run.metrics),
                "obs_dim": family.robot.obs_dim, "act_dim": family.robot.act_dim,
            })
            run.log(row, it)
            if progress:
                print(f"iter {it}: {data.n_transitions} transitions, val "
                      f"{result.val_loss:.4f}, return {row['collect_return_mean']:.1f}, "
                      f"{row['seconds']:.0f} s", flush=True)
            done_this_call += 1
            if stop_after is not None and done_this_call >= stop_after:
                break
        return run.checkpoint


#: Per-epoch training and validation losses of every iteration's fit, beside metrics.csv.
FIT_CURVE = "fit_curve.csv"


def log_fit_curve(path: Path, writer: Any, it: int, curve: list[tuple[int, float, float]]
                  ) -> None:
    """Iteration ``it``'s fit curve: rows (iteration, epoch, train_loss, val_loss) in ``path``
    (rows a killed run left for ``it`` or later are dropped first, so a resumed run writes
    each iteration once) and TensorBoard scalars ``fit/iter_NNN/{train,val}_loss`` by epoch."""
    import csv
    import io

    kept = []
    if path.exists():
        with open(path, newline="") as f:
            kept = [r for r in csv.DictReader(f) if int(r["iteration"]) < it]
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=["iteration", "epoch", "train_loss", "val_loss"])
    w.writeheader()
    w.writerows(kept + [{"iteration": it, "epoch": e, "train_loss": tr, "val_loss": va}
                        for e, tr, va in curve])
    with atomic_write(path) as f:
        f.write(text.getvalue().encode())
    if writer is not None:
        for e, tr, va in curve:
            for name, v in (("train_loss", tr), ("val_loss", va)):
                if math.isfinite(v):
                    writer.add_scalar(f"fit/iter_{it:03d}/{name}", v, e)
        writer.flush()


def _mean_return(data: Dataset, family: TaskFamily) -> float:
    """Mean episode return of a dataset's trajectories, under the task reward; when fall resets
    cut some short, the return of a full episode's worth of transitions (``horizon`` steps)."""
    if data.n_trajectories == 0:
        return math.nan
    fn = task_reward(family.robot)
    r = fn(data.obs[:, :-1].astype(np.float64), data.act.astype(np.float64),
           data.obs[:, 1:].astype(np.float64))
    per_trajectory = np.where(data.transition_mask(), r, 0.0).sum(axis=1)
    if (data.lengths == data.horizon).all():
        return float(per_trajectory.mean())
    return float(per_trajectory.sum() / data.n_transitions * data.horizon)


def _check_same_data(path: Path, data: Dataset) -> None:
    """A resumed run given ``data`` must have started from that data."""
    if not path.exists():
        return
    saved = Dataset.load(path)
    if not (np.array_equal(saved.obs, data.obs) and np.array_equal(saved.act, data.act)):
        raise ValueError(f"--data differs from the data this run started from ({path}): "
                         "resume without --data, or train into another --out")
