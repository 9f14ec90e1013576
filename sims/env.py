"""A ``dm_env.Environment`` for one robot under a condition or a schedule of conditions.

Observation: a flat float64 vector laid out as ``robot.obs_parts`` (joint positions without
the root's horizontal position, then joint velocities). Reward: ``sims.rewards.TaskReward``
on the true (noise-free) observations. Episodes last ``episode_steps`` control steps; an
episode whose physics diverges ends early with discount 0 and ``env.diverged`` set.
"""

from __future__ import annotations

import dm_env
import mujoco
import numpy as np
from dm_env import specs

from sims import physics as physics_lib
from sims.conditions import HEALTHY, Condition, Schedule
from sims.physics import Physics
from sims.rewards import task_reward
from sims.robots import Robot, get_robot


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
        # Build (and so validate) every model before any simulation runs.
        self.schedule = condition
        self._models = [c.build(self.robot) for _, c in condition.segments]
        self._switch_steps = condition.switch_steps(self.robot.control_timestep)
        self.episode_steps = episode_steps
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.reward_fn = task_reward(self.robot)
        lo, hi = self.robot.action_bounds
        self._action_spec = specs.BoundedArray(
            (self.robot.act_dim,), np.float64, lo, hi, name="action")
        self._obs_spec = specs.Array((self.robot.obs_dim,), np.float64, name="observation")
        self.physics = Physics(self.robot, self._models[0])
        self._segment = 0
        self._t = 0
        self._true_obs: np.ndarray | None = None
        self._needs_reset = True
        self.diverged = False

    # ------------------------------------------------------------------ properties
    @property
    def control_timestep(self) -> float:
        return self.robot.control_timestep

    @property
    def step_count(self) -> int:
        return self._t

    @property
    def condition(self) -> Condition:
        """The condition in force now."""
        return self.schedule.segments[self._segment][1]

    def true_observation(self) -> np.ndarray:
        """The noise-free observation (what the reward is computed on)."""
        assert self._true_obs is not None, "call reset() first"
        return self._true_obs.copy()

    # ------------------------------------------------------------------ dm_env API
    def reset(self) -> dm_env.TimeStep:
        self._segment = 0
        if self.physics.model is not self._models[0]:
            self.physics = Physics(self.robot, self._models[0])
        physics_lib.reset(self.physics, self.rng, self.robot.init_noise)
        self.condition.adjust_initial_state(self.physics.model, self.physics.data)
        mujoco.mj_forward(self.physics.model, self.physics.data)
        self._t = 0
        self.diverged = False
        self._needs_reset = False
        self._true_obs = self.physics.observation()
        return dm_env.restart(self._observe())

    def step(self, action) -> dm_env.TimeStep:
        if self._needs_reset:
            return self.reset()
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self._action_spec.shape:
            raise ValueError(
                f"action has shape {action.shape}: expected {self._action_spec.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError("action holds NaN or inf")
        action = np.clip(action, self._action_spec.minimum, self._action_spec.maximum)
        self._maybe_switch()
        prev = self._true_obs
        diverged = physics_lib.step(self.physics, action, self.robot.n_substeps)
        self._t += 1
        if diverged:
            self.diverged = True
            self._needs_reset = True
            return dm_env.termination(0.0, self._observe(prev))
        self._true_obs = self.physics.observation()
        reward = float(self.reward_fn(prev, action, self._true_obs))
        if self._t >= self.episode_steps:
            self._needs_reset = True
            return dm_env.truncation(reward, self._observe())
        return dm_env.transition(reward, self._observe())

    def observation_spec(self) -> specs.Array:
        return self._obs_spec

    def action_spec(self) -> specs.BoundedArray:
        return self._action_spec

    # ------------------------------------------------------------------ internals
    def _maybe_switch(self) -> None:
        nxt = self._segment + 1
        if nxt < len(self._models) and self._t >= self._switch_steps[nxt]:
            self._segment = nxt
            self.physics.swap_model(self._models[nxt])

    def _observe(self, true_obs: np.ndarray | None = None) -> np.ndarray:
        obs = self._true_obs if true_obs is None else true_obs
        std = self.condition.obs_noise_std
        if std > 0:
            obs = obs + std * self.rng.standard_normal(obs.shape)
        return np.array(obs, dtype=np.float64)
