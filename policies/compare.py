"""`adapt eval-policy`'s comparison: policies (and their adaptive-MPC teacher) on the same
conditions and initial states, runs of one method and architecture pooled, runs of two such
groups paired by training seed.

    comparison = prepare_comparison(checkpoints, teacher, split, n_conditions, seed)
    results = run_comparison(comparison, episodes, steps, seed, ...)  # the JSON of --out
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policies.config import DistillConfig, PolicyTrainConfig
from sims.conditions import Condition
from sims.families import TaskFamily


def eval_conditions(family: TaskFamily, split: str, n: int, seed: int) -> list[Condition]:
    """The conditions `eval-policy` runs every method on: the held-out set, or ``n`` draws of
    the training distribution. The draws have their own stream (``(seed, 1)``), apart from the
    initial states' (``seed``), and are the same for every method."""
    return family.conditions(split, np.random.default_rng((seed, 1)), n)


def group_name(cfg: PolicyTrainConfig) -> str:
    """Runs pooled (and paired by seed) in `eval-policy`: method, architecture and, if set, the
    DAgger rollout noise, so plain and noise-trained students are compared, not pooled."""
    name = f"{cfg.method} {cfg.net.arch}"
    if cfg.method == "distill" and cfg.distill.rollout_action_std:
        name += f" noise {cfg.distill.rollout_action_std:g}"
    return name


def summarize_groups(methods: dict, group_of: dict[str, str],
                     teacher: dict | None) -> dict[str, dict]:
    """Pool runs of one method and architecture (e.g. training seeds): mean of their mean
    returns, standard error across runs, and the ratios against the teacher."""
    groups: dict[str, dict] = {}
    for g in dict.fromkeys(group_of.values()):
        rows = [methods[name] for name, gg in group_of.items() if gg == g]
        means = np.array([r["mean_return"] for r in rows])
        row = {"runs": len(rows), "mean_return": float(means.mean()),
               "sem_across_runs": float(means.std(ddof=1) / np.sqrt(len(means)))
               if len(means) > 1 else float("nan"),
               "ms_median": float(np.median([r["ms_median"] for r in rows])),
               "members": [name for name, gg in group_of.items() if gg == g]}
        if teacher is not None:
            row["return_vs_teacher"] = row["mean_return"] / teacher["mean_return"]
            row["teacher_compute_ratio"] = teacher["ms_median"] / row["ms_median"]
        groups[g] = row
    return groups


def paired_differences(methods: dict, group_of: dict[str, str],
                       seed_of: dict[str, int]) -> dict[str, dict]:
    """For every two groups, the difference of mean returns between their runs of the same
    training seed. Same seed = same DAgger conditions and initial states (round 0 is the
    teacher's own rollouts), so pairing removes what the seed does to both."""
    by_group: dict[str, dict[int, float]] = {}
    ambiguous: set[str] = set()  # two runs of one group with one seed: no unique partner
    for name, g in group_of.items():
        runs = by_group.setdefault(g, {})
        if seed_of[name] in runs:
            ambiguous.add(g)
        runs[seed_of[name]] = methods[name]["mean_return"]
    names = [g for g in by_group if g not in ambiguous]
    out: dict[str, dict] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            seeds = sorted(set(by_group[a]) & set(by_group[b]))
            if len(seeds) < 2:
                continue
            d = np.array([by_group[a][s] - by_group[b][s] for s in seeds])
            out[f"{a} - {b}"] = {"seeds": seeds, "differences": d.tolist(),
                                 "mean": float(d.mean()),
                                 "sem": float(d.std(ddof=1) / np.sqrt(len(d))),
                                 "wins": int((d > 0).sum())}
    return out


@dataclass(frozen=True)
class TrialStats:
    """Returns per episode of a trial over several trials ``[trials, episodes]``."""

    #: Mean return of each episode index.
    mean: np.ndarray
    #: Its standard error across trials.
    sem: np.ndarray
    #: Mean over trials of the last episode's return minus the first's (paired).
    gain: float
    #: Its standard error (None with one trial).
    gain_sem: float | None


def trial_stats(returns: np.ndarray) -> TrialStats:
    """Did later episodes of a trial do better? Paired over trials (same initial states)."""
    gain = returns[:, -1] - returns[:, 0]
    sem = (returns.std(axis=0, ddof=1) / np.sqrt(len(returns)) if len(returns) > 1
           else 0 * returns[0])
    gain_sem = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else None
    return TrialStats(returns.mean(0), sem, gain.mean(), gain_sem)


def labelling_distill(configs: Sequence[PolicyTrainConfig]) -> DistillConfig | None:
    """The distillation settings the distilled policies among ``configs`` were labelled with
    (None without one); refused when they differ in the labelling teacher's planner."""
    labelling = {c.distill.teacher_planner: c.distill for c in configs if c.method == "distill"}
    if len(labelling) > 1:
        raise ValueError("--teacher: the distilled policies were labelled by differently "
                         "configured teachers (distill.teacher_planner) = "
                         f"{sorted(map(repr, labelling))}")
    return next(iter(labelling.values()), None)


@dataclass
class PolicyComparison:
    """What `adapt eval-policy` compares, loaded and checked before any episode runs."""

    family: TaskFamily
    #: Controllers by name: the policy checkpoints as given, then ``teacher:PATH``.
    methods: dict[str, Any]
    #: Policy name -> group_name (runs that differ by seed only).
    group_of: dict[str, str]
    #: Policy name -> training seed (pairs runs across groups).
    seed_of: dict[str, int]
    #: The conditions every method runs on (``eval_conditions``).
    conditions: list[Condition]
    #: The teacher's method name, if one is compared.
    teacher: str | None = None


def prepare_comparison(checkpoints: Sequence[str | Path], teacher: str | None, split: str,
                       n_conditions: int, seed: int, action_std: float = 0.0
                       ) -> PolicyComparison:
    """Load the policies (acting with ``action_std`` noise from one noise seed: the policies
    meet the same draws) and the teacher, planning as it labelled the distilled policies."""
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.runs import checkpoint_path
    from policies.config import policy_config_from_json
    from policies.evaluate import policy_controller, teacher_controller
    from sims.registry import get_family

    methods: dict[str, Any] = {}
    configs = []
    group_of: dict[str, str] = {}
    seed_of: dict[str, int] = {}
    for path in checkpoints:
        ckpt = load_checkpoint(checkpoint_path(path))
        # One noise seed for all: the policies meet the same noise draws (common random numbers).
        methods[str(path)] = policy_controller(ckpt, action_std=action_std, noise_seed=seed)
        configs.append(policy_config_from_json(ckpt["config"]))
        group_of[str(path)] = group_name(configs[-1])
        seed_of[str(path)] = configs[-1].seed
    families = {c.family for c in configs}
    if len(families) != 1:
        raise ValueError(f"policies come from different families {sorted(families)}")
    family = get_family(families.pop())
    name = None
    if teacher:
        # The teacher plans as it did when it labelled the distilled policies.
        name = f"teacher:{teacher}"
        methods[name] = teacher_controller(teacher, distill=labelling_distill(configs))
    conditions = eval_conditions(family, split, n_conditions, seed)
    return PolicyComparison(family, methods, group_of, seed_of, conditions, name)


def run_comparison(comparison: PolicyComparison, episodes: int, steps: int, seed: int,
                   split: str, switch: bool = False, action_std: float = 0.0, trials: int = 0,
                   episodes_per_trial: int = 3,
                   on_method: Callable[[str, Any, dict[bool, np.ndarray]], None] | None = None
                   ) -> dict[str, Any]:
    """Every method on every condition; ``trials`` > 0 also runs RL^2 trials (hidden state
    carried across a trial's episodes, and reset every episode) of the recurrent policies.
    ``on_method(name, EvalResult, {carry: trial returns})`` is told of each method as it is
    done. Returns the results (``--out``'s JSON): per method, per group, and paired."""
    from policies.evaluate import evaluate_policy, evaluate_trials

    c = comparison
    results: dict = {"family": c.family.name, "split": split,
                     "conditions": [cond.label for cond in c.conditions], "switch": switch,
                     "action_std": action_std, "methods": {}}
    for name, ctrl in c.methods.items():
        r = evaluate_policy(ctrl, c.family, episodes, steps, seed, switch=switch,
                     conditions=c.conditions)
        results["methods"][name] = r.to_dict()
        trial_returns: dict[bool, np.ndarray] = {}
        if trials and hasattr(ctrl, "new_condition"):
            for carry in (True, False):
                tr = evaluate_trials(ctrl, c.family, trials, episodes_per_trial, steps, seed,
                                     conditions=c.conditions, carry=carry)
                key = "trial_returns" if carry else "trial_returns_reset_each_episode"
                results["methods"][name][key] = tr.tolist()
                trial_returns[carry] = tr
        if on_method is not None:
            on_method(name, r, trial_returns)
    teacher = results["methods"].get(c.teacher) if c.teacher else None
    results["groups"] = summarize_groups(results["methods"], c.group_of, teacher)
    results["paired"] = paired_differences(results["methods"], c.group_of, c.seed_of)
    return results
