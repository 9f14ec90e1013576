"""The task reward as one vectorised function of (obs, action, next_obs).

The same code runs on numpy arrays and torch tensors (elementwise operations, indexing, ``sum``,
``clip`` and ``cos``), so the environment and the planners score with identical arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from sims.robots import Robot

Array = TypeVar("Array")  # numpy.ndarray or torch.Tensor

#: Width of the ramp below ``tilt_threshold`` over which the tilt penalty reaches its full
#: value: a step in effect, but continuous (and so a plain Clip in an exported graph).
TILT_RAMP = 0.1


def _cos(x: Any) -> Any:
    return x.cos() if hasattr(x, "cos") else np.cos(x)


@dataclass(frozen=True)
class TaskReward:
    """r = v_x(next) − ctrl_cost·‖a‖² + alive_bonus·u(next) − tilt_penalty·ramp(u(next)).

    ``u`` is the torso's uprightness, the z component of its z axis (1 upright, −1 upside
    down): from the orientation quaternion for free-floating robots, cos(pitch) for planar
    ones. ``ramp(u)`` is 0 above ``tilt_threshold`` and reaches 1 ``TILT_RAMP`` below it.
    """

    forward_index: int  # index of the forward velocity in the observation
    ctrl_cost: float  # weight of the squared action norm
    alive_bonus: float = 0.0  # weight of the upright term
    quat_index: int | None = None  # index of (w, x, y, z) in the observation, if any
    pitch_index: int | None = None  # index of a planar robot's pitch angle, if any
    tilt_penalty: float = 0.0  # cost of a step tilted past the threshold (0: paper reward)
    tilt_threshold: float = 0.3  # uprightness below which a step counts as tipped over

    def uprightness(self, obs: Array) -> Array | None:
        """The torso's uprightness in ``obs`` (None when the observation has no orientation)."""
        if self.quat_index is not None:
            q = self.quat_index
            x, y = obs[..., q + 1], obs[..., q + 2]
            return 1.0 - 2.0 * (x * x + y * y)
        if self.pitch_index is not None:
            return _cos(obs[..., self.pitch_index])
        return None

    def __call__(self, obs: Array, act: Array, next_obs: Array) -> Array:
        r = next_obs[..., self.forward_index] - self.ctrl_cost * (act * act).sum(-1)
        if self.alive_bonus or self.tilt_penalty:
            u = self.uprightness(next_obs)
            if u is not None:
                if self.alive_bonus:
                    r = r + self.alive_bonus * u
                if self.tilt_penalty:
                    tipped = ((self.tilt_threshold - u) / TILT_RAMP).clip(0.0, 1.0)
                    r = r - self.tilt_penalty * tipped
        return r


def task_reward(robot: Robot) -> TaskReward:
    """The forward-locomotion reward of ``robot``: the paper's velocity − 0.05‖a‖² plus the
    robot's upright terms (``Robot.with_paper_reward`` drops the tilt penalty)."""
    return TaskReward(
        forward_index=robot.forward_velocity_index,
        ctrl_cost=robot.ctrl_cost,
        alive_bonus=robot.alive_bonus,
        quat_index=robot.orientation_quat_index,
        pitch_index=robot.pitch_index,
        tilt_penalty=robot.tilt_penalty,
        tilt_threshold=robot.tilt_threshold,
    )
