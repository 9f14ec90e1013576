"""Conditions: validated, composable changes to a robot's physics.

A :class:`Condition` is a tuple of modifiers — terrain, ground friction, payload, damage,
calibration errors, observation noise — each a frozen dataclass in physical units with its
allowed range documented on the field. ``condition.build(robot)`` validates every modifier
against the robot (before any simulation) and compiles a MuJoCo model by editing the robot's
``MjSpec``. A :class:`Schedule` switches conditions mid-episode at given times.

Units: metres, kilograms, degrees, seconds; actuator gains and offsets in control units
(the actuator force is ``gear * (gain * ctrl + offset)``).
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


def _check_range(owner: str, name: str, value: float, lo: float, hi: float,
                 lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise a ValueError naming the field, the value and the allowed range."""
    ok = math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo)
    ok = ok and (value < hi if hi_open else value <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ValueError(
            f"{owner}.{name}={value!r} is out of range: allowed {left}{lo}, {hi}{right}")


class Modifier(ABC):
    """One change to the physics. Subclasses are frozen dataclasses."""

    kind: ClassVar[str]
    syntax: ClassVar[str]  # command-line form and allowed ranges, for `adapt sims list`
    order: ClassVar[int]  # application order: terrain, friction, payload, calibration, damage

    @abstractmethod
    def validate(self, robot: Robot) -> None:
        """Raise ValueError (field, value, allowed) if this modifier cannot apply to ``robot``."""

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
    syntax: ClassVar[str] = (
        "slope:DEG               "
        "tilted ground, |DEG| <= robot max (and atan(friction))"
    )
    order: ClassVar[int] = 0

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
    syntax: ClassVar[str] = "terrain:NAME           heightfield: hill, basin, gentle, steep"
    order: ClassVar[int] = 0

    @classmethod
    def profile(cls, name: str) -> Heightfield:
        """The paper's fixed test terrains: hill, basin, gentle, steep."""
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
            raise ValueError(f"heightfield.heights has {h.size} values: need at least 2")
        if not np.all(np.isfinite(h)) or np.max(np.abs(h)) > 10.0:
            raise ValueError(
                f"heightfield.heights must be finite and within [-10, 10] m; got range "
                f"[{np.nanmin(h):g}, {np.nanmax(h):g}]"
            )
        grade = terrain_lib.max_grade_deg(h)
        if grade > 80.0:
            raise ValueError(f"heightfield.heights has a {grade:.0f} degree step: allowed <= 80")

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
    syntax: ClassVar[str] = "friction:MU            ground friction, MU in [0.02, 10]"
    order: ClassVar[int] = 1

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
    syntax: ClassVar[str] = (
        "payload:KG[:X,Y,Z]      "
        "load on the torso, KG in (0, robot max], offsets in [-0.5, 0.5] m"
    )
    order: ClassVar[int] = 2

    def validate(self, robot: Robot) -> None:
        _check_range("payload", "mass", self.mass, 0.0, robot.max_payload_kg, lo_open=True)
        if len(self.offset) != 3:
            raise ValueError(f"payload.offset={self.offset!r} must have 3 values (x, y, z)")
        for axis, v in zip("xyz", self.offset, strict=True):
            _check_range("payload", f"offset.{axis}", float(v), -0.5, 0.5)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        spec.body(robot.torso).add_geom(
            name="payload", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.05, 0.05, 0.05],
            pos=list(self.offset), mass=self.mass, contype=0, conaffinity=0,
            rgba=[0.9, 0.2, 0.2, 1.0],
        )


# ----------------------------------------------------------------------------- damage
def _actuators(spec: mujoco.MjSpec, names: tuple[str, ...]):
    return [spec.actuator(n) for n in names]


@dataclass(frozen=True)
class DisabledActuator(Modifier):
    """The actuator delivers zero force whatever it is commanded (a dead motor)."""

    actuator: str  # an actuator name of the robot
    kind: ClassVar[str] = "disabled"
    syntax: ClassVar[str] = "disabled:ACT           actuator gives zero force"
    order: ClassVar[int] = 4

    def validate(self, robot: Robot) -> None:
        robot.check_actuator(self.actuator, "disabled.actuator")

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        _disable(spec.actuator(self.actuator))


def _disable(act) -> None:
    gain = list(act.gainprm)
    gain[0] = 0.0
    act.gainprm = gain
    act.biastype = mujoco.mjtBias.mjBIAS_NONE
    act.biasprm = [0.0] * len(act.biasprm)


@dataclass(frozen=True)
class WeakenedActuator(Modifier):
    """The actuator's force scaled by ``factor`` (a weak motor)."""

    actuator: str  # an actuator name of the robot
    factor: float  # (0, 1)
    kind: ClassVar[str] = "weak"
    syntax: ClassVar[str] = "weak:ACT:F             actuator force x F, F in (0, 1)"
    order: ClassVar[int] = 4

    def validate(self, robot: Robot) -> None:
        robot.check_actuator(self.actuator, "weak.actuator")
        _check_range("weak", "factor", self.factor, 0.0, 1.0, lo_open=True, hi_open=True)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        act = spec.actuator(self.actuator)
        act.gainprm = [g * self.factor if i == 0 else g for i, g in enumerate(act.gainprm)]
        act.biasprm = [b * self.factor for b in act.biasprm]


@dataclass(frozen=True)
class LockedJoint(Modifier):
    """A joint held at ``position`` (rad or m) by an equality constraint (a seized joint).

    ``position=None`` locks it at 0 clipped into the joint's range.
    """

    joint: str  # a non-root joint of the robot
    position: float | None = None  # within the joint's range
    kind: ClassVar[str] = "locked"
    syntax: ClassVar[str] = "locked:JOINT[:POS]     joint held at POS (default 0 clipped to range)"
    order: ClassVar[int] = 4

    def validate(self, robot: Robot) -> None:
        robot.check_joint(self.joint, "locked.joint")
        if self.position is not None:
            lo, hi = robot.base_model().joint(self.joint).range
            _check_range("locked", "position", float(self.position), float(lo), float(hi))

    def _target(self, model: mujoco.MjModel) -> float:
        if self.position is not None:
            return float(self.position)
        j = model.joint(self.joint)
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
    syntax: ClassVar[str] = "shortened:LEG:F        leg segments x F, F in [0.1, 1)"
    order: ClassVar[int] = 3

    def validate(self, robot: Robot) -> None:
        robot.leg(self.leg)
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
    syntax: ClassVar[str] = (
        "lost_leg:LEG[:STUMP]    "
        "leg motors dead, segments x STUMP in [0.05, 0.5] (default 0.5)"
    )
    order: ClassVar[int] = 3

    def validate(self, robot: Robot) -> None:
        robot.leg(self.leg)
        _check_range("lost_leg", "stump", self.stump, 0.05, 0.5)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        _scale_leg(spec, robot, self.leg, self.stump)
        for act in _actuators(spec, robot.leg(self.leg).actuators):
            _disable(act)


# ----------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class ActuatorCalibration(Modifier):
    """Calibration error of one actuator: force = gear * (sign * gain * ctrl + offset)."""

    actuator: str  # an actuator name of the robot
    gain: float = 1.0  # [0.1, 3]
    offset: float = 0.0  # [-0.5, 0.5] in control units
    flipped: bool = False  # wiring reversed: the sign of the command is inverted
    kind: ClassVar[str] = "calibration"
    syntax: ClassVar[str] = (
        "calibration:ACT:gain=G,offset=O,flipped=0|1"
        "G in [0.1, 3], O in [-0.5, 0.5]"
    )
    order: ClassVar[int] = 3

    def validate(self, robot: Robot) -> None:
        robot.check_actuator(self.actuator, "calibration.actuator")
        _check_range("calibration", "gain", self.gain, 0.1, 3.0)
        _check_range("calibration", "offset", self.offset, -0.5, 0.5)

    def apply(self, spec: mujoco.MjSpec, robot: Robot) -> None:
        act = spec.actuator(self.actuator)
        sign = -1.0 if self.flipped else 1.0
        gain = list(act.gainprm)
        gain[0] *= sign * self.gain
        act.gainprm = gain
        if self.offset:
            bias = [0.0] * len(act.biasprm)
            bias[0] = self.offset
            act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
            act.biasprm = bias


@dataclass(frozen=True)
class ObservationNoise(Modifier):
    """Gaussian noise of ``std`` added to every observation the controller sees (not to the
    reward, which uses the true state)."""

    std: float  # [0, 1] in observation units
    kind: ClassVar[str] = "obs_noise"
    syntax: ClassVar[str] = "obs_noise:STD          Gaussian observation noise, STD in [0, 1]"
    order: ClassVar[int] = 5

    def validate(self, robot: Robot) -> None:
        _check_range("obs_noise", "std", self.std, 0.0, 1.0)


def _require_floor(robot: Robot, kind: str) -> None:
    if robot.floor is None:
        raise ValueError(
            f"{kind}: robot {robot.name!r} has no ground plane; terrain and friction "
            "conditions need a floor geom of type plane"
        )


MODIFIERS: dict[str, type[Modifier]] = {
    cls.kind: cls
    for cls in (Slope, Heightfield, Friction, Payload, DisabledActuator, WeakenedActuator,
                LockedJoint, ShortenedLeg, LostLeg, ActuatorCalibration, ObservationNoise)
}
_TERRAIN = (Slope, Heightfield)


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
        if sum(isinstance(m, _TERRAIN) for m in self.modifiers) > 1:
            raise ValueError("Condition.modifiers: at most one terrain (slope or heightfield)")
        if sum(isinstance(m, ObservationNoise) for m in self.modifiers) > 1:
            raise ValueError("Condition.modifiers: at most one obs_noise")
        if sum(isinstance(m, Friction) for m in self.modifiers) > 1:
            raise ValueError("Condition.modifiers: at most one friction")

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
        friction = next((m.coefficient for m in self.modifiers if isinstance(m, Friction)), None)
        slope = next((m for m in self.modifiers if isinstance(m, Slope)), None)
        if slope is not None:
            mu = friction if friction is not None else _floor_friction(robot)
            limit = math.degrees(math.atan(mu))
            if abs(slope.degrees) > limit:
                raise ValueError(
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
                raise ValueError(f"condition kind={kind!r} is unknown: allowed {sorted(MODIFIERS)}")
            for k, v in md.items():
                if isinstance(v, list):
                    md[k] = tuple(v)
            mods.append(MODIFIERS[kind](**md))
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
    for m in sorted(condition.modifiers, key=lambda m: m.order):
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
            raise ValueError("Schedule.segments is empty: give at least one (0.0, condition)")
        if self.segments[0][0] != 0.0:
            raise ValueError(f"Schedule.segments[0] starts at {self.segments[0][0]!r}: must be 0.0")
        times = [t for t, _ in self.segments]
        for i in range(1, len(times)):
            if not (math.isfinite(times[i]) and times[i] > times[i - 1]):
                raise ValueError(
                    f"Schedule.segments[{i}] time={times[i]!r} must be finite and after "
                    f"{times[i - 1]!r}"
                )

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
def parse_condition(text: str, robot: Robot | None = None) -> Condition:
    """Parse the command-line form, modifiers joined by '+':

    ``healthy``, ``disabled:bthigh``, ``weak:bthigh:0.5``, ``locked:bthigh[:0.2]``,
    ``lost_leg:back_right[:0.5]``, ``shortened:back:0.6``, ``payload:2.0[:x,y,z]``,
    ``slope:10``, ``terrain:hill`` (hill, basin, gentle, steep), ``friction:0.5``,
    ``calibration:bthigh:gain=0.8,offset=0.1,flipped=1``, ``obs_noise:0.01``.
    """
    text = text.strip()
    if text in ("", "healthy", "none"):
        return HEALTHY
    mods: list[Modifier] = []
    for part in text.split("+"):
        kind, *args = part.strip().split(":")
        try:
            mods.append(_parse_one(kind, args))
        except (TypeError, IndexError) as e:
            raise ValueError(f"condition {part!r} is malformed ({e}); see `adapt sims list`") from e
        except ValueError as e:
            if "could not convert" in str(e) or "invalid literal" in str(e):
                raise ValueError(f"condition {part!r}: {e}; the {kind} fields are numbers "
                                 "(see `adapt sims list`)") from e
            raise
    cond = Condition(tuple(mods))
    if robot is not None:
        cond.validate(robot)
    return cond


def _parse_one(kind: str, args: list[str]) -> Modifier:
    if kind == "disabled":
        return DisabledActuator(args[0])
    if kind == "weak":
        return WeakenedActuator(args[0], float(args[1]))
    if kind == "locked":
        return LockedJoint(args[0], float(args[1]) if len(args) > 1 else None)
    if kind == "lost_leg":
        return LostLeg(args[0], float(args[1]) if len(args) > 1 else 0.5)
    if kind == "shortened":
        return ShortenedLeg(args[0], float(args[1]))
    if kind == "payload":
        offset = tuple(float(v) for v in args[1].split(",")) if len(args) > 1 else (0.0, 0.0, 0.0)
        return Payload(float(args[0]), offset)  # type: ignore[arg-type]
    if kind == "slope":
        return Slope(float(args[0]))
    if kind == "terrain":
        return Heightfield.profile(args[0])
    if kind == "friction":
        return Friction(float(args[0]))
    if kind == "obs_noise":
        return ObservationNoise(float(args[0]))
    if kind == "calibration":
        kw: dict[str, Any] = {}
        for item in (args[1].split(",") if len(args) > 1 else []):
            k, v = item.split("=")
            if k not in ("gain", "offset", "flipped"):
                raise ValueError(
                    f"calibration field {k!r} is unknown: allowed gain, offset, flipped")
            kw[k] = bool(int(v)) if k == "flipped" else float(v)
        return ActuatorCalibration(args[0], **kw)
    raise ValueError(f"condition kind={kind!r} is unknown: allowed {', '.join(sorted(MODIFIERS))}"
                     " (terrain:NAME for heightfields)")


__all__ = [
    "ActuatorCalibration", "Condition", "DisabledActuator", "Friction", "HEALTHY",
    "Heightfield", "LockedJoint", "LostLeg", "MODIFIERS", "Modifier", "ObservationNoise",
    "Payload", "Schedule", "ShortenedLeg", "Slope", "WeakenedActuator",
    "parse_condition",
]
