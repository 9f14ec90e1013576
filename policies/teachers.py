"""The teachers DAgger labels with, each deciding at its own rate.

Two kinds (``distill.teacher``):

* ``oracle``: the privileged teacher. The MPC planner scoring its candidates with the true
  simulator of the condition in force, from the exact physics state
  (``adaptive_control.evaluation.oracle``): it knows the condition, the student must infer it
  from its history (the teacher/student split of RMA, Kumar et al. 2021).
* an `adapt train` run: the adaptive-MPC controller, adapting from the transitions it sees.

A teacher plans in steps of ``k`` control steps (the robot's decision step: the cheetah plans
every 50 ms) while the student acts at every control step; between its decisions the teacher
holds its action, as the robot does when the teacher drives it, so every step the student sees
is labelled with the action the teacher would be executing there.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptive_control.builders import build_controller, learner_from_checkpoint
from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.planning import PlannerConfig, make_planner
from adaptive_control.runs import checkpoint_path
from adaptive_control.training.config import TrainConfig, config_from_json, load_config
from policies.config import ORACLE, DistillConfig
from sims.families import TaskFamily
from sims.registry import get_family, register_document, split_frame_skip
from sims.robots import FRAME_SKIP_MARK
from sims.specs import spec_document


class HeldDecisions:
    """``teacher`` asked every ``k``-th call, its action returned for the ``k`` calls from
    there (``reset()`` starts a new hold). ``observe_action`` reaches the teacher only for the
    step it decided at: it adapts on transitions of its own, ``k`` steps long."""

    def __init__(self, teacher: Callable[[np.ndarray], np.ndarray], k: int) -> None:
        self.teacher = teacher
        self.k = int(k)
        self._left = 0
        self._decided = False
        self._action: np.ndarray | None = None
        self.latencies = getattr(teacher, "latencies", [])

    def bind_env(self, env: Any) -> None:
        bind = getattr(self.teacher, "bind_env", None)
        if bind is not None:
            bind(env)

    def reset(self) -> None:
        reset = getattr(self.teacher, "reset", None)
        if reset is not None:
            reset()
        self._left = 0

    def observe_action(self, executed: np.ndarray) -> None:
        observe = getattr(self.teacher, "observe_action", None)
        if observe is not None and self._decided:
            observe(executed)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self._decided = self._left == 0
        if self._decided:
            self._action = np.asarray(self.teacher(obs), dtype=np.float64)
            self._left = self.k
        self._left -= 1
        return self._action


def oracle_steps(family: TaskFamily, distill: DistillConfig) -> int:
    """Control steps of ``family`` per decision of the privileged teacher:
    ``distill.teacher_decision_steps``, or (0) the robot's default decision step (1 for a
    family that already holds its actions, ``NAME@K``)."""
    return distill.teacher_decision_steps or family.robot.decision_steps


def oracle_planner_config(distill: DistillConfig) -> PlannerConfig:
    """The privileged teacher's planner: ``distill.teacher_planner``, else the `small`
    preset's (MPPI 256 candidates x 15 steps: 0.75 s ahead at the cheetah's 50 ms)."""
    return distill.teacher_planner or load_config(preset="small").planner


def make_teachers(family: TaskFamily, distill: DistillConfig, seeds: list[int]
                  ) -> list[HeldDecisions]:
    """One labelling teacher per seed (one per rollout slot), each holding its decisions for
    as many control steps of ``family`` as it plans in."""
    if distill.teacher == ORACLE:
        from adaptive_control.evaluation.oracle import OracleController
        from sims.rewards import task_reward

        k = oracle_steps(family, distill)
        robot = family.robot.with_frame_skip(k)
        lo, hi = (torch.tensor(b, dtype=torch.float32) for b in robot.action_bounds)
        planner = oracle_planner_config(distill)
        return [HeldDecisions(OracleController(robot, make_planner(planner, lo, hi),
                                               task_reward(robot), seed), k) for seed in seeds]
    ckpt, planning_family = teacher_checkpoint(distill.teacher, family)
    learner, tcfg = learner_from_checkpoint(ckpt)
    tcfg = labelling_config(tcfg, distill)
    k = planning_family.frame_skip // family.frame_skip
    # Each its own copy of the learner: some learners (MB+DE) change their weights online.
    return [HeldDecisions(build_controller(copy.deepcopy(learner), tcfg, planning_family,
                                           seed=seed), k) for seed in seeds]


def labelling_config(tcfg: TrainConfig, distill: DistillConfig) -> TrainConfig:
    """The teacher's `adapt train` config with the labelling planner of ``distill`` (if it
    sets one)."""
    if distill.teacher_planner is None:
        return tcfg
    return dataclasses.replace(tcfg, planner=distill.teacher_planner)


def check_teacher(family: TaskFamily, distill: DistillConfig) -> None:
    """Refuse a teacher that cannot label for ``family`` (field, value, what is allowed),
    before any work: the oracle needs nothing more; a run must exist and be of the family."""
    if distill.teacher != ORACLE:
        teacher_checkpoint(distill.teacher, family)


def teacher_checkpoint(path: str | Path, family: TaskFamily
                       ) -> tuple[dict[str, Any], TaskFamily]:
    """The loaded checkpoint ``distill.teacher`` names and the family it plans in, refused
    (field, value, what is allowed) unless it is an `adapt train` run folder or checkpoint
    trained on ``family`` or on the same family deciding every K of its control steps."""
    value = f"distill.teacher={str(path)!r}"
    allowed = (f"allowed {ORACLE!r} (the privileged teacher) or an `adapt train` run folder "
               f"or its checkpoint.pt trained on family {family.name!r} (or "
               f"{family.name}{FRAME_SKIP_MARK}K)")
    if not str(path).strip():
        raise ValueError(f"{value} is not set (required with method='distill'): {allowed}, "
                         "e.g. --set distill.teacher=oracle or --set distill.teacher=runs/grbal")
    p = checkpoint_path(path)
    if not p.is_file():
        where = "" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"
        raise ValueError(f"{value}: no such run folder or checkpoint{where}; {allowed}")
    try:
        ckpt = load_checkpoint(p)
    except ValueError as e:
        raise ValueError(f"{value}: {e}; {allowed}") from e
    if "learner" not in ckpt:
        raise ValueError(f"{value} holds no learner (an `adapt train-policy` run?); {allowed}")
    trained_on = config_from_json(ckpt["config"]).family
    base, skip = split_frame_skip(trained_on, "distill.teacher's family")
    if base != split_frame_skip(family.name, "family")[0] or skip % family.frame_skip:
        raise ValueError(f"{value} was trained on family {trained_on!r}; {allowed}")
    return ckpt, get_family(trained_on)



@dataclass(frozen=True)
class TeacherFactory:
    """Builds a round's teachers (``make_teachers``) wherever the rollouts run: picklable, so
    worker processes build their own."""

    family: str
    #: ``sims.specs.spec_document`` of the family ("" for a built-in one).
    family_spec: str
    distill: DistillConfig

    @classmethod
    def of(cls, family: TaskFamily, distill: DistillConfig) -> TeacherFactory:
        return cls(family.name, spec_document(family), distill)

    def __call__(self, seeds: list[int]) -> list[HeldDecisions]:
        register_document(self.family_spec, f"family {self.family!r}")
        return make_teachers(get_family(self.family), self.distill, seeds)


__all__ = ["HeldDecisions", "TeacherFactory", "check_teacher", "labelling_config", "make_teachers",
           "oracle_planner_config", "oracle_steps", "teacher_checkpoint"]
