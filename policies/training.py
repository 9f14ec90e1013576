"""`adapt train-policy`: meta-train a policy by DAgger from the adaptive-MPC teacher or by RL^2.

    for iteration in 0..N-1:
        distill: roll out the student (beta-mixture with the teacher, beta = beta0 * decay^i)
                 in trials of training conditions; the teacher labels every visited
                 observation; save the round; aggregate all rounds; update the normalisers;
                 fit the student to the teacher's actions by truncated BPTT on the trials
        rl2:     roll out the stochastic policy in trials of training conditions; GAE over
                 each trial (bootstrapping across its episodes, not past its end); PPO epochs
                 by truncated BPTT; then update the normalisers
        checkpoint (atomically): weights + normalisers, optimiser, config, iteration, metrics

Every random draw derives from ``(config.seed, iteration, purpose)``, and each DAgger round's
data is saved before fitting, so ``--resume`` continues a killed run where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adaptive_control.builders import run_rng, torch_seed
from adaptive_control.checkpoint import load_checkpoint, save_checkpoint
from adaptive_control.runs import check_run_folder, checkpoint_path, open_run
from file_errors import DamagedFileError, missing
from policies.config import PolicyTrainConfig, policy_config_from_json
from policies.networks import Policy
from policies.rollout import (
    TrialBatch,
    draw_slot_seeds,
    run_trials,
    run_trials_parallel,
    training_conditions,
)
from policies.teachers import TeacherFactory, check_teacher
from sims.families import TaskFamily
from sims.registry import get_family
from sims.specs import artifact_spec

CONTENT = "policy"  # marks a policy checkpoint (``adapt train`` writes dynamics models)


# ------------------------------------------------------------------------------ building
def build_policy(cfg: PolicyTrainConfig, family: TaskFamily) -> Policy:
    robot = family.robot
    lo, hi = robot.action_bounds
    return Policy(robot.obs_dim, robot.act_dim, lo, hi, cfg.net)


def policy_from_checkpoint(ckpt: dict[str, Any]) -> tuple[Policy, PolicyTrainConfig]:
    """Rebuild the trained policy (weights and normalisers) from a loaded checkpoint."""
    if ckpt.get("content") != CONTENT:
        raise ValueError("this checkpoint holds no policy (it was not written by "
                         "`adapt train-policy`)")
    cfg = policy_config_from_json(ckpt["config"])
    policy = build_policy(cfg, get_family(cfg.family))
    policy.load_state_dict(ckpt["policy"])
    policy.eval()
    return policy, cfg


def initial_policy(cfg: PolicyTrainConfig, family: TaskFamily, resume: bool = False) -> Policy:
    """The network this run starts from: fresh, or ``cfg.init``'s weights and normalisers with
    the Gaussian head reset to ``net.init_log_std`` (a distilled student never trained it).
    ``cfg.init`` is refused (field, value, what is allowed) unless it is a policy of the same
    family and network. A resumed run restores its own checkpoint instead, so ``init`` is
    neither read nor needed then."""
    policy = build_policy(cfg, family)
    if not cfg.init or resume:
        return policy
    value = f"init={cfg.init!r}"
    path = checkpoint_path(cfg.init)
    if not path.is_file():
        raise ValueError(f"{value}: no such run folder or checkpoint; allowed an `adapt "
                         "train-policy` run folder or its checkpoint.pt")
    try:
        start, start_cfg = policy_from_checkpoint(load_checkpoint(path))
    except ValueError as e:
        raise ValueError(f"{value}: {e}") from e
    if start_cfg.family != cfg.family:
        raise ValueError(f"{value} was trained on family {start_cfg.family!r}, this run is "
                         f"on {cfg.family!r}: allowed a policy of the same family")
    differ = [f"net.{f.name}: {getattr(start_cfg.net, f.name)!r} there, "
              f"{getattr(cfg.net, f.name)!r} here" for f in dataclasses.fields(cfg.net)
              if f.name != "init_log_std"
              and getattr(start_cfg.net, f.name) != getattr(cfg.net, f.name)]
    if differ:
        raise ValueError(f"{value} has another network ({'; '.join(differ)}): allowed a "
                         "policy whose net settings match this run's (set them with --set)")
    policy.load_state_dict(start.state_dict())
    with torch.no_grad():
        policy.log_std.fill_(cfg.net.init_log_std)
    return policy


def save_policy_checkpoint(path: Path, cfg: PolicyTrainConfig, family: TaskFamily,
                           policy: Policy, optimizer: torch.optim.Optimizer, iteration: int,
                           metrics: list[dict[str, Any]]) -> Path:
    """Write a policy checkpoint (atomically) that `policy_from_checkpoint`, ``--resume``,
    `adapt eval-policy` and `adapt export-policy` read."""
    return save_checkpoint(path, {
        "content": CONTENT, "robot": family.robot.name, "family": family.name,
        **artifact_spec(family),
        "method": cfg.method, "arch": cfg.net.arch, "config": cfg.to_json(),
        "iteration": iteration, "policy": policy.state_dict(),
        "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
        "metrics": json.dumps(metrics), "obs_dim": family.robot.obs_dim,
        "act_dim": family.robot.act_dim, "hidden_dim": policy.hidden_dim,
        "control_timestep": family.robot.control_timestep,
    })


# ------------------------------------------------------------------------------ helpers
def gae(rewards: np.ndarray, values: np.ndarray, ends: np.ndarray, gamma: float,
        lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over ``[T, N]`` arrays.

    ``ends[t]`` marks the last step of a trial: nothing is bootstrapped past it (a trial is the
    RL^2 objective's horizon). Returns (advantages, value targets = advantages + values).
    """
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1])
    for t in reversed(range(rewards.shape[0])):
        cont = 1.0 - ends[t].astype(np.float64)
        next_value = values[t + 1] if t + 1 < len(values) else np.zeros(rewards.shape[1])
        delta = rewards[t] + gamma * next_value * cont - values[t]
        last = delta + gamma * lam * cont * last
        adv[t] = last
    return adv, adv + values


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x)


def _clip_step(policy: Policy, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
               grad_clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
    optimizer.step()


def _episode_metrics(batch: TrialBatch) -> dict[str, float]:
    """Mean return of each episode index within a trial (did later episodes do better?)."""
    per_ep = batch.episode_returns.mean(axis=(0, 1))
    row = {"return_mean": float(per_ep.mean())}
    row.update({f"return_ep{e}": float(r) for e, r in enumerate(per_ep)})
    return row


# ------------------------------------------------------------------------------ distillation
DATA_KEYS = ("obs", "prev_act", "prev_rew", "resets", "teacher_act")


def imitation_error(policy: Policy, data: Mapping[str, np.ndarray]) -> float:
    """The policy's mean action against the teacher's labels on whole labelled trials
    (``DATA_KEYS``, ``[T, N]``): squared error per action dimension in action half-ranges, the
    unit of the distillation loss."""
    with torch.no_grad():
        mean, _, _ = policy.unroll(*(_t(np.asarray(data[k])) for k in DATA_KEYS[:4]),
                                   policy.initial_hidden(data["obs"].shape[1]))
    half = ((policy.act_high - policy.act_low) / 2).numpy()
    return float((((mean.numpy() - np.asarray(data["teacher_act"])) / half) ** 2).mean())


def distill_fit(policy: Policy, optimizer: torch.optim.Optimizer, data: dict[str, np.ndarray],
                cfg: PolicyTrainConfig, rng: np.random.Generator,
                progress: bool = False, val: Mapping[str, np.ndarray] | None = None
                ) -> float | dict[str, Any]:
    """Fit the student's mean action to the teacher's by truncated BPTT over whole trials.

    Trials ``[T, N]`` are minibatched along N; each minibatch runs through time in chunks of
    ``cfg.bptt`` steps with one optimiser step per chunk, the hidden state carried (detached)
    from chunk to chunk. Returns the last epoch's mean loss (squared error per action dim,
    in units of the action half-range).

    With ``val`` (held-back trials): after every epoch the student's error on them; the fit
    stops once it has not improved for ``distill.patience`` epochs (0: never) and the best
    epoch's weights are kept. Returns then the curve: ``train_loss`` (of the kept epoch),
    ``val_loss``, ``best_epoch``, ``epochs`` run and the per-epoch ``curve``.
    """
    n = data["obs"].shape[1]
    half = (policy.act_high - policy.act_low) / 2
    tensors = {k: _t(data[k]) for k in DATA_KEYS}
    policy.train()
    epoch_loss = math.nan
    curve: list[tuple[float, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    bar = tqdm(range(cfg.distill.epochs), desc="fit", unit="epoch", disable=not progress)
    for epoch in bar:
        losses = []
        order = rng.permutation(n)
        for s in range(0, n, cfg.distill.batch_trials):
            idx = torch.as_tensor(order[s:s + cfg.distill.batch_trials])
            b = {k: v[:, idx] for k, v in tensors.items()}
            hidden = policy.initial_hidden(len(idx))
            for c in range(0, b["obs"].shape[0], cfg.bptt):
                sl = slice(c, c + cfg.bptt)
                mean, _, hidden = policy.unroll(b["obs"][sl], b["prev_act"][sl],
                                                b["prev_rew"][sl], b["resets"][sl], hidden)
                loss = (((mean - b["teacher_act"][sl]) / half) ** 2).mean()
                _clip_step(policy, optimizer, loss, cfg.grad_clip)
                hidden = hidden.detach()
                losses.append(float(loss.detach()))
        epoch_loss = float(np.mean(losses))
        if val is None:
            bar.set_postfix(loss=f"{epoch_loss:.4f}")
            continue
        val_loss = imitation_error(policy, val)
        policy.train()
        curve.append((epoch_loss, val_loss))
        bar.set_postfix(loss=f"{epoch_loss:.4f}", val=f"{val_loss:.4f}")
        if best is None or val_loss < best[0]:
            best = (val_loss, epoch, copy.deepcopy(policy.state_dict()))
        elif cfg.distill.patience and epoch - best[1] >= cfg.distill.patience:
            break
    policy.eval()
    if val is None:
        return epoch_loss
    assert best is not None
    policy.load_state_dict(best[2])
    return {"train_loss": curve[best[1]][0], "val_loss": best[0], "best_epoch": best[1],
            "epochs": len(curve), "curve": curve}


def check_round0(path: str | Path, cfg: PolicyTrainConfig, family: TaskFamily) -> None:
    """Refuse a ``distill.round0`` dataset this run could not have collected as its round 0
    (field, value, what differs), before any work."""
    value = f"distill.round0={str(path)!r}"
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{value}: no such file; allowed a labelled round-0 dataset "
                         "(data/round_000.npz of a distillation run)")
    keys = (*DATA_KEYS, "episode_returns")
    expected = f"an .npz archive of the arrays {', '.join(keys)}"
    try:
        with np.load(p, allow_pickle=False) as z:
            absent = set(keys) - set(z.files)
            if absent:
                raise DamagedFileError("distill.round0", p, "a round-0 dataset", expected,
                                       missing("array", absent, z.files))
            shapes = {k: z[k].shape for k in keys}
    except DamagedFileError:
        raise
    except Exception as e:  # numpy's and zipfile's errors for bytes that are no .npz archive
        raise DamagedFileError("distill.round0", p, "a round-0 dataset", expected) from e
    t = cfg.trial.episode_steps * cfg.trial.episodes_per_trial
    want = {"obs": (t, cfg.trial.trials_per_iter, family.robot.obs_dim),
            "teacher_act": (t, cfg.trial.trials_per_iter, family.robot.act_dim)}
    for k, shape in want.items():
        if shapes[k] != shape:
            raise ValueError(f"{value}: {k} has shape {shapes[k]}, this run's round 0 has "
                             f"{shape} (trial layout x trials x {family.name}'s dims): "
                             "allowed a round 0 of the same family and trial layout")
    meta = p.parent.parent / "config.json"
    if meta.is_file():  # the run that collected it: same teacher, seed, trials
        other = policy_config_from_json(meta.read_text())
        same = {"family": (other.family, cfg.family), "seed": (other.seed, cfg.seed),
                "trial": (other.trial, cfg.trial),
                "distill.teacher": (other.distill.teacher, cfg.distill.teacher),
                "distill.teacher_planner": (other.distill.teacher_planner,
                                            cfg.distill.teacher_planner),
                "distill.teacher_decision_steps": (other.distill.teacher_decision_steps,
                                                   cfg.distill.teacher_decision_steps),
                "distill.teacher_action_std": (other.distill.teacher_action_std,
                                               cfg.distill.teacher_action_std)}
        differ = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in same.items() if a != b]
        if differ:
            raise ValueError(f"{value} was collected by a run that differs from this one in "
                             + "; ".join(differ) + ": allowed a round 0 of the same teacher, "
                             "seed, family and trial layout")


def distill_iteration(it: int, cfg: PolicyTrainConfig, family: TaskFamily, policy: Policy,
                      optimizer: torch.optim.Optimizer, out: Path,
                      progress: bool) -> dict[str, Any]:
    """One DAgger round: collect (or reuse a killed run's, or round 0 from
    ``distill.round0``) data, aggregate, refit."""
    beta = cfg.distill.beta0 * cfg.distill.beta_decay ** it
    path = out / "data" / f"round_{it:03d}.npz"
    row: dict[str, Any] = {"beta": beta}
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        if it == 0 and cfg.distill.round0:
            shutil.copyfile(cfg.distill.round0, path.with_suffix(".tmp"))
        else:
            rng = run_rng(cfg.seed, it, 0)
            conds = training_conditions(family, cfg.trial, rng, cfg.trial.trials_per_iter)
            batch = run_trials_parallel(
                policy, family, conds, cfg.trial, rng, workers=cfg.workers,
                teachers=TeacherFactory.of(family, cfg.distill),
                teacher_seeds=draw_slot_seeds(run_rng(cfg.seed, it, 3), len(conds)),
                beta=beta, action_std=cfg.distill.rollout_action_std,
                teacher_action_std=cfg.distill.teacher_action_std,
                noise_rng=run_rng(cfg.seed, it, 2), progress=progress,
                desc=f"round {it} (beta={beta:.2f})")
            arrays = {k: getattr(batch, k) for k in DATA_KEYS}
            with open(path.with_suffix(".tmp"), "wb") as f:
                np.savez(f, **arrays, episode_returns=batch.episode_returns)
        path.with_suffix(".tmp").replace(path)
    rounds = [np.load(out / "data" / f"round_{i:03d}.npz") for i in range(it + 1)]
    new = rounds[-1]
    per_ep = new["episode_returns"].mean(axis=(0, 1))
    row["return_mean"] = float(per_ep.mean())
    row.update({f"return_ep{e}": float(r) for e, r in enumerate(per_ep)})
    # How far the executed rollout's student was from the teacher before refitting.
    row["student_error_before"] = imitation_error(policy, new)
    # The last trials of every round are held back (the same ones each round: a round's
    # trials are independent draws, so the last ones are as good as any).
    n_val = round(cfg.distill.val_share * cfg.trial.trials_per_iter)
    keep = slice(None, -n_val if n_val else None)
    data = {k: np.concatenate([r[k][:, keep] for r in rounds], axis=1) for k in DATA_KEYS}
    val = ({k: np.concatenate([r[k][:, -n_val:] for r in rounds], axis=1) for k in DATA_KEYS}
           if n_val else None)
    policy.obs_norm.update(_t(new["obs"]))  # running stats == statistics of the aggregate
    policy.rew_norm.update(_t(new["prev_rew"]))
    row["trials"] = data["obs"].shape[1]
    fit = distill_fit(policy, optimizer, data, cfg, run_rng(cfg.seed, it, 1), progress, val)
    if isinstance(fit, dict):
        curve = fit.pop("curve")
        row.update(fit)
        write_fit_curve(out, it, curve)
    else:
        row["train_loss"] = fit
    return row


def write_fit_curve(out: Path, it: int, curve: list[tuple[float, float]]) -> None:
    """Append round ``it``'s per-epoch train and validation losses to ``out/fit_curve.csv``
    (a resumed round rewrites its rows)."""
    path = out / "fit_curve.csv"
    rows = [r for r in (path.read_text().splitlines()[1:] if path.exists() else [])
            if int(r.split(",")[0]) != it]
    rows += [f"{it},{e},{t:.6g},{v:.6g}" for e, (t, v) in enumerate(curve)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("round,epoch,train_loss,val_loss\n" + "\n".join(rows) + "\n")
    tmp.replace(path)


# ------------------------------------------------------------------------------ RL^2 (PPO)
def fit_value_head(policy: Policy, batch: TrialBatch, cfg: PolicyTrainConfig,
                   ridge: float = 1e-3) -> dict[str, float]:
    """Set the (linear) value head to the least-squares fit of the discounted returns of
    ``batch``'s trials on the features it reads, every other weight left as it is: the value
    warm-up of a policy started from ``init``, whose head was never trained (a few small Adam
    steps would leave it far from returns in the tens, and PPO would follow its errors)."""
    p = cfg.ppo
    returns, _ = gae(batch.reward * p.reward_scale, np.zeros_like(batch.value),
                     batch.trial_end, p.gamma, 1.0)  # lambda 1, value 0: Monte-Carlo returns
    features: list[torch.Tensor] = []
    hook = policy.value_head.register_forward_pre_hook(lambda _m, a: features.append(a[0]))
    try:
        with torch.no_grad():
            policy.unroll(_t(batch.obs), _t(batch.prev_act), _t(batch.prev_rew),
                          _t(batch.resets), policy.initial_hidden(batch.obs.shape[1]))
    finally:
        hook.remove()
    z = torch.cat(features).double()
    z = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
    y = torch.as_tensor(returns, dtype=torch.float64).reshape(-1, 1)
    w = torch.linalg.solve(z.T @ z + ridge * torch.eye(z.shape[1], dtype=z.dtype), z.T @ y)
    with torch.no_grad():
        policy.value_head.weight.copy_(w[:-1, 0].float()[None])
        policy.value_head.bias.copy_(w[-1].float())
    residual = float(((z @ w - y) ** 2).mean())
    return {"value_loss": residual, "value_explained": 1.0 - residual / float(y.var())}


def ppo_update(policy: Policy, optimizer: torch.optim.Optimizer, batch: TrialBatch,
               cfg: PolicyTrainConfig, rng: np.random.Generator) -> dict[str, float]:
    """PPO epochs over the trials of one iteration, truncated BPTT in chunks of ``cfg.bptt``."""
    p = cfg.ppo
    adv, ret = gae(batch.reward * p.reward_scale, batch.value, batch.trial_end, p.gamma, p.lam)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    tensors = {"obs": _t(batch.obs), "prev_act": _t(batch.prev_act),
               "prev_rew": _t(batch.prev_rew), "resets": _t(batch.resets),
               "sample": _t(batch.sample), "logp": _t(batch.logp),
               "adv": _t(adv.astype(np.float32)), "ret": _t(ret.astype(np.float32))}
    n = batch.obs.shape[1]
    chunks = math.ceil(batch.obs.shape[0] / cfg.bptt)
    stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "approx_kl": []}
    policy.train()
    stopped = False
    for _ in range(p.epochs):
        if stopped:
            break
        order = rng.permutation(n)
        for s in range(0, n, p.batch_trials):
            idx = torch.as_tensor(order[s:s + p.batch_trials])
            b = {k: v[:, idx] for k, v in tensors.items()}
            hidden = policy.initial_hidden(len(idx))
            for c in range(0, b["obs"].shape[0], cfg.bptt):
                sl = slice(c, c + cfg.bptt)
                mean, value, hidden = policy.unroll(b["obs"][sl], b["prev_act"][sl],
                                                    b["prev_rew"][sl], b["resets"][sl], hidden)
                logp = policy.log_prob(mean, b["sample"][sl])
                ratio = torch.exp(logp - b["logp"][sl])
                a = b["adv"][sl]
                pl = -torch.min(ratio * a, ratio.clamp(1 - p.clip, 1 + p.clip) * a).mean()
                vl = ((value - b["ret"][sl]) ** 2).mean()
                loss = pl + p.value_coef * vl - p.entropy_coef * policy.entropy()
                _clip_step(policy, optimizer, loss, cfg.grad_clip)
                hidden = hidden.detach()
                stats["policy_loss"].append(float(pl.detach()))
                stats["value_loss"].append(float(vl.detach()))
                # Schulman's k3 estimator of KL(old || new): never negative, low variance.
                log_ratio = (logp - b["logp"][sl]).detach()
                stats["approx_kl"].append(float((log_ratio.exp() - 1 - log_ratio).mean()))
            # The minibatch's divergence over all its chunks, after its last step.
            kl = float(np.mean(stats["approx_kl"][-chunks:]))
            if p.target_kl and kl > 1.5 * p.target_kl:
                stopped = True
                break
    policy.eval()
    out = {k: float(np.mean(v)) for k, v in stats.items()}
    out["updates"] = len(stats["policy_loss"])
    out["std_mean"] = float(policy.log_std.exp().mean().detach())
    return out


def rl2_iteration(it: int, cfg: PolicyTrainConfig, family: TaskFamily, policy: Policy,
                  optimizer: torch.optim.Optimizer, progress: bool) -> dict[str, Any]:
    """One PPO iteration over freshly drawn training trials."""
    rng = run_rng(cfg.seed, it, 0)
    conds = training_conditions(family, cfg.trial, rng, cfg.trial.trials_per_iter)
    batch = run_trials(policy, family.robot, conds, cfg.trial, rng, explore=True,
                       progress=progress, desc=f"iter {it}")
    row: dict[str, Any] = _episode_metrics(batch)
    warmup = it < cfg.ppo.value_warmup
    row.update(fit_value_head(policy, batch, cfg) if warmup
               else ppo_update(policy, optimizer, batch, cfg, run_rng(cfg.seed, it, 1)))
    row["value_only"] = warmup
    # After the update, so the update scores actions with the inputs they were sampled under.
    # A policy started from ``init`` keeps the statistics it was trained under: moving them
    # would shift every input of the weights being fine-tuned.
    if not cfg.init:
        policy.obs_norm.update(_t(batch.obs))
        policy.rew_norm.update(_t(batch.reward[..., None]))
    row["diverged"] = batch.diverged
    return row


# ------------------------------------------------------------------------------ the run
def train_policy(cfg: PolicyTrainConfig, out: str | Path, resume: bool = False,
                 progress: bool = True, stop_after: int | None = None) -> Path:
    """Train into the folder ``out``; returns the checkpoint path.

    ``stop_after`` ends this call after that many iterations (simulates a killed run in tests).
    """
    out = Path(out)
    family = get_family(cfg.family)
    check_run_folder(out, resume)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.method == "distill":  # the teacher and a shared round 0, before any work
        check_teacher(family, cfg.distill)
        if cfg.distill.round0 and not resume:
            check_round0(cfg.distill.round0, cfg, family)
    torch.manual_seed(torch_seed(cfg.seed, 0, 99))  # weight init
    policy = initial_policy(cfg, family, resume)
    lr = cfg.distill.lr if cfg.method == "distill" else cfg.ppo.lr
    decay = cfg.distill.weight_decay if cfg.method == "distill" else 0.0
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr, weight_decay=decay)
    with open_run(out, cfg, resume, robot=family.robot.name,
                  parse_config=policy_config_from_json, module=policy, module_key="policy",
                  optimizer=optimizer, tag="train_policy") as run:
        done = 0
        for it in range(run.iteration, cfg.iterations):
            t0 = time.perf_counter()
            if cfg.method == "distill":
                row = distill_iteration(it, cfg, family, policy, optimizer, out, progress)
            else:
                row = rl2_iteration(it, cfg, family, policy, optimizer, progress)
            row = {"iteration": it, **row, "seconds": time.perf_counter() - t0}
            run.metrics.append(row)
            save_policy_checkpoint(run.checkpoint, cfg, family, policy, optimizer, it + 1,
                                   run.metrics)
            run.log(row, it)
            if progress:
                print(f"iter {it}: return {row['return_mean']:.1f}, "
                      + ", ".join(f"{k} {row[k]:.4g}" for k in ("train_loss", "policy_loss")
                                  if k in row) + f", {row['seconds']:.0f} s", flush=True)
            done += 1
            if stop_after is not None and done >= stop_after:
                break
        return run.checkpoint
