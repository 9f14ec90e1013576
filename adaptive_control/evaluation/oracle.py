"""The oracle: the learned controller's planner, scoring its candidates with the true simulator.

``OracleMethod(checkpoint)`` plans exactly as that checkpoint's controller would (its planner
config, window M and the task reward) but predicts with MuJoCo itself: the model of the
condition in force, from the exact current physics state, all N candidates stepped together
through ``mujoco.rollout``. Its return is the ceiling a perfect model would reach with that
planner; with the random floor it normalises every method's return (``report.py``'s score).
The oracle runs on the CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout
from torch import Tensor

from adaptive_control.evaluation.episodes import Actor, PlannerSizes
from adaptive_control.planning import Planner
from adaptive_control.types import RewardFn
from sims import physics as physics_lib
from sims.families import TaskFamily
from sims.physics import Physics
from sims.registry import get_family
from sims.robots import Robot

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


class OraclePredictor:
    """A ``Predictor`` that is the true simulator from one physics state.

    Its recurrent ``state`` holds the candidates' full physics states ``[N, S]`` (float64); each
    call steps every candidate one control step (the action held for ``n_substeps`` physics
    steps, clipped to the bounds as the environment does) in one ``mujoco.rollout`` call and
    returns the observations, in the robot's observation layout, in ``obs``'s dtype.

    Stepping one control step per call, from the states the planner threads back, is exact for
    random shooting, CEM and MPPI alike: it simulates exactly the actions it is handed from the
    states they led to, and every ``rollout_returns`` starts again from ``initial_state``, so it
    never assumes that candidates stay fixed across calls (CEM resamples per iteration). Rolling
    the whole horizon at the first call would need the later actions, which a ``Predictor``
    only sees step by step. The one inexactness: the solver's warm start is not part of the
    state ``mujoco.rollout`` returns, so steps after the first differ from stepping the
    environment by float rounding (about 1e-14).
    """

    def __init__(self, robot: Robot, model: mujoco.MjModel, state: np.ndarray,
                 warmstart: np.ndarray, data: mujoco.MjData) -> None:
        self.robot = robot
        self.model = model
        self.state0 = state
        self.warmstart0 = warmstart
        self.data = data
        self.low, self.high = (b.astype(np.float64) for b in robot.action_bounds)
        self._step_s = robot.timestep * robot.n_substeps

    @classmethod
    def from_physics(cls, physics: Physics, data: mujoco.MjData | None = None,
                     robot: Robot | None = None) -> OraclePredictor:
        """The simulator of ``physics`` (the environment's, read now: model and exact state).

        ``robot``: whose control step a call advances (default the environment's); a
        frame-skipped one (``physics.robot.with_frame_skip(k)``) plans in steps k times longer,
        as a teacher deciding at a slower rate than the robot is controlled does."""
        data = data if data is not None else mujoco.MjData(physics.model)
        return cls(robot or physics.robot, physics.model, physics.get_state(),
                   physics.data.qacc_warmstart.copy(), data)

    def initial_state(self, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(full physics states ``[N, S]``, solver warm starts ``[N, nv]``, known only at the
        start)."""
        return (np.repeat(self.state0[None, :], batch_size, axis=0),
                np.repeat(self.warmstart0[None, :], batch_size, axis=0))

    def __call__(self, obs: Tensor, act: Tensor, state: Any) -> tuple[Tensor, Any]:
        a = np.clip(act.detach().cpu().numpy().astype(np.float64), self.low, self.high)
        start, warm = state
        nxt = np.full_like(start, np.nan)
        # Diverged candidates stay NaN (their returns become the worst, see optimizers); MuJoCo
        # would otherwise reset them to a fresh pose that looks healthy.
        ok = np.all(np.isfinite(start), axis=1)
        if ok.any():
            ctrl = np.repeat(a[ok][:, None, :], self.robot.n_substeps, axis=1)
            out, _ = mj_rollout.rollout(self.model, self.data, start[ok], ctrl,
                                        initial_warmstart=None if warm is None else warm[ok])
            end = out[:, -1, :]
            # rollout stops the clock once MuJoCo resets an unstable simulation.
            stalled = np.abs(end[:, 0] - start[ok, 0] - self._step_s) > 0.5 * self.robot.timestep
            end[stalled | ~np.all(np.isfinite(end), axis=1)] = np.nan
            nxt[ok] = end
        obs_next = physics_lib.state_observations(self.robot, self.model, nxt)
        return (torch.from_numpy(obs_next).to(dtype=obs.dtype, device=obs.device),
                (nxt, None))


class OracleController:
    """Plans with the true simulator of the environment it is bound to (``bind_env``), in
    control steps of ``robot`` (the environment's robot, or the same robot frame-skipped: then
    each planned action lasts several of the environment's control steps)."""

    def __init__(self, robot: Robot, planner: Planner, reward_fn: RewardFn, seed: int = 0
                 ) -> None:
        self.robot = robot
        self.planner = planner
        self.reward_fn = reward_fn
        self.generator = torch.Generator().manual_seed(seed)
        self.latencies: list[float] = []
        self._env: Any = None
        self._datas: dict[int, mujoco.MjData] = {}

    def bind_env(self, env: Any) -> None:
        """The environment whose simulator to plan with (an ``AdaptEnv`` or anything with a
        ``physics``); read at every step, so mid-episode switches are followed."""
        self._env = env

    def reset(self) -> None:
        self.planner.reset()

    def predictor(self) -> OraclePredictor:
        """The true simulator now: the condition in force, the exact current state."""
        if self._env is None:
            raise RuntimeError("OracleController: call bind_env(env) before the first step")
        physics = self._env.physics
        data = self._datas.get(id(physics.model))
        if data is None:
            # Keyed by the model: a switch brings a model with another layout.
            data = self._datas[id(physics.model)] = mujoco.MjData(physics.model)
        return OraclePredictor.from_physics(physics, data, self.robot)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        predictor = self.predictor()
        with torch.no_grad():
            action = self.planner.plan(torch.from_numpy(np.asarray(obs, dtype=np.float32)),
                                       predictor, self.reward_fn, self.generator)
        self.latencies.append(time.perf_counter() - t0)
        return action.numpy().astype(np.float64)


@dataclass(frozen=True)
class OracleMethod:
    """The oracle for a learner checkpoint: its planner config, M and reward, with the true
    simulator as the model."""

    checkpoint: str

    def __call__(self, family: TaskFamily, seed: int, planner: PlannerSizes) -> Actor:
        from adaptive_control.checkpoint import load_checkpoint
        from adaptive_control.planning import make_planner
        from adaptive_control.training.config import config_from_json
        from sims.rewards import task_reward

        robot = family.robot
        cfg = config_from_json(load_checkpoint(self.checkpoint, robot=robot.name)["config"])
        if cfg.family != family.name and get_family(cfg.family).robot.name != robot.name:
            raise ValueError(f"checkpoint {self.checkpoint} is for {cfg.family}, "
                             f"not {family.name}")
        lo, hi = robot.action_bounds
        plan = make_planner(planner.apply(cfg.planner), torch.tensor(lo, dtype=torch.float32),
                            torch.tensor(hi, dtype=torch.float32))
        torch.manual_seed(seed)
        # No model to adapt: the prediction-error trace is skipped (model=None); M is recorded
        # as the learned controller's.
        return Actor(OracleController(robot, plan, task_reward(robot), seed), None, cfg.m)

    def describe(self) -> dict[str, str]:
        return {"kind": "oracle", "checkpoint": self.checkpoint, "learner": ""}


__all__ = ["OracleController", "OracleMethod", "OraclePredictor"]
