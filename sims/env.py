"""A ``dm_env.Environment`` for one robot under a condition or a schedule of conditions.

Observation: a flat float64 vector laid out as ``robot.obs_parts`` (joint positions without
the root's horizontal position, then joint velocities). Reward: ``sims.rewards.TaskReward``
on the true (noise-free) observations. Episodes last ``episode_steps`` control steps; an
episode whose physics diverges ends early with discount 0 and ``env.diverged`` set.

The simulation itself is ``sims.core.Simulator``; this module adds the dm_env protocol:
specs, episode length and restart after the last step.
"""

from __future__ import annotations

import dm_env
import numpy as np
from dm_env import specs

from sims.conditions import HEALTHY, Condition, Schedule
from sims.core import Simulator, core_property
from sims.registry import get_robot
from sims.robots import Robot


class AdaptEnv(dm_env.Environment):
    """Locomotion under changing physics.

    Args:
      robot: a ``Robot`` or a built-in robot's name.
      condition: a ``Condition`` (fixed for the episode) or a ``Schedule`` (switches mid-episode
        at given times, keeping the robot's state).
      episode_steps: control steps per episode.
      seed: an int or a ``numpy.random.Generator`` for initial states and observation noise.
    """

    def __init__(
        self,
        robot: Robot | str,
        condition: Condition | Schedule = HEALTHY,
        episode_steps: int = 1000,
        seed: int | np.random.Generator | None = None,
    ):
        self.robot = get_robot(robot)
        if isinstance(condition, Condition):
            condition = Schedule.fixed(condition)
        if not isinstance(condition, Schedule):
            raise TypeError(f"condition must be a Condition or Schedule, got {type(condition)}")
        if not isinstance(episode_steps, int) or episode_steps < 1:
            raise ValueError(f"episode_steps={episode_steps!r} must be an integer >= 1")
        self.schedule = condition
        self.sim = Simulator(self.robot, condition)  # the simulation; this class adds dm_env
        self.reward_fn = self.sim.reward_fn
        self.episode_steps = episode_steps
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._action_spec = specs.BoundedArray(
            (self.robot.act_dim,), np.float64, *self.robot.action_bounds, name="action")
        self._obs_spec = specs.Array((self.robot.obs_dim,), np.float64, name="observation")
        self._needs_reset = True

    # ------------------------------------------------------------------ properties
    physics = core_property("physics")
    control_timestep = core_property("control_timestep")
    step_count = core_property("step_count")
    segment = core_property("segment", "Index of the schedule segment in force.")
    switch_steps = core_property("switch_steps", "Control step at which each segment begins.")
    condition = core_property("condition", "The condition in force now.")
    diverged = core_property("diverged")

    @property
    def needs_reset(self) -> bool:
        """True before the first episode and after the last step of one: ``step`` resets."""
        return self._needs_reset

    def true_observation(self) -> np.ndarray:
        """The noise-free observation (what the reward is computed on)."""
        return self.sim.true_observation()

    # ------------------------------------------------------------------ dm_env API
    def reset(self) -> dm_env.TimeStep:
        self.sim.reset(self.rng)
        self._needs_reset = False
        return dm_env.restart(self.sim.observation(self.rng))

    def step(self, action) -> dm_env.TimeStep:
        if self._needs_reset:
            return self.reset()
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self._action_spec.shape:
            raise ValueError(
                f"action has shape {action.shape}: expected {self._action_spec.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action holds NaN or inf")
        reward = self.sim.step(action)
        obs = self.sim.observation(self.rng)
        if self.sim.diverged:
            self._needs_reset = True
            return dm_env.termination(0.0, obs)
        if self.sim.step_count >= self.episode_steps:
            self._needs_reset = True
            return dm_env.truncation(reward, obs)
        return dm_env.transition(reward, obs)

    def observation_spec(self) -> specs.Array:
        return self._obs_spec

    def action_spec(self) -> specs.BoundedArray:
        return self._action_spec
