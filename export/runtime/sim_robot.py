"""A simulated robot for :func:`export.runtime.run`: MuJoCo through ``sims`` — no torch, no
dm_env (``sims.robots``, ``sims.registry`` for robot names, ``sims.conditions``,
``sims.physics`` and the numpy task reward ``sims.rewards``; the ``sims`` package imports its
submodules lazily).

``SimRobot("cheetah", "healthy")`` steps one control step per :meth:`SimRobot.act` ("as fast
as possible": the simulation waits for the controller). ``realtime=True`` ties simulated
time to the wall clock instead: before every observation or action the physics catches up
with the time elapsed since :meth:`SimRobot.reset`, holding the last action, so a slow
controller really costs it control steps. A :class:`~sims.conditions.Schedule` (or
``switches``) changes the condition mid-run at given times, keeping the robot's state (a leg
failing at t = 3 s). The simulation itself is ``sims.core.Simulator``,
the same core as ``sims.env.AdaptEnv``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from sims.conditions import Condition, Schedule, parse_condition
from sims.core import Simulator, core_property
from sims.physics import FLIPPED_UPRIGHT, TILTED_UPRIGHT, Physics
from sims.registry import get_robot
from sims.robots import Robot


def make_schedule(robot: Robot, condition: str | Condition | Schedule = "healthy",
                  switches: Sequence[tuple[float, str | Condition]] = ()) -> Schedule:
    """A validated schedule: ``condition`` from 0 s, then each ``(time_s, condition)`` of
    ``switches`` (times > 0 and increasing), e.g. ``[(600, "disabled:bthigh"),
    (1200, "slope:10")]``."""
    if isinstance(condition, Schedule):
        if switches:
            raise ValueError("switches cannot be combined with a Schedule: put them in its "
                             "segments")
        schedule = condition
    else:
        segments: list[tuple[float, Condition]] = []
        for t, c in [(0.0, condition), *switches]:
            if segments and not (isinstance(t, (int, float)) and math.isfinite(t)
                                 and t > segments[-1][0]):
                raise ValueError(f"switch time {t!r}: allowed a time in seconds > 0 and after "
                                 f"the previous switch ({segments[-1][0]:g} s)")
            segments.append((float(t), parse_condition(c, robot) if isinstance(c, str) else c))
        schedule = Schedule(tuple(segments))
    schedule.validate(robot)
    return schedule


class SimRobot:
    """A MuJoCo robot under a condition or schedule, implementing ``export.runtime.Robot``.

    Args:
      robot: a built-in robot name (``cheetah``, ``quadruped``) or a ``Robot``.
      condition: a condition string (``"disabled:bthigh"``), a ``Condition`` or a ``Schedule``.
      seed: initial-state and observation-noise seed.
      realtime: tie simulated time to the wall clock (see the module docstring).
      switches: ``(time_s, condition)`` pairs, times increasing: the condition from then on.
    """

    def __init__(self, robot: str | Robot, condition: str | Condition | Schedule = "healthy",
                 seed: int = 0, realtime: bool = False,
                 switches: Sequence[tuple[float, str | Condition]] = ()) -> None:
        self.robot = get_robot(robot)
        self.schedule = make_schedule(self.robot, condition, switches)
        self.sim = Simulator(self.robot, self.schedule)
        self.reward_fn = self.sim.reward_fn
        self.realtime = realtime
        self._seed = seed
        self.low, self.high = self.sim.action_low, self.sim.action_high

    # ------------------------------------------------------------------ properties
    control_timestep = core_property("control_timestep")
    condition = core_property("condition")
    total_reward = core_property("total_reward")
    diverged = core_property("diverged")

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
    def physics(self) -> Physics | None:
        """The simulation, or None before the first reset()."""
        return self.sim.physics if self.sim.started else None

    @property
    def steps(self) -> int:
        """Control steps completed since reset (a diverging step's state is discarded)."""
        return self.sim.step_count - int(self.sim.diverged)

    # ------------------------------------------------------------------ Robot protocol
    def reset(self) -> np.ndarray:
        self.rng = np.random.default_rng(self._seed)
        self.sim.reset(self.rng)
        self._ctrl = np.clip(np.zeros(self.act_dim), self.low, self.high)  # until act()
        self._x0 = float(self.sim.physics.torso_position()[0])
        self._flipped = self._tilted = 0
        self._t0 = time.perf_counter()
        return self.sim.observation(self.rng)

    def observe(self) -> np.ndarray:
        self._require_reset()
        if self.realtime:
            self._catch_up()
        return self.sim.observation(self.rng)

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
        self._ctrl = np.clip(a, self.low, self.high)  # a copy: the caller may reuse its array
        if not self.realtime:
            self._control_step()

    # ------------------------------------------------------------------ reporting
    def metrics(self) -> dict[str, Any]:
        """Return, distance (torso x since reset, m), speed (m/s), the control steps with the
        torso upside down (``flipped_steps``: ``Physics.flipped()``) or tilted beyond 60°
        (``tilted_steps``: ``Physics.tilted()``) and the state of the run."""
        self._require_reset()
        return {
            "return": float(self.total_reward),
            "distance": float(self.sim.physics.torso_position()[0] - self._x0),
            "speed": float(self.sim.true_observation()[self.robot.forward_velocity_index]),
            "sim_time": self.steps * self.control_timestep,
            "sim_steps": self.steps,
            "flipped_steps": self._flipped,
            "tilted_steps": self._tilted,
            "condition": self.condition.label,
            "schedule": self.schedule.label,
            "diverged": self.diverged,
        }

    # ------------------------------------------------------------------ internals
    def _require_reset(self) -> None:
        if not self.sim.started:
            raise RuntimeError("SimRobot: call reset() first")

    def _catch_up(self) -> None:
        target = int((time.perf_counter() - self._t0) / self.control_timestep)
        while self.steps < target and not self.diverged:
            self._control_step()

    def _control_step(self) -> None:
        if self.diverged:  # frozen after a blow-up; metrics() reports it
            return
        self.sim.step(self._ctrl)
        if not self.diverged:
            up = self.sim.physics.upright()  # one read for both counts
            self._flipped += up < FLIPPED_UPRIGHT
            self._tilted += up < TILTED_UPRIGHT
