"""The simulator core shared by ``sims.env.AdaptEnv`` and ``export.runtime.sim_robot.SimRobot``.

One robot under a schedule of conditions: reset, one control step, mid-episode switches and
noisy observations. Randomness comes only from the generator each call is given. No dm_env
and no torch here: the deployment runtime's simulated robot is built on it.
"""

from __future__ import annotations

from operator import attrgetter

import mujoco
import numpy as np

from sims import physics as physics_lib
from sims.conditions import Condition, Schedule
from sims.physics import Physics
from sims.rewards import task_reward
from sims.robots import Robot


class Simulator:
    """A robot under a ``Schedule``; every condition's model is compiled up front.

    The schedule switches before the control step whose index it names, keeping the state.
    Rewards are the task reward on true (noise-free) observations.
    """

    def __init__(self, robot: Robot, schedule: Schedule):
        self.robot = robot
        self.schedule = schedule
        # Compiling validates each condition, and leaves no compilation pause mid-episode.
        self._models = tuple(c.build(robot) for _, c in schedule.segments)
        self._switch_steps = schedule.switch_steps(robot.control_timestep)
        self.reward_fn = task_reward(robot)
        lo, hi = robot.action_bounds
        self.action_low, self.action_high = lo.astype(np.float64), hi.astype(np.float64)
        self._physics = Physics(robot, self._models[0])
        self._segment = 0
        self._t = 0
        self._true_obs: np.ndarray | None = None
        self._diverged = False
        self._total_reward = 0.0

    # ------------------------------------------------------------------ read-only state
    @property
    def physics(self) -> Physics:
        return self._physics

    @property
    def control_timestep(self) -> float:
        return self.robot.control_timestep

    @property
    def segment(self) -> int:
        """Index of the schedule segment in force."""
        return self._segment

    @property
    def switch_steps(self) -> tuple[int, ...]:
        """Control step at which each segment begins."""
        return self._switch_steps

    @property
    def condition(self) -> Condition:
        """The condition in force now."""
        return self.schedule.segments[self._segment][1]

    @property
    def step_count(self) -> int:
        """Control steps since reset, a diverging one included."""
        return self._t

    @property
    def diverged(self) -> bool:
        return self._diverged

    @property
    def total_reward(self) -> float:
        """Sum of the rewards since reset."""
        return self._total_reward

    @property
    def started(self) -> bool:
        """True once :meth:`reset` has run."""
        return self._true_obs is not None

    def true_observation(self) -> np.ndarray:
        """The noise-free observation (what the reward is computed on)."""
        assert self._true_obs is not None, "call reset() first"
        return self._true_obs.copy()

    # ------------------------------------------------------------------ simulation
    def reset(self, rng: np.random.Generator) -> None:
        """The first segment's model, at its initial pose with noise drawn from ``rng``."""
        self._segment = 0
        if self._physics.model is not self._models[0]:
            self._physics = Physics(self.robot, self._models[0])
        physics_lib.reset(self._physics, rng, self.robot.init_noise)
        self.condition.adjust_initial_state(self._physics.model, self._physics.data)
        mujoco.mj_forward(self._physics.model, self._physics.data)
        self._t = 0
        self._diverged = False
        self._total_reward = 0.0
        self._true_obs = self._physics.observation()

    def step(self, action: np.ndarray) -> float:
        """One control step under ``action`` (clipped to the bounds); returns its reward.

        A step that diverges returns 0.0, sets :attr:`diverged` and keeps the last true
        observation; the next step needs a :meth:`reset`.
        """
        if self._true_obs is None or self._diverged:
            raise RuntimeError("Simulator: call reset() first")
        action = np.clip(np.asarray(action, dtype=np.float64), self.action_low, self.action_high)
        nxt = self._segment + 1
        if nxt < len(self._models) and self._t >= self._switch_steps[nxt]:
            self._segment = nxt
            self._physics.swap_model(self._models[nxt])
        prev = self._true_obs
        diverged = physics_lib.step(self._physics, action, self.robot.n_substeps)
        self._t += 1
        if diverged:
            self._diverged = True
            return 0.0
        self._true_obs = self._physics.observation()
        reward = float(self.reward_fn(prev, action, self._true_obs))
        self._total_reward += reward
        return reward

    def observation(self, rng: np.random.Generator) -> np.ndarray:
        """The true observation plus the condition's observation noise, drawn from ``rng``."""
        assert self._true_obs is not None, "call reset() first"
        obs = self._true_obs
        std = self.condition.obs_noise_std
        if std > 0:
            obs = obs + std * rng.standard_normal(obs.shape)
        return np.array(obs, dtype=np.float64)


def core_property(name: str, doc: str | None = None) -> property:
    """A read-only property of a wrapper that reads ``wrapper.sim.<name>``."""
    return property(attrgetter(f"sim.{name}"), doc=doc)
