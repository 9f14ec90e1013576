"""Typed configuration of `adapt train-policy`: dataclasses, presets, files and overrides.

Same conventions as ``adaptive_control.training.config``, loaded by the same
``adaptive_control.config_loader``: every field typed with a one-line doc comment; unknown keys
and bad values are refused (field, value, what is allowed) before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptive_control.config_loader import INHERITED, build_dataclass, layered_values
from adaptive_control.planning import PLANNER_CONFIGS, PLANNER_NAMES, PlannerConfig

METHODS = ("distill", "rl2")
#: ``distill.teacher`` of the privileged teacher: the planner on the true simulator.
ORACLE = "oracle"
ARCHS = ("gru", "lstm", "mlp")


def check_action_std(action_std: float, name: str = "action_std") -> None:
    """Refuse a negative or non-finite action noise (``name``: the field, for the message)."""
    if not (isinstance(action_std, (int, float)) and math.isfinite(action_std)
            and action_std >= 0):
        raise ValueError(f"{name}={action_std!r}: allowed a number >= 0 (standard "
                         "deviation of the action noise in action half-ranges; 0 = the mean)")


@dataclass(frozen=True)
class PolicyNetConfig:
    """The policy network."""

    #: gru or lstm (recurrent, one layer) or mlp (feed-forward, the comparison).
    arch: str = "gru"
    #: Recurrent state size (gru/lstm).
    hidden_size: int = 128
    #: Widths of the MLP layers before the recurrent cell (gru/lstm) or of the whole MLP.
    mlp_sizes: tuple[int, ...] = (128,)
    #: Initial log standard deviation of the Gaussian head (PPO exploration).
    init_log_std: float = -0.5
    #: Feed the previous action and reward besides the observation (RL^2 needs them). Off for
    #: students of a teacher that holds its decisions: there the label mostly equals the
    #: previous action, and a student that sees it learns to copy it ("copycat" causal
    #: confusion, de Haan et al. 2019; Wen et al. 2020) and then repeats its own actions.
    prev_inputs: bool = True


@dataclass(frozen=True)
class TrialConfig:
    """How rollouts are organised: trials of several episodes of one condition."""

    #: Episodes per trial: the hidden state is carried across them (RL^2), reset between trials.
    episodes_per_trial: int = 2
    #: Control steps per episode.
    episode_steps: int = 500
    #: Trials run side by side (one training condition each) per iteration.
    trials_per_iter: int = 8
    #: Share of trials whose robot starts healthy and fails mid-episode: the drawn training
    #: condition comes in at a time drawn from ``failure_at_s``, so the condition can only be
    #: told from the history since (what a recurrent policy's memory is for).
    failure_share: float = 0.0
    #: Range (seconds into each episode) of the mid-episode failure time.
    failure_at_s: tuple[float, float] = (1.0, 4.0)


@dataclass(frozen=True)
class DistillConfig:
    """DAgger from the adaptive-MPC teacher."""

    #: The teacher: ``oracle`` (privileged: the MPC planner on the true simulator of the
    #: condition in force) or an `adapt train` run folder or its checkpoint.pt of the same
    #: family (at any decision step, ``FAMILY@K``); required with method = distill (no default
    #: path: it would resolve against whatever directory the command runs in).
    teacher: str = ""
    #: Control steps per decision of the oracle teacher, which holds its action in between
    #: (0: the robot's default decision step, the cheetah's 5 = 50 ms). A run teacher decides
    #: at the step it was trained at.
    teacher_decision_steps: int = 0
    #: A labelled round-0 dataset (a run's ``data/round_000.npz``) used instead of collecting
    #: round 0: teacher-only rollouts (beta0 = 1) do not depend on the student, so students
    #: of one teacher and seed (GRU and MLP) can share them. Checked against this run's
    #: family, trial layout and teacher before any work.
    round0: str = ""
    #: Probability of executing the teacher's action in round 0 (1 = pure teacher rollouts).
    beta0: float = 1.0
    #: beta in round i is beta0 * beta_decay**i (per-step mixture of teacher and student).
    beta_decay: float = 0.5
    #: Gradient passes over the aggregated trials per round (the most, with ``patience``).
    epochs: int = 30
    #: Share of each round's trials held back to validate the fit (0: none, fit ``epochs``).
    val_share: float = 0.0
    #: With held-back trials: stop once the validation loss has not improved for this many
    #: epochs and keep the best epoch's weights (0: run every epoch, keep the best).
    patience: int = 0
    #: Adam's L2 weight decay on the student's weights.
    weight_decay: float = 0.0
    #: Trials per minibatch.
    batch_trials: int = 8
    #: Adam learning rate.
    lr: float = 1e-3
    #: Planner of the labelling teacher: none = the checkpoint's own, else a planner table
    #: (its ``name`` and settings, unset ones at that planner's defaults) or a planner name.
    #: The teacher need not run in real time; a planner whose action varies less from call to
    #: call at the same state gives cleaner labels (docs/policies.md).
    teacher_planner: PlannerConfig | None = None
    #: Gaussian noise added to the student's executed action in DAgger rollouts, in action
    #: half-ranges (0 = the mean action). Set it to the --action-std the student will act with,
    #: so it is trained on the states that noisy acting visits (DART, Laskey et al. 2017).
    rollout_action_std: float = 0.0
    #: Gaussian noise added to the teacher's action where it is executed, in action
    #: half-ranges (its label stays the clean action): its rollouts then visit states around
    #: its own trajectories, labelled with how it recovers (DART on the supervisor, Laskey et
    #: al. 2017). 0: none.
    teacher_action_std: float = 0.0


@dataclass(frozen=True)
class PPOConfig:
    """PPO over trials (RL^2)."""

    #: Discount per control step.
    gamma: float = 0.99
    #: GAE lambda.
    lam: float = 0.95
    #: Clipping of the probability ratio.
    clip: float = 0.2
    #: Passes over each iteration's trials.
    epochs: int = 4
    #: Trials per minibatch.
    batch_trials: int = 4
    #: Adam learning rate.
    lr: float = 3e-4
    #: Weight of the value loss.
    value_coef: float = 0.5
    #: Weight of the entropy bonus.
    entropy_coef: float = 0.0
    #: Scale applied to rewards before GAE (keeps value targets near unit size).
    reward_scale: float = 0.1
    #: Stop an iteration's PPO passes once a minibatch's approximate KL divergence from the
    #: rollout policy exceeds 1.5 x this (0: never): bounds how far one iteration moves a
    #: narrow policy, which a fixed learning rate does not (a fine-tune's std of 0.2 turns
    #: small mean changes into large divergences).
    target_kl: float = 0.0
    #: First iterations that only set the value head (least squares on the returns), the
    #: policy left as it is: a policy started from ``init`` (a distilled student) has an
    #: untrained value head, and PPO steps on its noise would undo what was distilled.
    value_warmup: int = 0


@dataclass(frozen=True)
class PolicyTrainConfig:
    """One `adapt train-policy` run."""

    #: distill (DAgger from an adaptive-MPC teacher) or rl2 (PPO with a recurrent policy).
    method: str = "distill"
    #: Task family whose training split is trained on (see `adapt sims list`).
    family: str = "cheetah-cripple"
    #: Outer iterations (DAgger rounds, or PPO iterations).
    iterations: int = 6
    #: Truncated BPTT: gradients flow through at most this many steps.
    bptt: int = 50
    #: Clip the gradient norm to this (0 = no clipping).
    grad_clip: float = 1.0
    #: Master seed: every random draw of the run derives from it.
    seed: int = 0
    #: Torch threads (0 = leave torch's default).
    threads: int = 1
    #: Worker processes that run a round's rollouts, its slots split between them (1 = in
    #: this process). Teacher-only rounds give the same data as one process.
    workers: int = 1
    #: A policy run folder or its checkpoint.pt whose weights and normalisers start this run
    #: (with method rl2: a PPO fine-tune of a distilled student); same family and ``net``,
    #: except the Gaussian head, which restarts at ``net.init_log_std``. "": a fresh network.
    init: str = ""
    #: Policy network.
    net: PolicyNetConfig = field(default_factory=PolicyNetConfig)
    #: Trial layout of rollouts.
    trial: TrialConfig = field(default_factory=TrialConfig)
    #: DAgger settings (method = distill).
    distill: DistillConfig = field(default_factory=DistillConfig)
    #: PPO settings (method = rl2).
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is unknown: allowed {', '.join(METHODS)}")
        if self.net.arch not in ARCHS:
            raise ValueError(f"net.arch={self.net.arch!r} is unknown: allowed {', '.join(ARCHS)}")
        from sims.registry import get_family

        # A spec file (PATH.toml#FAMILY) is loaded and registered here; the run stores the
        # family's name, and its checkpoint the spec itself.
        object.__setattr__(self, "family", get_family(self.family).name)
        positive = {"iterations": self.iterations, "bptt": self.bptt,
                    "net.hidden_size": self.net.hidden_size,
                    "trial.episodes_per_trial": self.trial.episodes_per_trial,
                    "trial.episode_steps": self.trial.episode_steps,
                    "trial.trials_per_iter": self.trial.trials_per_iter,
                    "workers": self.workers,
                    "distill.epochs": self.distill.epochs,
                    "distill.batch_trials": self.distill.batch_trials,
                    "ppo.epochs": self.ppo.epochs, "ppo.batch_trials": self.ppo.batch_trials}
        if not (math.isfinite(self.ppo.target_kl) and self.ppo.target_kl >= 0):
            raise ValueError(f"ppo.target_kl={self.ppo.target_kl!r} is out of range: allowed a "
                             "number >= 0 (0: no early stop)")
        if self.ppo.value_warmup < 0 or self.ppo.value_warmup >= self.iterations:
            raise ValueError(f"ppo.value_warmup={self.ppo.value_warmup!r} is out of range: "
                             f"allowed 0 <= value_warmup < iterations={self.iterations}")
        for name, v in positive.items():
            if v < 1:
                raise ValueError(f"{name}={v!r} is out of range: allowed >= 1")
        if any(w < 1 for w in self.net.mlp_sizes):
            raise ValueError(f"net.mlp_sizes={self.net.mlp_sizes!r}: every width must be >= 1")
        for name, v, lo, hi in (("distill.beta0", self.distill.beta0, 0.0, 1.0),
                                ("distill.beta_decay", self.distill.beta_decay, 0.0, 1.0),
                                ("ppo.gamma", self.ppo.gamma, 0.0, 1.0),
                                ("ppo.lam", self.ppo.lam, 0.0, 1.0)):
            if not lo <= v <= hi:
                raise ValueError(f"{name}={v!r} is out of range: allowed [{lo}, {hi}]")
        for name, v in (("distill.lr", self.distill.lr), ("ppo.lr", self.ppo.lr),
                        ("ppo.clip", self.ppo.clip), ("ppo.reward_scale", self.ppo.reward_scale)):
            if not v > 0:
                raise ValueError(f"{name}={v!r} is out of range: allowed > 0")
        teacher = self.distill.teacher_planner
        if teacher is not None and not isinstance(teacher, PLANNER_CONFIGS):
            raise ValueError(f"distill.teacher_planner={teacher!r} is not a planner config: "
                             f"allowed none (the teacher's own) or the configs of "
                             f"{', '.join(PLANNER_NAMES)}")
        check_action_std(self.distill.rollout_action_std, "distill.rollout_action_std")
        check_action_std(self.distill.teacher_action_std, "distill.teacher_action_std")
        if not 0.0 <= self.trial.failure_share <= 1.0:
            raise ValueError(f"trial.failure_share={self.trial.failure_share!r} is out of "
                             "range: allowed [0, 1]")
        lo, hi = self.trial.failure_at_s
        episode_s = self.trial.episode_steps * get_family(self.family).robot.control_timestep
        if self.trial.failure_share and not 0 < lo <= hi < episode_s:
            raise ValueError(f"trial.failure_at_s={self.trial.failure_at_s!r}: allowed "
                             f"0 < FIRST <= LAST < the episode's {episode_s:g} s")
        d = self.distill
        if isinstance(d.teacher_decision_steps, bool) or d.teacher_decision_steps < 0:
            raise ValueError(f"distill.teacher_decision_steps={d.teacher_decision_steps!r}: "
                             "allowed an integer >= 0 (0: the robot's default)")
        if d.teacher_decision_steps and d.teacher != ORACLE:
            raise ValueError(f"distill.teacher_decision_steps={d.teacher_decision_steps}: "
                             f"only the {ORACLE!r} teacher takes one (a run decides at the "
                             "step it was trained at); leave it 0")
        if not 0.0 <= d.val_share < 1.0:
            raise ValueError(f"distill.val_share={d.val_share!r} is out of range: allowed "
                             "[0, 1)")
        if d.val_share and round(d.val_share * self.trial.trials_per_iter) < 1:
            raise ValueError(f"distill.val_share={d.val_share!r} holds back no trial of "
                             f"trial.trials_per_iter={self.trial.trials_per_iter}: allowed 0 or "
                             f">= {1 / self.trial.trials_per_iter:g}")
        if d.patience < 0 or d.weight_decay < 0:
            raise ValueError(f"distill.patience={d.patience!r}, distill.weight_decay="
                             f"{d.weight_decay!r}: allowed >= 0")
        if d.patience and not d.val_share:
            raise ValueError(f"distill.patience={d.patience} needs held-back trials: set "
                             "distill.val_share > 0")
        if d.round0 and d.beta0 != 1.0:
            raise ValueError(f"distill.round0={d.round0!r} with distill.beta0={d.beta0}: a "
                             "shared round 0 must be teacher-only: allowed with beta0 = 1")
        if self.grad_clip < 0 or self.threads < 0:
            raise ValueError("grad_clip and threads must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# ---------------------------------------------------------------------------- presets
#: The trials of the privileged teacher's students and of their PPO fine-tunes: 8 s episodes,
#: half failing mid-episode between 1 and 5 s.
_ORACLE_TRIAL = {"episodes_per_trial": 1, "episode_steps": 800, "failure_share": 0.5,
                 "failure_at_s": [1.0, 5.0]}

PRESETS: dict[str, dict[str, Any]] = {
    # DAgger from the small GrBAL teacher on cheetah-cripple: 5 rounds x 8 episodes x 500 steps
    # of teacher labels (about 10 minutes on 2 shared cores).
    "distill": {
        "iterations": 5,
        "trial": {"episodes_per_trial": 1, "episode_steps": 500, "trials_per_iter": 8},
        "distill": {"epochs": 20, "batch_trials": 8},
    },
    # The same with a feed-forward student (the comparison).
    "distill-mlp": {
        "iterations": 5, "net": {"arch": "mlp", "mlp_sizes": [128, 128]},
        "trial": {"episodes_per_trial": 1, "episode_steps": 500, "trials_per_iter": 8},
        "distill": {"epochs": 20, "batch_trials": 8},
    },
    # DAgger from the privileged teacher (the planner on the true simulator, deciding every
    # 50 ms, 0.75 s ahead) on cheetah-cripple, half the trials failing mid-episode; the
    # student acts every 10 ms and does not see its previous action (held labels would teach
    # it to copy that). 3 rounds x 8 trials x 8 s: about 8 core-minutes of labels. Its
    # students do not run yet (docs/results.md, section 5).
    "distill-oracle": {
        "iterations": 3, "bptt": 100, "net": {"prev_inputs": False},
        "trial": {**_ORACLE_TRIAL, "trials_per_iter": 8},
        "distill": {"teacher": ORACLE, "epochs": 30, "batch_trials": 4},
    },
    # The same with a feed-forward student (the comparison).
    "distill-oracle-mlp": {
        "iterations": 3, "bptt": 100,
        "net": {"arch": "mlp", "mlp_sizes": [128, 128], "prev_inputs": False},
        "trial": {**_ORACLE_TRIAL, "trials_per_iter": 8},
        "distill": {"teacher": ORACLE, "epochs": 30, "batch_trials": 4},
    },
    # PPO fine-tune of a distilled student of the privileged teacher (``--set init=RUN``, a
    # `distill-oracle` run) on the training split, in the distillation's trials: the student
    # learns from the states its own mistakes lead to, where DAgger's labels did not carry
    # over. The value head is fitted to one iteration's returns before the policy moves; the
    # exploration is PPO's usual width (a narrow std 0.2 with ppo.target_kl did not improve
    # the student: docs/results.md, section 5). 150 iterations, 1.9 M steps: ~15 min here.
    "finetune-oracle": {
        "method": "rl2", "iterations": 150, "bptt": 100, "net": {"prev_inputs": False},
        "trial": {**_ORACLE_TRIAL, "trials_per_iter": 16},
        "ppo": {"value_warmup": 1},
    },
    # The same for the feed-forward student (a `distill-oracle-mlp` run).
    "finetune-oracle-mlp": {
        "method": "rl2", "iterations": 150, "bptt": 100,
        "net": {"arch": "mlp", "mlp_sizes": [128, 128], "prev_inputs": False},
        "trial": {**_ORACLE_TRIAL, "trials_per_iter": 16},
        "ppo": {"value_warmup": 1},
    },
    # RL^2 on cheetah-cripple with short episodes: finishes within an hour on 2 shared cores.
    "rl2-small": {
        "method": "rl2", "iterations": 150, "bptt": 50,
        "net": {"hidden_size": 64, "mlp_sizes": [64]},
        "trial": {"episodes_per_trial": 3, "episode_steps": 100, "trials_per_iter": 16},
        "ppo": {"epochs": 4, "batch_trials": 4, "lr": 3e-4},
    },
    # RL^2 where remembering across episodes pays: reversed motors must be found by trying
    # them, and short sprint-from-rest episodes leave little time to do so, so a trial's later
    # episodes gain by starting with what the first one found out. ~30 minutes here.
    "rl2-reversed": {
        "method": "rl2", "family": "cheetah-reversed", "iterations": 500, "bptt": 40,
        "net": {"hidden_size": 64, "mlp_sizes": [64]},
        "trial": {"episodes_per_trial": 4, "episode_steps": 30, "trials_per_iter": 32},
        "ppo": {"epochs": 4, "batch_trials": 8, "lr": 3e-4},
    },
    # For tests: seconds, not minutes.
    "tiny": {
        "iterations": 2, "bptt": 8,
        "net": {"hidden_size": 8, "mlp_sizes": [16]},
        "trial": {"episodes_per_trial": 2, "episode_steps": 12, "trials_per_iter": 2},
        "distill": {"epochs": 2, "batch_trials": 2},
        "ppo": {"epochs": 2, "batch_trials": 2},
    },
}


#: How configs written before planner tables set the labelling teacher's planner (with
#: ``teacher_planner``, then a name or "").
_OLD_TEACHER_FIELDS = {"teacher_candidates": "num_candidates", "teacher_iterations":
                       "num_iterations", "teacher_lambda": "lambda_"}


def upgrade_values(values: dict[str, Any]) -> dict[str, Any]:
    """A config as older versions wrote it, as this one reads it: the labelling planner's
    name and fields become a planner table (none when they left the checkpoint's own)."""
    distill = values.get("distill")
    if not isinstance(distill, dict) or not set(_OLD_TEACHER_FIELDS) & set(distill):
        return values
    distill = dict(distill)
    name = distill.pop("teacher_planner", "")
    settings = {new: distill.pop(old) for old, new in _OLD_TEACHER_FIELDS.items()
                if distill.get(old)}
    for old in _OLD_TEACHER_FIELDS:
        distill.pop(old, None)
    if name:
        distill["teacher_planner"] = {"name": name, INHERITED: settings}
    elif settings:
        raise ValueError(f"distill: {settings} change the teacher checkpoint's own planner, "
                         "which this version cannot tell from the config: set "
                         "distill.teacher_planner to the whole labelling planner")
    else:
        distill["teacher_planner"] = None
    return {**values, "distill": distill}


def load_policy_config(path: str | Path | None = None, preset: str | None = None,
                       overrides: list[str] | tuple[str, ...] = ()) -> PolicyTrainConfig:
    """Preset, then the file (TOML, YAML or a run's config.json), then overrides."""
    return build_dataclass(PolicyTrainConfig, layered_values(PRESETS, path, preset, overrides,
                                                             upgrade_values))


def policy_config_from_arg(config: str, overrides: list[str] | tuple[str, ...] = ()
                           ) -> PolicyTrainConfig:
    """``CONFIG`` as `adapt train-policy` takes it: a preset name, else a config file."""
    if config in PRESETS:
        return load_policy_config(preset=config, overrides=overrides)
    return load_policy_config(config, overrides=overrides)


def policy_config_from_json(text: str) -> PolicyTrainConfig:
    return build_dataclass(PolicyTrainConfig, upgrade_values(json.loads(text)))
