"""Conditions: validated, composable changes to a robot's physics.

A :class:`Condition` is a tuple of modifiers — terrain, ground friction, payload, damage,
calibration errors, observation noise — each a frozen dataclass in physical units with its
allowed range documented on the field. ``condition.build(robot)`` validates every modifier
against the robot (before any simulation) and compiles a MuJoCo model by editing the robot's
``MjSpec``. A :class:`Schedule` switches conditions mid-episode at given times.

Units: metres, kilograms, degrees, seconds; a calibration error acts on the command, in
control units (the actuator receives ``sign * gain * ctrl + offset`` in place of ``ctrl``, and
keeps its own feedback: a position servo still pulls towards that target).

Every refusal is a :class:`ConditionError` (a ``ValueError``) naming the field, the value and
what is allowed.
"""

from __future__ import annotations

import functools
import json
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import mujoco
import numpy as np

from sims import terrain as terrain_lib
from sims.robots import Robot


class ConditionError(ValueError):
    """A condition refused before any simulation: names the field, the value and what is
    allowed (or, for a malformed string, the offending part and the syntax)."""


def _check_range(owner: str, name: str, value: float, lo: float, hi: float,
                 lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise a ConditionError naming the field, the value and the allowed range."""
    ok = math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo)
    ok = ok and (value < hi if hi_open else value <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ConditionError(
            f"{owner}.{name}={value!r} is out of range: allowed {left}{lo}, {hi}{right}")


def _check_choice(owner: str, name: str, value: Any, allowed: tuple[str, ...],
                  robot: Robot) -> None:
    """Raise a ConditionError unless ``value`` is one of the robot's ``allowed`` names."""
    if value not in allowed:
        listed = ", ".join(allowed) or "none"
        raise ConditionError(
            f"{owner}.{name}={value!r} is unknown for robot {robot.name!r}: allowed {listed}")


class Modifier(ABC):
    """One change to the physics. Subclasses are frozen dataclasses.

    Each declares its own command-line form: ``keyword``, how many ``:``-separated fields
    follow it (``field_count``) and :meth:`parse`, which makes the modifier of those fields;
    ``MODIFIERS`` lists every modifier once (see :func:`parse_condition`).
    """

    kind: ClassVar[str]
    keyword: ClassVar[str]  # its command-line keyword: ``weak`` in ``weak:bthigh:0.5``
    field_count: ClassVar[tuple[int, int]] = (1, 1)  # fields after the keyword: (min, max)
    syntax: ClassVar[str]  # command-line form and allowed ranges, for `adapt sims list`
    order: ClassVar[int]  # application order: terrain, friction, payload, calibration, damage

    @classmethod
    @abstractmethod
    def parse(cls, args: list[str], part: str) -> Modifier:
        """The modifier of the command-line fields ``args`` after its keyword (their count
        already checked against ``field_count``); ``part`` is the whole text, for errors."""

    @abstractmethod
    def validate(self, robot: Robot) -> None:
        """Raise ConditionError (field, value, allowed) unless this modifier applies to
        ``robot``."""

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:  # noqa: B027
        """Edit the robot's spec. Modifiers that act outside the model leave it alone."""

    def adjust_initial_state(  # noqa: B027  (an optional hook)
        self, model: mujoco.MjModel, data: mujoco.MjData
    ) -> None:
        """Hook for modifiers that constrain the initial state (a locked joint)."""

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind}
        d.update(asdict(self))  # type: ignore[call-overload]
        return d

    @property
    def label(self) -> str:
        vals = ",".join(_fmt(getattr(self, f.name)) for f in fields(self))  # type: ignore[arg-type]
        return f"{self.kind}({vals})"


def _syntax(cls: type[Modifier]) -> str:
    return " ".join(cls.syntax.split())


def _number(cls: type[Modifier], part: str, field: str, value: str) -> float:
    """A command-line field of ``part`` as a number, refused naming ``cls.kind``.``field``."""
    try:
        return float(value)
    except ValueError:
        raise ConditionError(f"condition {part!r}: {cls.kind}.{field}={value!r} is not a "
                             f"number: allowed a number; syntax {_syntax(cls)}") from None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple) and len(v) > 4:
        return f"<{len(v)} values>"
    return str(v)


# ----------------------------------------------------------------------------- terrain
@dataclass(frozen=True)
class Slope(Modifier):
    """The whole ground tilted about the y axis: positive degrees rise in +x (uphill)."""

    degrees: float  # [-robot.max_slope_deg, robot.max_slope_deg]
    kind: ClassVar[str] = "slope"
    keyword: ClassVar[str] = "slope"
    syntax: ClassVar[str] = (
        "slope:DEG               "
        "tilted ground, |DEG| <= robot max (and atan(friction))"
    )
    order: ClassVar[int] = 0

    @classmethod
    def parse(cls, args: list[str], part: str) -> Slope:
        return cls(_number(cls, part, "degrees", args[0]))

    def validate(self, robot: Robot) -> None:
        _require_floor(robot, self.kind)
        _check_range("slope", "degrees", self.degrees, -robot.max_slope_deg, robot.max_slope_deg)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        floor = spec.geom(robot.floor)
        half = -math.radians(self.degrees) / 2  # rotate the normal towards -x for uphill +x
        floor.quat = [math.cos(half), 0.0, math.sin(half), 0.0]


@dataclass(frozen=True)
class Heightfield(Modifier):
    """Ground shaped by a height profile along x (constant across y), see ``sims.terrain``."""

    heights: tuple[float, ...]  # metres per column, |h| <= 10, at terrain.COLUMN_WIDTH spacing
    name: str = "custom"  # a label: hill, basin, gentle, steep, ramps, ...
    kind: ClassVar[str] = "heightfield"
    keyword: ClassVar[str] = "terrain"
    syntax: ClassVar[str] = "terrain:NAME           heightfield: hill, basin, gentle, steep"
    order: ClassVar[int] = 0

    @classmethod
    def parse(cls, args: list[str], part: str) -> Heightfield:
        return cls.profile(args[0])

    @classmethod
    def profile(cls, name: str) -> Heightfield:
        """The paper's fixed test terrains: hill, basin, gentle, steep."""
        if name not in terrain_lib.PROFILES:
            raise ConditionError(f"terrain.profile={name!r} is unknown: allowed "
                                 f"{', '.join(terrain_lib.PROFILES)}")
        return cls(tuple(float(h) for h in terrain_lib.profile(name)), name)

    @classmethod
    def random_ramps(cls, rng: np.random.Generator) -> Heightfield:
        """A random training field of ramps (paper's training distribution)."""
        return cls(tuple(float(h) for h in terrain_lib.random_ramps(rng)), "ramps")

    @classmethod
    def slope_ahead(cls, degrees: float, start_x: float) -> Heightfield:
        """Flat ground, then a constant slope from ``start_x`` metres on."""
        return cls(
            tuple(float(h) for h in terrain_lib.slope_profile(degrees, start_x)),
            f"slope{degrees:g}@{start_x:g}m",
        )

    @property
    def label(self) -> str:
        return f"terrain({self.name})"

    def validate(self, robot: Robot) -> None:
        _require_floor(robot, self.kind)
        h = np.asarray(self.heights, dtype=float)
        if h.ndim != 1 or len(h) < 2:
            raise ConditionError(f"heightfield.heights has {h.size} values: allowed 2 or more")
        if not np.all(np.isfinite(h)) or np.max(np.abs(h)) > 10.0:
            raise ConditionError(
                f"heightfield.heights spans [{np.nanmin(h):g}, {np.nanmax(h):g}] m: allowed "
                "finite heights within [-10, 10] m"
            )
        grade = terrain_lib.max_grade_deg(h)
        if grade > 80.0:
            raise ConditionError(
                f"heightfield.heights has a {grade:.0f} degree step: allowed <= 80")

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        h = np.asarray(self.heights, dtype=float)
        lo, hi = float(h.min()), float(h.max())
        elevation = max(hi - lo, 1e-3)
        nrow = 3
        hfield = spec.add_hfield(name="terrain", nrow=nrow, ncol=len(h))
        half_len = (len(h) - 1) * terrain_lib.COLUMN_WIDTH / 2
        hfield.size = [half_len, 5.0, elevation, 0.5]
        # rows vary in y, columns in x; MuJoCo wants values normalised to [0, 1]
        hfield.userdata = np.tile((h - lo) / elevation, nrow).tolist()
        floor = spec.geom(robot.floor)
        floor.type = mujoco.mjtGeom.mjGEOM_HFIELD
        floor.hfieldname = "terrain"
        floor.pos = [terrain_lib.START_X + half_len, 0.0, lo]
        floor.size = [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- contact
@dataclass(frozen=True)
class Friction(Modifier):
    """Sliding friction coefficient of the ground (it governs every foot contact)."""

    coefficient: float  # [0.02, 10]
    kind: ClassVar[str] = "friction"
    keyword: ClassVar[str] = "friction"
    syntax: ClassVar[str] = "friction:MU            ground friction, MU in [0.02, 10]"
    order: ClassVar[int] = 1

    @classmethod
    def parse(cls, args: list[str], part: str) -> Friction:
        return cls(_number(cls, part, "coefficient", args[0]))

    def validate(self, robot: Robot) -> None:
        _require_floor(robot, self.kind)
        _check_range("friction", "coefficient", self.coefficient, 0.02, 10.0)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        floor = spec.geom(robot.floor)
        floor.priority = 1  # the ground's parameters win in every contact with it
        f = list(floor.friction)
        f[0] = self.coefficient
        floor.friction = f


# ----------------------------------------------------------------------------- payload
@dataclass(frozen=True)
class Payload(Modifier):
    """A rigid load bolted to the torso: mass in kg at an offset (m) in the torso frame."""

    mass: float  # (0, robot.max_payload_kg] kg
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # each within [-0.5, 0.5] m
    kind: ClassVar[str] = "payload"
    keyword: ClassVar[str] = "payload"
    field_count: ClassVar[tuple[int, int]] = (1, 2)
    syntax: ClassVar[str] = (
        "payload:KG[:X,Y,Z]      "
        "load on the torso, KG in (0, robot max], offsets in [-0.5, 0.5] m"
    )
    order: ClassVar[int] = 2

    @classmethod
    def parse(cls, args: list[str], part: str) -> Payload:
        offset = args[1].split(",") if len(args) > 1 else ["0", "0", "0"]
        if len(offset) != 3:
            raise ConditionError(f"condition {part!r}: payload.offset={args[1]!r}: allowed 3 "
                                 f"numbers x,y,z; syntax {_syntax(cls)}")
        xyz = tuple(_number(cls, part, f"offset.{a}", v)
                    for a, v in zip("xyz", offset, strict=True))
        return cls(_number(cls, part, "mass", args[0]), xyz)  # type: ignore[arg-type]

    def validate(self, robot: Robot) -> None:
        _check_range("payload", "mass", self.mass, 0.0, robot.max_payload_kg, lo_open=True)
        if len(self.offset) != 3:
            raise ConditionError(
                f"payload.offset={self.offset!r}: allowed 3 values (x, y, z)")
        for axis, v in zip("xyz", self.offset, strict=True):
            _check_range("payload", f"offset.{axis}", float(v), -0.5, 0.5)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        spec.body(robot.torso).add_geom(
            name="payload", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.05, 0.05, 0.05],
            pos=list(self.offset), mass=self.mass, contype=0, conaffinity=0,
            rgba=[0.9, 0.2, 0.2, 1.0],
        )


# ----------------------------------------------------------------------------- damage
# MuJoCo's actuator force is ``gain * u + bias``, ``u`` the control (or the activation it
# drives), with gain = gainprm[0] (fixed) or gainprm[0] + gainprm[1] * length + gainprm[2] *
# velocity (affine), and bias = 0 (none) or biasprm[0] + biasprm[1] * length + biasprm[2] *
# velocity (affine). Motors (gain = gear's unit, no bias), position servos (bias = -kp * q -
# kv * qdot), velocity servos (bias = -kv * qdot) and general actuators are all of this form:
# scaling the output scales gain and bias; a command error u -> s * u + o is
# gain * (s * u + o) + bias, i.e. gain x s and bias + o * gain, the feedback left as it was.
_GAIN_TERMS = {mujoco.mjtGain.mjGAIN_FIXED: 1, mujoco.mjtGain.mjGAIN_AFFINE: 3}
_BIAS_TERMS = {mujoco.mjtBias.mjBIAS_NONE: 0, mujoco.mjtBias.mjBIAS_AFFINE: 3}


def _check_affine_actuator(owner: str, name: str, robot: Robot) -> None:
    """Weak and calibration edit the affine gain and bias; muscles and user actuators are not."""
    model = robot.base_model()
    i = model.actuator(name).id
    gaintype = mujoco.mjtGain(int(model.actuator_gaintype[i]))
    biastype = mujoco.mjtBias(int(model.actuator_biastype[i]))
    if gaintype not in _GAIN_TERMS or biastype not in _BIAS_TERMS:
        raise ConditionError(
            f"{owner}.actuator={name!r} of robot {robot.name!r} has gaintype {gaintype.name} and "
            f"biastype {biastype.name}: allowed actuators with a fixed or affine gain and no or "
            "an affine bias (motor, position, velocity, general)")


def _editable(spec: mujoco.MjSpec, robot: Robot, name: str) -> Any:
    """The spec's actuator ``name``, ready to have its gain and bias edited.

    A position servo's ``dampratio`` sits in the spec as a positive biasprm[2] that the compiler
    turns into a damping only while gainprm[0] == -biasprm[1]; any edit of the gain breaks that
    match (the compiler would then take it as a positive, destabilising velocity feedback), so
    the healthy robot's compiled damping goes in its place first.
    """
    act = spec.actuator(name)
    if act.biastype == mujoco.mjtBias.mjBIAS_AFFINE and act.biasprm[2] > 0:
        bias = list(act.biasprm)
        bias[2] = float(robot.base_model().actuator(name).biasprm[2])
        act.biasprm = bias
    return act


def _scale_output(act: Any, factor: float) -> None:
    """The actuator's whole force (command and feedback part, and its force limit) x factor."""
    n_gain = _GAIN_TERMS[act.gaintype]
    act.gainprm = [g * factor if i < n_gain else g for i, g in enumerate(act.gainprm)]
    act.biasprm = [b * factor if i < 3 else b for i, b in enumerate(act.biasprm)]
    act.forcerange = [f * factor for f in act.forcerange]


def _miscalibrate_command(act: Any, scale: float, offset: float) -> None:
    """The actuator receives ``scale * u + offset`` in place of its command ``u``."""
    n_gain = _GAIN_TERMS[act.gaintype]
    gain = list(act.gainprm)
    if offset:
        bias = list(act.biasprm) if act.biastype == mujoco.mjtBias.mjBIAS_AFFINE else (
            [0.0] * len(act.biasprm))
        for i in range(n_gain):
            bias[i] += offset * gain[i]
        act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        act.biasprm = bias
    act.gainprm = [g * scale if i < n_gain else g for i, g in enumerate(gain)]
    if act.dyntype == mujoco.mjtDyn.mjDYN_INTEGRATOR:
        # the activation integrates the command: its limits hold the integral of scale * u
        lo, hi = (a / scale for a in act.actrange)
        act.actrange = [min(lo, hi), max(lo, hi)]


def _disable(act: Any) -> None:
    """Zero force whatever the command and the state, for every actuator type."""
    act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
    act.gainprm = [0.0] * len(act.gainprm)
    act.biastype = mujoco.mjtBias.mjBIAS_NONE
    act.biasprm = [0.0] * len(act.biasprm)


@dataclass(frozen=True)
class DisabledActuator(Modifier):
    """The actuator delivers zero force whatever it is commanded (a dead motor)."""

    actuator: str  # an actuator name of the robot
    kind: ClassVar[str] = "disabled"
    keyword: ClassVar[str] = "disabled"
    syntax: ClassVar[str] = "disabled:ACT           actuator gives zero force"
    order: ClassVar[int] = 4

    @classmethod
    def parse(cls, args: list[str], part: str) -> DisabledActuator:
        return cls(args[0])

    def validate(self, robot: Robot) -> None:
        _check_choice("disabled", "actuator", self.actuator, robot.actuator_names, robot)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        _disable(spec.actuator(self.actuator))


@dataclass(frozen=True)
class WeakenedActuator(Modifier):
    """The actuator's output force scaled by ``factor`` (a weak motor): the command and the
    feedback part (a servo's stiffness and damping) alike, and its force limit."""

    actuator: str  # an actuator name of the robot
    factor: float  # (0, 1)
    kind: ClassVar[str] = "weak"
    keyword: ClassVar[str] = "weak"
    field_count: ClassVar[tuple[int, int]] = (2, 2)
    syntax: ClassVar[str] = "weak:ACT:F             actuator force x F, F in (0, 1)"
    order: ClassVar[int] = 4

    @classmethod
    def parse(cls, args: list[str], part: str) -> WeakenedActuator:
        return cls(args[0], _number(cls, part, "factor", args[1]))

    def validate(self, robot: Robot) -> None:
        _check_choice("weak", "actuator", self.actuator, robot.actuator_names, robot)
        _check_range("weak", "factor", self.factor, 0.0, 1.0, lo_open=True, hi_open=True)
        _check_affine_actuator("weak", self.actuator, robot)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        _scale_output(_editable(spec, robot, self.actuator), self.factor)


@dataclass(frozen=True)
class LockedJoint(Modifier):
    """A joint held at ``position`` by an equality constraint (a seized joint): degrees for a
    hinge, metres for a slide. ``position=None`` locks it at 0 clipped into the joint's range.
    """

    joint: str  # a non-root joint of the robot
    position: float | None = None  # within the joint's range (unlimited hinge: +-180 degrees)
    kind: ClassVar[str] = "locked"
    keyword: ClassVar[str] = "locked"
    field_count: ClassVar[tuple[int, int]] = (1, 2)
    syntax: ClassVar[str] = (
        "locked:JOINT[:POS]     "
        "joint held at POS degrees (m for a slide) within its range (default 0 clipped)"
    )
    order: ClassVar[int] = 4

    @classmethod
    def parse(cls, args: list[str], part: str) -> LockedJoint:
        return cls(args[0], _number(cls, part, "position", args[1]) if len(args) > 1 else None)

    def validate(self, robot: Robot) -> None:
        _check_choice("locked", "joint", self.joint, robot.actuated_joint_names, robot)
        if self.position is None:
            return
        model = robot.base_model()
        j = model.joint(self.joint)
        hinge = model.jnt_type[j.id] == mujoco.mjtJoint.mjJNT_HINGE
        if model.jnt_limited[j.id]:
            lo, hi = (round(math.degrees(v), 6) if hinge else float(v) for v in j.range)
        else:
            lo, hi = (-180.0, 180.0) if hinge else (-math.inf, math.inf)
        _check_range("locked", "position", float(self.position), lo, hi)

    def _target(self, model: mujoco.MjModel) -> float:
        """The locked position in the model's units (radians for a hinge)."""
        j = model.joint(self.joint)
        if self.position is not None:
            hinge = model.jnt_type[j.id] == mujoco.mjtJoint.mjJNT_HINGE
            return math.radians(self.position) if hinge else float(self.position)
        if model.jnt_limited[j.id]:
            return float(np.clip(0.0, *j.range))
        return 0.0

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        target = self._target(robot.base_model())
        eq = spec.add_equality(name=f"lock_{self.joint}")
        eq.type = mujoco.mjtEq.mjEQ_JOINT
        eq.objtype = mujoco.mjtObj.mjOBJ_JOINT
        eq.name1 = self.joint
        data = np.zeros(len(eq.data))
        data[0] = target  # polycoef: q1 = c0 when no second joint
        eq.data = data.tolist()
        eq.solref = [0.005, 1.0]  # stiffer than the default: a seized joint barely gives

    def adjust_initial_state(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        j = model.joint(self.joint)
        data.qpos[model.jnt_qposadr[j.id]] = self._target(model)
        data.qvel[model.jnt_dofadr[j.id]] = 0.0


def _scale_leg(spec: mujoco.MjSpec, robot: Robot, leg_name: str, fraction: float) -> None:
    """Scale a leg's geometry from the hip down: segment lengths, and child body offsets."""
    leg = robot.leg(leg_name)
    names = set(leg.bodies)
    for bname in leg.bodies:
        body = spec.body(bname)
        if body.parent is not None and body.parent.name in names:
            body.pos = [p * fraction for p in body.pos]
        for geom in body.geoms:
            if not np.isnan(geom.fromto[0]):
                geom.fromto = [v * fraction for v in geom.fromto]
                continue
            geom.pos = [p * fraction for p in geom.pos]
            size = list(geom.size)
            if geom.type in (mujoco.mjtGeom.mjGEOM_CAPSULE, mujoco.mjtGeom.mjGEOM_CYLINDER):
                size[1] *= fraction  # half-length; the radius is the limb's thickness
            elif geom.type in (mujoco.mjtGeom.mjGEOM_BOX, mujoco.mjtGeom.mjGEOM_ELLIPSOID):
                size = [s * fraction for s in size]
            geom.size = size


@dataclass(frozen=True)
class ShortenedLeg(Modifier):
    """A leg's segments shortened to ``fraction`` of their length (mass follows the volume)."""

    leg: str  # a leg name of the robot
    fraction: float  # [0.1, 1)
    kind: ClassVar[str] = "shortened"
    keyword: ClassVar[str] = "shortened"
    field_count: ClassVar[tuple[int, int]] = (2, 2)
    syntax: ClassVar[str] = "shortened:LEG:F        leg segments x F, F in [0.1, 1)"
    order: ClassVar[int] = 3

    @classmethod
    def parse(cls, args: list[str], part: str) -> ShortenedLeg:
        return cls(args[0], _number(cls, part, "fraction", args[1]))

    def validate(self, robot: Robot) -> None:
        _check_choice("shortened", "leg", self.leg, robot.leg_names, robot)
        _check_range("shortened", "fraction", self.fraction, 0.1, 1.0, hi_open=True)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        _scale_leg(spec, robot, self.leg, self.fraction)


@dataclass(frozen=True)
class LostLeg(Modifier):
    """A leg lost: its actuators dead and its segments reduced to a stump of ``stump`` length.

    ``stump=0.5`` is the GrBAL paper's crippled ant leg (actuators masked, geoms halved).
    """

    leg: str  # a leg name of the robot
    stump: float = 0.5  # [0.05, 0.5] of the original segment lengths
    kind: ClassVar[str] = "lost_leg"
    keyword: ClassVar[str] = "lost_leg"
    field_count: ClassVar[tuple[int, int]] = (1, 2)
    syntax: ClassVar[str] = (
        "lost_leg:LEG[:STUMP]    "
        "leg motors dead, segments x STUMP in [0.05, 0.5] (default 0.5)"
    )
    order: ClassVar[int] = 3

    @classmethod
    def parse(cls, args: list[str], part: str) -> LostLeg:
        return cls(args[0], _number(cls, part, "stump", args[1]) if len(args) > 1 else 0.5)

    def validate(self, robot: Robot) -> None:
        _check_choice("lost_leg", "leg", self.leg, robot.leg_names, robot)
        _check_range("lost_leg", "stump", self.stump, 0.05, 0.5)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        _scale_leg(spec, robot, self.leg, self.stump)
        for name in robot.leg(self.leg).actuators:
            _disable(spec.actuator(name))


# ----------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class ActuatorCalibration(Modifier):
    """Calibration error of one actuator's command: it receives ``sign * gain * ctrl + offset``
    in place of ``ctrl`` (control units: torque for a motor, a target angle for a position
    servo, a target speed for a velocity servo), and keeps its own feedback.

    Several calibrations of one actuator compound in the order listed (each one miscalibrates
    the command the previous one produced); the compounded gain and offset keep these ranges.
    """

    actuator: str  # an actuator name of the robot
    gain: float = 1.0  # [0.1, 3]
    offset: float = 0.0  # [-0.5, 0.5] in control units
    flipped: bool = False  # wiring reversed: the sign of the command is inverted
    kind: ClassVar[str] = "calibration"
    keyword: ClassVar[str] = "calibration"
    field_count: ClassVar[tuple[int, int]] = (1, 2)
    syntax: ClassVar[str] = (
        "calibration:ACT:gain=G,offset=O,flipped=0|1  "
        "command -> sign*G*command + O, G in [0.1, 3], O in [-0.5, 0.5] (control units)"
    )
    order: ClassVar[int] = 3

    GAIN_RANGE: ClassVar[tuple[float, float]] = (0.1, 3.0)
    OFFSET_RANGE: ClassVar[tuple[float, float]] = (-0.5, 0.5)
    KEYS: ClassVar[tuple[str, ...]] = ("gain", "offset", "flipped")  # of the second field

    @classmethod
    def parse(cls, args: list[str], part: str) -> ActuatorCalibration:
        kw: dict[str, Any] = {}
        for item in (args[1].split(",") if len(args) > 1 else []):
            key, eq, value = item.partition("=")
            if not eq or key not in cls.KEYS or key in kw:
                problem = ("is not key=value" if not eq else "repeats a key" if key in kw
                           else "names an unknown key")
                raise ConditionError(
                    f"condition {part!r}: {item!r} {problem}: allowed keys "
                    f"{', '.join(cls.KEYS)}, each once; syntax {_syntax(cls)}")
            if key == "flipped":
                if value not in ("0", "1"):
                    raise ConditionError(f"condition {part!r}: calibration.flipped={value!r} "
                                         f"is not allowed: allowed 0 or 1; syntax {_syntax(cls)}")
                kw[key] = value == "1"
            else:
                kw[key] = _number(cls, part, key, value)
        return cls(args[0], **kw)

    def validate(self, robot: Robot) -> None:
        _check_choice("calibration", "actuator", self.actuator, robot.actuator_names, robot)
        _check_range("calibration", "gain", self.gain, *self.GAIN_RANGE)
        _check_range("calibration", "offset", self.offset, *self.OFFSET_RANGE)
        if not isinstance(self.flipped, bool):
            raise ConditionError(
                f"calibration.flipped={self.flipped!r} is not allowed: allowed True or False")
        _check_affine_actuator("calibration", self.actuator, robot)
        model = robot.base_model()
        integrator = model.actuator_dyntype[model.actuator(self.actuator).id] == (
            mujoco.mjtDyn.mjDYN_INTEGRATOR)
        if self.offset and integrator:
            raise ConditionError(
                f"calibration.offset={self.offset!r} on actuator {self.actuator!r}, which "
                "integrates its command (an offset would make it drift without bound): allowed "
                "0 for this actuator")

    @property
    def scale(self) -> float:
        """The signed gain the command is multiplied by."""
        return -self.gain if self.flipped else self.gain

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        _miscalibrate_command(_editable(spec, robot, self.actuator), self.scale, self.offset)


def _compound(calibrations: list[ActuatorCalibration]) -> ActuatorCalibration:
    """One actuator's calibrations as one: each miscalibrates the command the previous one
    produced, so u -> s2 * (s1 * u + o1) + o2."""
    scale, offset = 1.0, 0.0
    for c in calibrations:
        scale, offset = c.scale * scale, c.scale * offset + c.offset
    return ActuatorCalibration(calibrations[0].actuator, gain=abs(scale), offset=offset,
                               flipped=scale < 0)


@dataclass(frozen=True)
class ObservationNoise(Modifier):
    """Gaussian noise of ``std`` added to every observation the controller sees (not to the
    reward, which uses the true state)."""

    std: float  # [0, 1] in observation units
    kind: ClassVar[str] = "obs_noise"
    keyword: ClassVar[str] = "obs_noise"
    syntax: ClassVar[str] = "obs_noise:STD          Gaussian observation noise, STD in [0, 1]"
    order: ClassVar[int] = 5

    @classmethod
    def parse(cls, args: list[str], part: str) -> ObservationNoise:
        return cls(_number(cls, part, "std", args[0]))

    def validate(self, robot: Robot) -> None:
        _check_range("obs_noise", "std", self.std, 0.0, 1.0)


def _require_floor(robot: Robot, kind: str) -> None:
    if robot.floor is None:
        raise ConditionError(
            f"{kind}: robot {robot.name!r} has no ground plane: allowed only on robots with a "
            "floor geom of type plane (terrain and friction act on it)"
        )


#: Every modifier by its kind, in the order ``adapt sims list`` shows them: a new modifier is
#: one class above and one entry here (its keyword and fields are declared on the class).
MODIFIERS: dict[str, type[Modifier]] = {
    cls.kind: cls
    for cls in (Slope, Heightfield, Friction, Payload, DisabledActuator, WeakenedActuator,
                LockedJoint, ShortenedLeg, LostLeg, ActuatorCalibration, ObservationNoise)
}
_TERRAIN = (Slope, Heightfield)


_ACTUATOR_KINDS = (DisabledActuator, WeakenedActuator, ActuatorCalibration)


def _compounded(modifiers: tuple[Modifier, ...]) -> tuple[Modifier, ...]:
    """The modifiers with each actuator's calibrations compounded into one, in its place."""
    cals: dict[str, list[ActuatorCalibration]] = {}
    for m in modifiers:
        if isinstance(m, ActuatorCalibration):
            cals.setdefault(m.actuator, []).append(m)
    out: list[Modifier] = []
    for m in modifiers:
        if not isinstance(m, ActuatorCalibration):
            out.append(m)
        elif m is cals[m.actuator][0]:
            out.append(_compound(cals[m.actuator]) if len(cals[m.actuator]) > 1 else m)
    return tuple(out)


def _check_composition(modifiers: tuple[Modifier, ...]) -> None:
    """Refuse duplicates and modifiers that contradict each other, naming the field."""
    def once(kinds: tuple[type[Modifier], ...], what: str) -> None:
        found = [m for m in modifiers if isinstance(m, kinds)]
        if len(found) > 1:
            raise ConditionError(
                f"Condition.modifiers holds {len(found)} ({', '.join(m.label for m in found)}): "
                f"allowed at most one {what}")

    once(_TERRAIN, "terrain (slope or heightfield)")
    once((Friction,), "friction")
    once((ObservationNoise,), "obs_noise")
    once((Payload,), "payload (one mass at one offset stands for several loads)")
    for kind, attr in ((LockedJoint, "joint"), (ShortenedLeg, "leg"), (LostLeg, "leg"),
                       (DisabledActuator, "actuator"), (WeakenedActuator, "actuator")):
        seen: set[Any] = set()
        for m in modifiers:
            if isinstance(m, kind):
                value = getattr(m, attr)
                if value in seen:
                    raise ConditionError(
                        f"{kind.kind}.{attr}={value!r} appears twice: allowed once per {attr}")
                seen.add(value)
    for m in modifiers:
        if isinstance(m, ShortenedLeg) and any(
                isinstance(o, LostLeg) and o.leg == m.leg for o in modifiers):
            raise ConditionError(
                f"shortened.leg={m.leg!r} is also a lost_leg: allowed one of the two per leg")
        if isinstance(m, DisabledActuator):
            other = next((o for o in modifiers if isinstance(o, (WeakenedActuator,
                          ActuatorCalibration)) and o.actuator == m.actuator), None)
            if other is not None:
                raise ConditionError(
                    f"{other.kind}.actuator={m.actuator!r} is also disabled: allowed no other "
                    "actuator modifier on a disabled actuator")
    for m in _compounded(modifiers):
        n = sum(isinstance(o, ActuatorCalibration) and o.actuator == getattr(m, "actuator", None)
                for o in modifiers)
        if isinstance(m, ActuatorCalibration) and n > 1:
            what = f"compounded over {n} calibrations of {m.actuator!r}"
            _check_range("calibration", f"gain ({what})", m.gain,
                         *ActuatorCalibration.GAIN_RANGE)
            _check_range("calibration", f"offset ({what})", m.offset,
                         *ActuatorCalibration.OFFSET_RANGE)


# ----------------------------------------------------------------------------- condition
@dataclass(frozen=True)
class Condition:
    """A set of modifiers applied together. The empty condition is the healthy robot."""

    modifiers: tuple[Modifier, ...] = ()
    name: str = ""  # optional label; defaults to the modifiers' labels

    def __post_init__(self) -> None:
        for m in self.modifiers:
            if not isinstance(m, Modifier):
                raise TypeError(f"Condition.modifiers holds {m!r}, which is not a Modifier")
        _check_composition(self.modifiers)

    def __add__(self, other: Condition | Modifier) -> Condition:
        extra = other.modifiers if isinstance(other, Condition) else (other,)
        return Condition(self.modifiers + extra)

    @property
    def label(self) -> str:
        return self.name or "+".join(m.label for m in self.modifiers) or "healthy"

    @property
    def obs_noise_std(self) -> float:
        return sum(m.std for m in self.modifiers if isinstance(m, ObservationNoise))

    def validate(self, robot: Robot) -> None:
        for m in self.modifiers:
            m.validate(robot)
        for m in self.modifiers:
            if isinstance(m, LostLeg):
                for name in robot.leg(m.leg).actuators:
                    other = next((o for o in self.modifiers if isinstance(o, _ACTUATOR_KINDS)
                                  and o.actuator == name), None)
                    if other is not None:
                        raise ConditionError(
                            f"{other.kind}.actuator={name!r} belongs to leg {m.leg!r}, which "
                            f"lost_leg already disables: allowed actuators of other legs")
        friction = next((m.coefficient for m in self.modifiers if isinstance(m, Friction)), None)
        slope = next((m for m in self.modifiers if isinstance(m, Slope)), None)
        if slope is not None:
            mu = friction if friction is not None else _floor_friction(robot)
            limit = math.degrees(math.atan(mu))
            if abs(slope.degrees) > limit:
                raise ConditionError(
                    f"slope.degrees={slope.degrees!r} is steeper than robot {robot.name!r} can "
                    f"stand on with ground friction {mu:g}: allowed |degrees| <= {limit:.1f}"
                )

    def build(self, robot: Robot) -> mujoco.MjModel:
        """Validate against the robot and compile the changed model (cached per condition)."""
        self.validate(robot)
        return _compile(robot, self)

    def adjust_initial_state(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        for m in self.modifiers:
            m.adjust_initial_state(model, data)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "modifiers": [m.to_dict() for m in self.modifiers]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Condition:
        mods = []
        for md in d.get("modifiers", []):
            md = dict(md)
            kind = md.pop("kind", None)
            if kind not in MODIFIERS:
                raise ConditionError(
                    f"condition kind={kind!r} is unknown: allowed {', '.join(sorted(MODIFIERS))}")
            modifier = MODIFIERS[kind]
            allowed = [f.name for f in fields(modifier)]  # type: ignore[arg-type]
            unknown = sorted(set(md) - set(allowed))
            if unknown:
                raise ConditionError(f"{kind}.{unknown[0]} is unknown: allowed fields "
                                     f"{', '.join(allowed)}")
            for k, v in md.items():
                if isinstance(v, list):
                    md[k] = tuple(v)
            mods.append(modifier(**md))
        return cls(tuple(mods), d.get("name", ""))

    @classmethod
    def from_json(cls, s: str) -> Condition:
        return cls.from_dict(json.loads(s))


HEALTHY = Condition()


def _floor_friction(robot: Robot) -> float:
    return float(robot.base_model().geom(robot.floor).friction[0])


@functools.lru_cache(maxsize=256)
def _compile(robot: Robot, condition: Condition) -> mujoco.MjModel:
    spec = robot.spec()
    for m in sorted(_compounded(condition.modifiers), key=lambda m: m.order):
        m.apply(spec, robot)
    return spec.compile()


# ----------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Schedule:
    """Conditions that switch mid-episode: ``segments[i] = (start_time_s, condition)``.

    The first segment starts at 0 s; switching keeps the robot's state (positions,
    velocities, time) and swaps the physics underneath it.
    """

    segments: tuple[tuple[float, Condition], ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise ConditionError("Schedule.segments is empty: allowed one or more, the first "
                                 "(0.0, condition)")
        if self.segments[0][0] != 0.0:
            raise ConditionError(
                f"Schedule.segments[0] starts at {self.segments[0][0]!r}: allowed 0.0")
        times = [t for t, _ in self.segments]
        for i in range(1, len(times)):
            if not (math.isfinite(times[i]) and times[i] > times[i - 1]):
                raise ConditionError(
                    f"Schedule.segments[{i}] time={times[i]!r}: allowed a finite time after "
                    f"{times[i - 1]!r}")

    @classmethod
    def fixed(cls, condition: Condition) -> Schedule:
        return cls(((0.0, condition),))

    @classmethod
    def switch(cls, before: Condition, after: Condition, at: float) -> Schedule:
        """``before`` until ``at`` seconds, then ``after`` (e.g. a leg fails at t = 3 s)."""
        return cls(((0.0, before), (float(at), after)))

    def validate(self, robot: Robot) -> None:
        for _, c in self.segments:
            c.validate(robot)

    def switch_steps(self, control_timestep: float) -> tuple[int, ...]:
        """Control step index at which each segment begins."""
        return tuple(int(round(t / control_timestep)) for t, _ in self.segments)

    @property
    def label(self) -> str:
        if len(self.segments) == 1:
            return self.segments[0][1].label
        return " -> ".join(f"{c.label}@{t:g}s" for t, c in self.segments)

    def to_dict(self) -> dict[str, Any]:
        return {"segments": [[t, c.to_dict()] for t, c in self.segments]}


# ----------------------------------------------------------------------------- parsing
#: Command-line keyword -> modifier (``terrain`` is the heightfield's).
_KEYWORDS: dict[str, type[Modifier]] = {cls.keyword: cls for cls in MODIFIERS.values()}


def parse_condition(text: str, robot: Robot | None = None) -> Condition:
    """Parse the command-line form, modifiers joined by '+':

    ``healthy``, ``disabled:bthigh``, ``weak:bthigh:0.5``, ``locked:bthigh[:20]`` (degrees),
    ``lost_leg:back_right[:0.5]``, ``shortened:back:0.6``, ``payload:2.0[:x,y,z]``,
    ``slope:10``, ``terrain:hill`` (hill, basin, gentle, steep), ``friction:0.5``,
    ``calibration:bthigh:gain=0.8,offset=0.1,flipped=1``, ``obs_noise:0.01``.

    A malformed part is refused with a :class:`ConditionError` naming it and its syntax; with
    ``robot``, the condition is also validated against it.
    """
    text = text.strip()
    if text in ("", "healthy", "none"):
        return HEALTHY
    cond = Condition(tuple(_parse_part(part.strip()) for part in text.split("+")))
    if robot is not None:
        cond.validate(robot)
    return cond


def _parse_part(part: str) -> Modifier:
    keyword, *args = part.split(":")
    if keyword not in _KEYWORDS:
        raise ConditionError(
            f"condition {part!r}: kind={keyword!r} is unknown: allowed "
            f"{', '.join(sorted(_KEYWORDS))} (join several with '+'; see `adapt sims list`)")
    cls = _KEYWORDS[keyword]
    lo, hi = cls.field_count
    if not lo <= len(args) <= hi:
        wanted = str(lo) if lo == hi else f"{lo} to {hi}"
        raise ConditionError(f"condition {part!r} has {len(args)} field(s) after {keyword!r}: "
                             f"allowed {wanted}; syntax {_syntax(cls)}")
    return cls.parse(args, part)


__all__ = [
    "ActuatorCalibration", "Condition", "ConditionError", "DisabledActuator", "Friction", "HEALTHY",
    "Heightfield", "LockedJoint", "LostLeg", "MODIFIERS", "Modifier", "ObservationNoise",
    "Payload", "Schedule", "ShortenedLeg", "Slope", "WeakenedActuator",
    "parse_condition",
]
