"""Task families: distributions of conditions with explicit train / held-out splits.

Each family draws training conditions from ``sample(rng, "train")`` and held-out conditions
from ``sample(rng, "test")``; ``is_held_out(condition)`` says which side a condition is on, and
the training sampler never produces a condition for which it is true (tests check this over
many draws). Splits follow the GrBAL paper where it defines them (../shared/REFERENCE.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sims.conditions import (
    HEALTHY,
    ActuatorCalibration,
    Condition,
    DisabledActuator,
    Friction,
    Heightfield,
    LostLeg,
    Payload,
    Schedule,
    Slope,
    WeakenedActuator,
)
from sims.robots import CHEETAH, QUADRUPED, Robot, frame_skipped_name

SPLITS = ("train", "test")


@dataclass(frozen=True)
class TaskFamily:
    """A named distribution of conditions for one robot, split into train and held-out."""

    name: str
    robot: Robot
    description: str  # one line: what varies, what is held out
    train_sampler: Callable[[np.random.Generator], Condition]
    test_conditions: tuple[Condition, ...]  # the fixed held-out set, evaluated one by one
    is_held_out: Callable[[Condition], bool]  # True for conditions that training never draws
    switch_time_s: float = 3.0  # default time of the mid-episode switch scenario
    # How many control steps of the base family's robot one action is held for (see
    # :meth:`with_frame_skip`).
    frame_skip: int = 1
    # The family table of the spec file this family was loaded from, as JSON ("" for a family
    # built in Python); checkpoints and exports carry it (see ``sims.specs``). A frame-skipped
    # family keeps its base's: the document rebuilds the base, and the name the rest.
    source: str = field(default="", compare=False, repr=False)

    def sample(self, rng: np.random.Generator, split: str = "train") -> Condition:
        """One condition of ``split`` drawn with the explicitly passed generator."""
        _check_split(split)
        if split == "train":
            cond = self.train_sampler(rng)
            # Belt and braces: a sampler bug must never leak a held-out condition into training.
            if self.is_held_out(cond):
                raise RuntimeError(f"{self.name}: training sampler drew held-out {cond.label}")
            return cond
        return self.test_conditions[int(rng.integers(len(self.test_conditions)))]

    def conditions(self, split: str, rng: np.random.Generator | None = None,
                   n: int = 8) -> list[Condition]:
        """The held-out set (``test``), or ``n`` draws of the training distribution."""
        _check_split(split)
        if split == "test":
            return list(self.test_conditions)
        if rng is None:
            raise ValueError("conditions('train') needs an explicit rng")
        return [self.sample(rng, "train") for _ in range(n)]

    def with_frame_skip(self, k: int) -> TaskFamily:
        """The same distribution and splits over ``robot.with_frame_skip(k)``, named
        ``NAME@k`` (a frame-skipped family's own frame skip compounds, as a robot's)."""
        robot = self.robot.with_frame_skip(k)  # refuses a bad k, naming it
        k = int(k)
        if k == 1:
            return self
        name, total = frame_skipped_name(self.name, self.frame_skip, k)
        return dataclasses.replace(self, name=name, robot=robot, frame_skip=total)

    def switch_scenario(self, held_out: Condition, at: float | None = None) -> Schedule:
        """Healthy (flat) until ``at`` seconds, then the held-out condition."""
        return Schedule.switch(HEALTHY, held_out, self.switch_time_s if at is None else at)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown: allowed {', '.join(SPLITS)}")


def _damaged_actuators(c: Condition) -> set[str]:
    return {m.actuator for m in c.modifiers
            if isinstance(m, (DisabledActuator, WeakenedActuator))}


# ------------------------------------------------------------------ cheetah-cripple
_CHEETAH_TRAIN_JOINTS = ("bshin", "bfoot", "fthigh", "fshin", "ffoot")  # paper: actuators 1..5
_CHEETAH_HELD_OUT_JOINT = "bthigh"  # paper: actuator 0 only at test time

CHEETAH_CRIPPLE = TaskFamily(
    name="cheetah-cripple",
    robot=CHEETAH,
    description="one actuator disabled; train: bshin, bfoot, fthigh, fshin, ffoot; "
                "held out: bthigh (the paper's split)",
    train_sampler=lambda rng: Condition(
        (DisabledActuator(str(rng.choice(_CHEETAH_TRAIN_JOINTS))),)),
    test_conditions=(Condition((DisabledActuator(_CHEETAH_HELD_OUT_JOINT),)),),
    is_held_out=lambda c: _CHEETAH_HELD_OUT_JOINT in _damaged_actuators(c),
)

# ------------------------------------------------------------------ cheetah-terrain
_TEST_TERRAINS = ("hill", "basin", "steep")
CHEETAH_TERRAIN = TaskFamily(
    name="cheetah-terrain",
    robot=CHEETAH,
    description="heightfield terrain; train: random ramp fields; held out: hill, basin, steep",
    train_sampler=lambda rng: Condition((Heightfield.random_ramps(rng),)),
    test_conditions=tuple(Condition((Heightfield.profile(n),)) for n in _TEST_TERRAINS),
    is_held_out=lambda c: any(isinstance(m, Heightfield) and m.name in _TEST_TERRAINS
                              for m in c.modifiers),
)

# ------------------------------------------------------------------ cheetah-payload
_PAYLOAD_TRAIN_KG = (0.5, 8.0)
_PAYLOAD_TEST_KG = (10.0, 14.0)
CHEETAH_PAYLOAD = TaskFamily(
    name="cheetah-payload",
    robot=CHEETAH,
    description="load on the torso; train: 0.5-8 kg at +-0.3 m along the body; "
                "held out: 10 and 14 kg (heavier than any trained)",
    train_sampler=lambda rng: Condition((Payload(
        float(rng.uniform(*_PAYLOAD_TRAIN_KG)), (float(rng.uniform(-0.3, 0.3)), 0.0, 0.0)),)),
    test_conditions=(
        Condition((Payload(10.0, (0.0, 0.0, 0.0)),)),
        Condition((Payload(14.0, (0.2, 0.0, 0.0)),)),
    ),
    is_held_out=lambda c: any(isinstance(m, Payload) and m.mass > _PAYLOAD_TRAIN_KG[1]
                              for m in c.modifiers),
)

# ------------------------------------------------------------------ quadruped-leg-failure
_QUAD_TRAIN_LEGS = ("front_left", "front_right", "back_left")  # paper: legs 0, 1, 2
_QUAD_HELD_OUT_LEG = "back_right"  # paper: leg 3
QUADRUPED_LEG_FAILURE = TaskFamily(
    name="quadruped-leg-failure",
    robot=QUADRUPED,
    description="one leg crippled (motors dead, segments halved); train: legs 0-2; "
                "held out: leg 3 (back_right), as the paper's ant",
    train_sampler=lambda rng: Condition((LostLeg(str(rng.choice(_QUAD_TRAIN_LEGS))),)),
    test_conditions=(Condition((LostLeg(_QUAD_HELD_OUT_LEG),)),),
    is_held_out=lambda c: any(isinstance(m, LostLeg) and m.leg == _QUAD_HELD_OUT_LEG
                              for m in c.modifiers),
)

# ------------------------------------------------------------------ quadruped-slope
_SLOPE_TRAIN_DEG = 10.0
QUADRUPED_SLOPE = TaskFamily(
    name="quadruped-slope",
    robot=QUADRUPED,
    description="tilted ground; train: slopes within +-10 degrees; "
                "held out: 15 and 20 degrees up, 15 down (steeper than any trained)",
    train_sampler=lambda rng: Condition((Slope(float(rng.uniform(-_SLOPE_TRAIN_DEG,
                                                                  _SLOPE_TRAIN_DEG))),)),
    test_conditions=tuple(Condition((Slope(d),)) for d in (15.0, 20.0, -15.0)),
    is_held_out=lambda c: any(isinstance(m, Slope) and abs(m.degrees) > _SLOPE_TRAIN_DEG
                              for m in c.modifiers),
)


# ------------------------------------------------------------------ cheetah-mixed
def _mixed_train(rng: np.random.Generator) -> Condition:
    """A random mix: ground friction, a payload, one weak (not back-thigh) actuator and a
    miscalibrated actuator, each present with probability 1/2."""
    mods: list = []
    if rng.random() < 0.5:
        mods.append(Friction(float(rng.uniform(0.4, 1.5))))
    if rng.random() < 0.5:
        mods.append(Payload(float(rng.uniform(0.5, 5.0))))
    if rng.random() < 0.5:
        mods.append(WeakenedActuator(str(rng.choice(_CHEETAH_TRAIN_JOINTS)),
                                     float(rng.uniform(0.2, 0.8))))
    if rng.random() < 0.5:
        mods.append(ActuatorCalibration(str(rng.choice(_CHEETAH_TRAIN_JOINTS)),
                                        gain=float(rng.uniform(0.7, 1.3)),
                                        offset=float(rng.uniform(-0.1, 0.1))))
    return Condition(tuple(mods))


CHEETAH_MIXED = TaskFamily(
    name="cheetah-mixed",
    robot=CHEETAH,
    description="mixed friction, payload, weak motor, calibration error; held out: a dead "
                "back thigh with a load on slippery ground, and a reversed (sign-flipped) motor",
    train_sampler=_mixed_train,
    test_conditions=(
        Condition((DisabledActuator("bthigh"), Payload(4.0), Friction(0.3))),
        Condition((ActuatorCalibration("fthigh", flipped=True),)),
    ),
    is_held_out=lambda c: (
        _CHEETAH_HELD_OUT_JOINT in _damaged_actuators(c)
        or any(isinstance(m, Friction) and m.coefficient < 0.4 for m in c.modifiers)
        or any(isinstance(m, ActuatorCalibration) and m.flipped for m in c.modifiers)
    ),
)

# ------------------------------------------------------------------ cheetah-reversed
_CHEETAH_ACTUATORS = ("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
_REVERSED_HELD_OUT = (frozenset({"bthigh", "fthigh"}), frozenset({"bshin", "fshin"}))


def _reversed(names: tuple[str, ...]) -> Condition:
    return Condition(tuple(ActuatorCalibration(n, flipped=True) for n in names),
                     name=f"reversed({'+'.join(names)})")


def _flipped_actuators(c: Condition) -> frozenset[str]:
    return frozenset(m.actuator for m in c.modifiers
                     if isinstance(m, ActuatorCalibration) and m.flipped)


def _reversed_train(rng: np.random.Generator) -> Condition:
    while True:  # rejection keeps the held-out pairs out; 2 of 21 subsets are rejected
        k = int(rng.integers(1, 3))
        names = tuple(str(n) for n in rng.choice(_CHEETAH_ACTUATORS, size=k, replace=False))
        if frozenset(names) not in _REVERSED_HELD_OUT:
            return _reversed(names)


CHEETAH_REVERSED = TaskFamily(
    name="cheetah-reversed",
    robot=CHEETAH,
    description="motors wired in reverse (sign-flipped, MOLe's fault); train: any one motor "
                "or pair; held out: the pairs bthigh+fthigh and bshin+fshin",
    # Sign flips cannot be ridden out by one robust gait: the controller has to find out which
    # motors are reversed, which is what an RL^2 trial rewards remembering across episodes.
    # Every motor is reversed somewhere in training; what is held out is the combination.
    train_sampler=_reversed_train,
    test_conditions=tuple(_reversed(tuple(n for n in _CHEETAH_ACTUATORS if n in pair))
                          for pair in _REVERSED_HELD_OUT),
    is_held_out=lambda c: _flipped_actuators(c) in _REVERSED_HELD_OUT,
)

#: The families every process knows by name from the start (``sims.registry`` registers them).
BUILT_IN_FAMILIES: tuple[TaskFamily, ...] = (
    CHEETAH_CRIPPLE, CHEETAH_TERRAIN, CHEETAH_PAYLOAD, CHEETAH_MIXED, CHEETAH_REVERSED,
    QUADRUPED_LEG_FAILURE, QUADRUPED_SLOPE,
)
