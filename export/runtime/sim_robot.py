"""A simulated robot for :func:`export.runtime.run`: MuJoCo through ``sims`` — no torch, no
dm_env (``sims.robots``, ``sims.conditions``, ``sims.physics`` and the numpy task reward
``sims.rewards``; the ``sims`` package imports its submodules lazily).

``SimRobot("cheetah", "healthy")`` steps one control step per :meth:`SimRobot.act` ("as fast
as possible": the simulation waits for the controller). ``realtime=True`` ties simulated
time to the wall clock instead: before every observation or action the physics catches up
with the time elapsed since :meth:`SimRobot.reset`, holding the last action, so a slow
controller really costs it control steps. A :class:`~sims.conditions.Schedule` (or
``switch_at``/``switch_to``) changes the condition mid-run at a given time, keeping the
robot's state (a leg failing at t = 3 s).
"""

from __future__ import annotations

import math
import time
from typing import Any

import mujoco
import numpy as np

from sims import physics as physics_lib
from sims.conditions import Condition, Schedule, parse_condition
from sims.physics import Physics
from sims.rewards import task_reward
from sims.robots import Robot, get_robot


def make_schedule(robot: Robot, condition: str | Condition | Schedule = "healthy",
                  switch_at: float | None = None,
                  switch_to: str | Condition | None = None) -> Schedule:
    """A validated schedule from command-line style arguments."""
    if (switch_at is None) != (switch_to is None):
        raise ValueError("switch_at and switch_to go together: give both (e.g. --switch-at 3 "
                         "--switch-to lost_leg:back_right) or neither")
    if isinstance(condition, Schedule):
        if switch_at is not None:
            raise ValueError("switch_at/switch_to cannot be combined with a Schedule")
        schedule = condition
    else:
        first = parse_condition(condition, robot) if isinstance(condition, str) else condition
        if switch_at is None:
            schedule = Schedule.fixed(first)
        else:
            if not (math.isfinite(switch_at) and switch_at > 0):
                raise ValueError(f"switch_at={switch_at!r}: allowed a time > 0 seconds")
            assert switch_to is not None
            second = parse_condition(switch_to, robot) if isinstance(switch_to, str) else switch_to
            schedule = Schedule.switch(first, second, switch_at)
    schedule.validate(robot)
    return schedule


class SimRobot:
    """A MuJoCo robot under a condition or schedule, implementing ``export.runtime.Robot``.

    Args:
      robot: a built-in robot name (``cheetah``, ``quadruped``) or a ``Robot``.
      condition: a condition string (``"disabled:bthigh"``), a ``Condition`` or a ``Schedule``.
      seed: initial-state and observation-noise seed.
      realtime: tie simulated time to the wall clock (see the module docstring).
      switch_at, switch_to: switch to another condition at this time (seconds).
    """

    def __init__(self, robot: str | Robot, condition: str | Condition | Schedule = "healthy",
                 seed: int = 0, realtime: bool = False, switch_at: float | None = None,
                 switch_to: str | Condition | None = None) -> None:
        self.robot = get_robot(robot)
        self.schedule = make_schedule(self.robot, condition, switch_at, switch_to)
        # Compile every model up front: no compilation pause mid-run.
        self._models = [c.build(self.robot) for _, c in self.schedule.segments]
        self._switch_steps = self.schedule.switch_steps(self.robot.control_timestep)
        self.realtime = realtime
        self._seed = seed
        self.reward_fn = task_reward(self.robot)
        lo, hi = self.robot.action_bounds
        self.low, self.high = lo.astype(np.float64), hi.astype(np.float64)
        self.physics: Physics | None = None

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return self.robot.name

    @property
    def obs_dim(self) -> int:
        return self.robot.obs_dim

    @property
    def act_dim(self) -> int:
        return self.robot.act_dim

    @property
    def control_timestep(self) -> float:
        return self.robot.control_timestep

    @property
    def condition(self) -> Condition:
        return self.schedule.segments[self._segment][1]

    # ------------------------------------------------------------------ Robot protocol
    def reset(self) -> np.ndarray:
        self.rng = np.random.default_rng(self._seed)
        self._segment = 0
        self.physics = Physics(self.robot, self._models[0])
        physics_lib.reset(self.physics, self.rng, self.robot.init_noise)
        self.condition.adjust_initial_state(self.physics.model, self.physics.data)
        mujoco.mj_forward(self.physics.model, self.physics.data)
        self._ctrl = np.clip(np.zeros(self.act_dim), self.low, self.high)
        self._true_obs = self.physics.observation()
        self._x0 = float(self.physics.torso_position()[0])
        self.steps = 0
        self.total_reward = 0.0
        self.diverged = False
        self._t0 = time.perf_counter()
        return self._observe()

    def observe(self) -> np.ndarray:
        self._require_reset()
        if self.realtime:
            self._catch_up()
        return self._observe()

    def act(self, action: np.ndarray) -> None:
        self._require_reset()
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.act_dim,):
            raise ValueError(f"action has shape {a.shape}: robot {self.name!r} takes "
                             f"({self.act_dim},)")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action holds NaN or inf: {a.tolist()}")
        if self.realtime:
            self._catch_up()  # the previous action acted until now
            self._ctrl = np.clip(a, self.low, self.high)
        else:
            self._ctrl = np.clip(a, self.low, self.high)
            self._control_step()

    # ------------------------------------------------------------------ reporting
    def metrics(self) -> dict[str, Any]:
        """Return, distance (torso x since reset, m), speed (m/s) and the state of the run."""
        self._require_reset()
        assert self.physics is not None
        return {
            "return": float(self.total_reward),
            "distance": float(self.physics.torso_position()[0] - self._x0),
            "speed": float(self._true_obs[self.robot.forward_velocity_index]),
            "sim_time": self.steps * self.control_timestep,
            "sim_steps": self.steps,
            "condition": self.condition.label,
            "schedule": self.schedule.label,
            "diverged": self.diverged,
        }

    # ------------------------------------------------------------------ internals
    def _require_reset(self) -> None:
        if self.physics is None:
            raise RuntimeError("SimRobot: call reset() first")

    def _observe(self) -> np.ndarray:
        std = self.condition.obs_noise_std
        obs = self._true_obs
        if std > 0:
            obs = obs + std * self.rng.standard_normal(obs.shape)
        return np.array(obs, dtype=np.float64)

    def _catch_up(self) -> None:
        target = int((time.perf_counter() - self._t0) / self.control_timestep)
        while self.steps < target and not self.diverged:
            self._control_step()

    def _control_step(self) -> None:
        if self.diverged:  # frozen after a blow-up; metrics() reports it
            return
        assert self.physics is not None
        nxt = self._segment + 1
        if nxt < len(self._models) and self.steps >= self._switch_steps[nxt]:
            self._segment = nxt
            self.physics.swap_model(self._models[nxt])
        prev = self._true_obs
        if physics_lib.step(self.physics, self._ctrl, self.robot.n_substeps):
            self.diverged = True
            return
        self._true_obs = self.physics.observation()
        self.total_reward += float(self.reward_fn(prev, self._ctrl, self._true_obs))
        self.steps += 1
