"""Evaluate policies on held-out conditions and mid-episode switches; wrap them as controllers.

``policy_controller(checkpoint)`` is the object the project's eval harness uses: ``reset()`` and
``__call__(obs) -> action``, carrying the previous action and reward itself (the reward is
recomputed with ``sims.rewards.task_reward`` from consecutive observations, so only the
observation has to be passed in).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.evaluation.episodes import Actor, PlannerSizes
from adaptive_control.runs import checkpoint_path
from policies.config import ORACLE, DistillConfig, check_action_std, policy_config_from_json
from policies.networks import Policy
from policies.training import policy_from_checkpoint
from sims.conditions import Condition, Schedule
from sims.env import AdaptEnv
from sims.episode import run_episode
from sims.families import TaskFamily
from sims.registry import get_family
from sims.rewards import task_reward


class PolicyController:
    """A trained policy as a controller: ``reset()``, ``__call__(obs) -> action``.

    ``reset()`` starts an episode: previous action and reward go to zero and, unless
    ``keep_hidden=True``, so does the hidden state. Keep it for RL^2-style trials where several
    episodes share one condition; call ``new_condition()`` when the condition changes.
    ``latencies`` holds the seconds each call took.

    ``action_std`` > 0 acts with the policy's mean plus Gaussian noise of that standard
    deviation, in action half-ranges, drawn from ``np.random.default_rng(noise_seed)`` (the
    deploy runtime draws the same sequence). A student of a sampling planner (CEM) regresses
    onto the mean of the planner's noisy actions; adding the teacher's own spread back, measured
    by ``research/label_noise.py``, makes it act like the teacher (docs/policies.md).
    """

    def __init__(self, policy: Policy, reward_fn: Callable, keep_hidden: bool = False,
                 action_std: float = 0.0, noise_seed: int = 0):
        check_action_std(action_std)
        self.policy = policy.eval()
        self.reward_fn = reward_fn
        self.keep_hidden = keep_hidden
        self.latencies: list[float] = []
        self._lo = policy.act_low.numpy().astype(np.float64)
        self._hi = policy.act_high.numpy().astype(np.float64)
        self.action_std = float(action_std)
        self._noise = np.random.default_rng(noise_seed)
        self._noise_scale = self.action_std * (self._hi - self._lo) / 2
        self.new_condition()

    def new_condition(self) -> None:
        """Forget everything, the hidden state included."""
        self.reset()
        self._hidden = self.policy.initial_hidden(1)

    def reset(self) -> None:
        self._prev_obs: np.ndarray | None = None
        self._prev_act = np.zeros(self.policy.act_dim)
        self._prev_rew = 0.0
        if not self.keep_hidden:
            self._hidden = self.policy.initial_hidden(1)

    @torch.inference_mode()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        obs = np.asarray(obs, dtype=np.float64)
        if self._prev_obs is not None:
            self._prev_rew = float(self.reward_fn(self._prev_obs, self._prev_act, obs))
        action, self._hidden = self.policy(
            torch.as_tensor(obs, dtype=torch.float32)[None],
            torch.as_tensor(self._prev_act, dtype=torch.float32)[None],
            torch.tensor([[self._prev_rew]], dtype=torch.float32), self._hidden)
        a = action[0].numpy().astype(np.float64)
        if self.action_std:
            a = a + self._noise_scale * self._noise.standard_normal(a.shape)
        a = np.clip(a, self._lo, self._hi)
        self._prev_obs, self._prev_act = obs, a
        self.latencies.append(time.perf_counter() - t0)
        return a


def policy_controller(checkpoint: str | Path | dict[str, Any], keep_hidden: bool = False,
                      action_std: float = 0.0, noise_seed: int = 0) -> PolicyController:
    """Load an `adapt train-policy` checkpoint (path, run folder or loaded dict) as a controller."""
    ckpt = (checkpoint if isinstance(checkpoint, dict)
            else load_checkpoint(checkpoint_path(checkpoint)))
    policy, cfg = policy_from_checkpoint(ckpt)
    return PolicyController(policy, task_reward(get_family(cfg.family).robot), keep_hidden,
                            action_std, noise_seed)


@dataclass(frozen=True)
class PolicyMethod:
    """A trained policy as an evaluation method (``adaptive_control.evaluation`` factory)."""

    checkpoint: str

    def __call__(self, family: TaskFamily, seed: int, planner: PlannerSizes) -> Actor:
        return Actor(policy_controller(self.checkpoint))

    def describe(self) -> dict[str, str]:
        return {"kind": "policy", "checkpoint": self.checkpoint, "learner": ""}


@dataclass(frozen=True)
class TeacherMethod:
    """The teacher a distilled policy run learnt from, acting as it labelled: deciding at its
    own rate and holding its action between decisions, at the student's control step. The
    privileged teacher (``oracle``) is reported as the oracle, so scores are fractions of it."""

    checkpoint: str

    def _distill(self) -> DistillConfig:
        cfg = policy_config_from_json(load_checkpoint(self.checkpoint)["config"])
        if cfg.method != "distill":
            raise ValueError(f"{self.checkpoint}: a {cfg.method!r} policy has no teacher")
        return cfg.distill

    def __call__(self, family: TaskFamily, seed: int, planner: PlannerSizes) -> Actor:
        from policies.teachers import make_teachers

        (teacher,) = make_teachers(family, self._distill(), [seed])
        return Actor(teacher)

    def describe(self) -> dict[str, str]:
        oracle = self._distill().teacher == ORACLE
        return {"kind": "oracle" if oracle else "teacher", "checkpoint": self.checkpoint,
                "learner": ""}


@dataclass
class EpisodeResult:
    label: str  # condition or schedule label
    ret: float  # episode return
    steps: int
    ms_per_step: float  # mean controller time per call
    ms_median: float  # median controller time per call (robust to preemption on busy machines)
    diverged: bool = False


@dataclass
class EvalResult:
    episodes: list[EpisodeResult] = field(default_factory=list)

    @property
    def mean_return(self) -> float:
        return float(np.mean([e.ret for e in self.episodes]))

    @property
    def sem_return(self) -> float:
        r = np.array([e.ret for e in self.episodes])
        return float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else float("nan")

    @property
    def ms_per_step(self) -> float:
        return float(np.mean([e.ms_per_step for e in self.episodes]))

    @property
    def ms_median(self) -> float:
        return float(np.median([e.ms_median for e in self.episodes]))

    def to_dict(self) -> dict[str, Any]:
        return {"mean_return": self.mean_return, "sem_return": self.sem_return,
                "ms_per_step": self.ms_per_step, "ms_median": self.ms_median,
                "episodes": [e.__dict__ for e in self.episodes]}


def _episode(controller, robot, condition: Condition | Schedule, steps: int,
             rng: np.random.Generator) -> EpisodeResult:
    """One episode of ``controller`` (any ``reset()`` + ``__call__``) under ``condition``."""
    rec = run_episode(AdaptEnv(robot, condition, episode_steps=steps, seed=rng), controller)
    return EpisodeResult(condition.label, rec.ret, rec.steps, 1000 * float(np.mean(rec.seconds)),
                         1000 * float(np.median(rec.seconds)), rec.diverged)


def evaluate_policy(controller, family: TaskFamily, episodes: int = 3, steps: int = 500,
                    seed: int = 1234, switch: bool = False,
                    conditions: Sequence[Condition] | None = None) -> EvalResult:
    """Held-out return and per-step compute of a controller.

    Each held-out condition (``family.test_conditions`` unless given) is run ``episodes`` times;
    with ``switch`` it is reached mid-episode through ``family.switch_scenario``.
    """
    rng = np.random.default_rng(seed)
    result = EvalResult()
    for cond in conditions or family.test_conditions:
        scenario = family.switch_scenario(cond) if switch else cond
        for _ in range(episodes):
            if hasattr(controller, "new_condition"):
                controller.new_condition()
            result.episodes.append(_episode(controller, family.robot, scenario, steps, rng))
    return result


def evaluate_trials(controller: PolicyController, family: TaskFamily, trials: int = 3,
                    episodes_per_trial: int = 3, steps: int = 100, seed: int = 1234,
                    conditions: Sequence[Condition] | None = None,
                    carry: bool = True) -> np.ndarray:
    """RL^2 view: returns ``[conditions * trials, episodes_per_trial]``, the hidden state carried
    across the episodes of a trial and reset between trials.

    ``carry=False`` is the control: the hidden state is reset every episode, on the same
    initial states (same seed), so any rise across a trial's episodes with ``carry=True`` and
    not without it is what the policy remembered from earlier episodes.
    """
    rng = np.random.default_rng(seed)
    keep = controller.keep_hidden
    controller.keep_hidden = carry
    rows = []
    try:
        for cond in conditions or family.test_conditions:
            for _ in range(trials):
                controller.new_condition()
                rows.append([_episode(controller, family.robot, cond, steps, rng).ret
                             for _ in range(episodes_per_trial)])
    finally:
        controller.keep_hidden = keep
    return np.array(rows)


def teacher_controller(checkpoint: str | Path, seed: int = 0,
                       distill: DistillConfig | None = None):
    """The adaptive-MPC controller of an `adapt train` checkpoint (for comparisons), planning
    as it labelled for a policy distilled with ``distill`` (default: as trained)."""
    from adaptive_control.builders import build_controller, learner_from_checkpoint
    from policies.teachers import labelling_config

    learner, cfg = learner_from_checkpoint(load_checkpoint(checkpoint_path(checkpoint)))
    cfg = labelling_config(cfg, distill or DistillConfig())
    return build_controller(learner, cfg, get_family(cfg.family), seed=seed)
