"""The task reward as one vectorised function of (obs, action, next_obs).

The same code runs on numpy arrays and torch tensors (it only uses elementwise operations,
indexing and ``sum``), so the environment and the planners score with identical arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from sims.robots import Robot

Array = TypeVar("Array")  # numpy.ndarray or torch.Tensor


@dataclass(frozen=True)
class TaskReward:
    """r = v_x(next) - ctrl_cost * ||a||^2 + alive_bonus * upright(next).

    ``upright`` is the z component of the torso's z axis computed from the orientation
    quaternion in the observation (only for free-floating robots).
    """

    forward_index: int  # index of the forward velocity in the observation
    ctrl_cost: float  # weight of the squared action norm
    alive_bonus: float = 0.0  # weight of the upright term
    quat_index: int | None = None  # index of (w, x, y, z) in the observation, if any

    def __call__(self, obs: Array, act: Array, next_obs: Array) -> Array:
        r = next_obs[..., self.forward_index] - self.ctrl_cost * (act * act).sum(-1)
        if self.alive_bonus and self.quat_index is not None:
            q = self.quat_index
            x, y = next_obs[..., q + 1], next_obs[..., q + 2]
            r = r + self.alive_bonus * (1.0 - 2.0 * (x * x + y * y))
        return r


def task_reward(robot: Robot) -> TaskReward:
    """The forward-locomotion reward of ``robot`` (paper: velocity - 0.05 ||a||^2)."""
    return TaskReward(
        forward_index=robot.forward_velocity_index,
        ctrl_cost=robot.ctrl_cost,
        alive_bonus=robot.alive_bonus,
        quat_index=robot.orientation_quat_index,
    )
