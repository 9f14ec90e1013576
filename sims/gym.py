"""A Gymnasium environment over ``AdaptEnv``: ``make_gym("cheetah", condition="disabled:bthigh")``.

``reset(seed=s)`` seeds Gymnasium's generator, and the environment draws its initial state,
observation noise and (for a family) each episode's condition from that generator alone, so one
seed and one action sequence give one episode. Divergence ends an episode as ``terminated``,
the episode length as ``truncated``, read from the dm_env step type.

Gymnasium is an optional dependency (``pip install 'adaptive-control[gym]'``); nothing else in
``sims`` imports this module.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as e:  # an optional extra: say which
    raise ImportError("sims.gym needs gymnasium: pip install 'adaptive-control[gym]'") from e

from sims.conditions import HEALTHY, Condition, Schedule, parse_condition
from sims.env import AdaptEnv
from sims.families import TaskFamily
from sims.registry import FAMILIES, get_family, get_robot, split_frame_skip
from sims.render import render_frame
from sims.robots import Robot


class AdaptGymEnv(gymnasium.Env):
    """One robot under a fixed condition or schedule, or under a condition drawn from a
    family's split at every reset.

    Observation: the robot's flat observation (``robot.obs_parts``), float64. Action: one
    command per actuator within its ``ctrlrange``, float32. ``info``: ``speed`` (forward
    velocity, m/s, noise-free), ``condition`` (the label of the condition in force),
    ``diverged`` and ``step``.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, robot: Robot | str, condition: Condition | Schedule = HEALTHY,
                 episode_steps: int = 1000, family: TaskFamily | None = None,
                 split: str = "train", render_mode: str | None = None,
                 width: int = 320, height: int = 240):
        self.robot = get_robot(robot)
        if family is not None and family.robot.name != self.robot.name:
            raise ValueError(f"family={family.name!r} trains robot {family.robot.name!r}, "
                             f"not robot={self.robot.name!r}")
        if split not in ("train", "test"):
            raise ValueError(f"split={split!r}: allowed 'train', 'test'")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode={render_mode!r}: allowed None, "
                             f"{', '.join(map(repr, self.metadata['render_modes']))}")
        self.family, self.split = family, split
        self.render_mode, self.width, self.height = render_mode, width, height
        # Built (and its conditions validated) now; a family builds one per episode at reset.
        self._env = AdaptEnv(self.robot, condition, episode_steps, seed=self.np_random)
        self.episode_steps = episode_steps
        lo, hi = self.robot.action_bounds
        self.action_space = spaces.Box(lo.astype(np.float32), hi.astype(np.float32),
                                       dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (self.robot.obs_dim,),
                                            dtype=np.float64)
        self._renderer: mujoco.Renderer | None = None

    @property
    def env(self) -> AdaptEnv:
        """The dm_env environment of the current episode."""
        return self._env

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if self.family is not None:
            condition = self.family.sample(self.np_random, self.split)
            self._env = AdaptEnv(self.robot, condition, self.episode_steps, seed=self.np_random)
        self._env.rng = self.np_random  # a new generator after a seeded reset
        ts = self._env.reset()
        return ts.observation, self._info()

    def step(self, action: np.ndarray
             ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._env.needs_reset:
            raise RuntimeError("AdaptGymEnv.step: the episode is over (or never began): call "
                               "reset() first")
        ts = self._env.step(np.asarray(action, dtype=np.float64))
        # dm_env ends an episode with discount 0 when it terminates (the physics diverged)
        # and with discount 1 when it is cut at episode_steps.
        terminated = bool(ts.last() and ts.discount == 0.0)
        truncated = bool(ts.last() and not terminated)
        return ts.observation, float(ts.reward), terminated, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        return {"speed": float(self._env.true_observation()[self.robot.forward_velocity_index]),
                "condition": self._env.condition.label, "diverged": self._env.diverged,
                "step": self._env.step_count}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        physics = self._env.physics
        if self._renderer is None or self._renderer.model is not physics.model:
            self.close()  # a switched schedule or a family's new episode has another model
            self._renderer = mujoco.Renderer(physics.model, height=self.height, width=self.width)
        return render_frame(physics, renderer=self._renderer)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def make_gym(name: str | Robot, condition: Condition | Schedule | str | None = None,
             episode_steps: int = 1000, split: str = "train",
             render_mode: str | None = None) -> AdaptGymEnv:
    """A Gymnasium environment, named as the `adapt` command line names them.

    ``name``: a robot (``cheetah``, ``quadruped``, a ``Robot``, a spec file or an MJCF path)
    under ``condition`` (a ``Condition``, a ``Schedule`` or the condition syntax, e.g.
    ``"disabled:bthigh+payload:2"``; default healthy), or a family (``cheetah-cripple``,
    ``SPEC.toml#FAMILY``) whose ``split`` gives a freshly drawn condition at every reset; any
    of them with a frame skip (``cheetah@2``, ``cheetah-cripple@2``).
    """
    # a family by its name without the frame skip: cheetah-cripple@2 is a family too
    if isinstance(name, str) and (split_frame_skip(name, "name")[0] in FAMILIES or "#" in name):
        if condition is not None:
            raise ValueError(f"condition={condition!r} with family {name!r}: a family draws "
                             "each episode's condition; name its robot for a fixed one")
        family = get_family(name)
        return AdaptGymEnv(family.robot, HEALTHY, episode_steps, family=family, split=split,
                           render_mode=render_mode)
    try:
        robot = get_robot(name)
    except ValueError as e:
        raise ValueError(f"{e}, or a family: {', '.join(FAMILIES)}") from e
    if condition is None:
        condition = HEALTHY
    elif isinstance(condition, str):
        condition = parse_condition(condition, robot)
    return AdaptGymEnv(robot, condition, episode_steps, render_mode=render_mode)
