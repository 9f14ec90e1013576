"""sims: MuJoCo robots and seeded, validated distributions of physical conditions.

Robots (``sims.robots``), conditions and schedules (``sims.conditions``), task families with
train / held-out splits (``sims.families``), a ``dm_env`` environment (``sims.env``), the task
reward in numpy and torch (``sims.rewards``), batched and closed-loop collection
(``sims.collect``) and ``.npz`` datasets (``sims.dataset``).
"""

import os as _os

# Headless machines render through OSMesa; the variable must be set before mujoco's first import.
if not _os.environ.get("DISPLAY") and "MUJOCO_GL" not in _os.environ:
    _os.environ["MUJOCO_GL"] = "osmesa"
    _os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

from sims.conditions import (  # noqa: E402
    HEALTHY,
    ActuatorCalibration,
    Condition,
    DisabledActuator,
    Friction,
    Heightfield,
    LockedJoint,
    LostLeg,
    ObservationNoise,
    Payload,
    Schedule,
    ShortenedLeg,
    Slope,
    WeakenedActuator,
    parse_condition,
)
from sims.dataset import Dataset  # noqa: E402
from sims.env import AdaptEnv  # noqa: E402
from sims.families import FAMILIES, TaskFamily, get_family  # noqa: E402
from sims.rewards import TaskReward, task_reward  # noqa: E402
from sims.robots import ROBOTS, Leg, Robot, get_robot  # noqa: E402

__all__ = [
    "HEALTHY", "ActuatorCalibration", "AdaptEnv", "Condition", "Dataset", "DisabledActuator",
    "FAMILIES", "Friction", "Heightfield", "Leg", "LockedJoint", "LostLeg", "ObservationNoise",
    "Payload", "ROBOTS", "Robot", "Schedule", "ShortenedLeg", "Slope", "TaskFamily",
    "TaskReward", "WeakenedActuator", "get_family", "get_robot", "parse_condition",
    "task_reward",
]
