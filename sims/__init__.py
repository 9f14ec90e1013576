"""sims: MuJoCo robots and seeded, validated distributions of physical conditions.

Robots (``sims.robots``), conditions and schedules (``sims.conditions``), task families with
train / held-out splits (``sims.families``), the names robots and families go by
(``sims.registry``: ``get_robot``, ``get_family``), a ``dm_env`` environment (``sims.env``)
and the episode loop every controller runs through (``sims.episode``), the task reward in
numpy and torch (``sims.rewards``), batched and closed-loop collection (``sims.collect``),
``.npz`` datasets (``sims.dataset``) and robot / family spec files (``sims.specs``); with the
``gym`` extra, a Gymnasium environment (``sims.gym``, imported only from there).

Names are imported lazily, so that ``sims.robots``, ``sims.conditions``, ``sims.physics`` and
``sims.core`` work with nothing but mujoco and numpy installed (the deployment runtime's
simulated robot).
"""

import importlib as _importlib
import os as _os

# Headless machines render through OSMesa; the variable must be set before mujoco's first import.
if not _os.environ.get("DISPLAY") and "MUJOCO_GL" not in _os.environ:
    _os.environ["MUJOCO_GL"] = "osmesa"
    _os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

_EXPORTS = {
    "sims.conditions": ("HEALTHY", "ActuatorCalibration", "Condition", "ConditionError",
                        "DisabledActuator", "Friction", "Heightfield", "LockedJoint", "LostLeg",
                        "ObservationNoise", "Payload", "Schedule", "ShortenedLeg", "Slope",
                        "WeakenedActuator", "parse_condition"),
    "sims.dataset": ("Dataset",),
    "sims.env": ("AdaptEnv",),
    "sims.episode": ("EpisodeRecord", "run_episode"),
    "sims.families": ("TaskFamily",),
    "sims.registry": ("FAMILIES", "ROBOTS", "decision_family", "get_family", "get_robot",
                      "load_spec_file",
                      "register_family", "register_robot"),
    "sims.rewards": ("TaskReward", "task_reward"),
    "sims.robots": ("Leg", "Robot"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(_importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sims' has no attribute {name!r}")
