"""Robots: an MJCF model plus the names the conditions and the task need.

A :class:`Robot` says which body is the torso, which actuators and bodies make up each leg,
how often the controller acts, and how the observation and reward are laid out. The built-in
robots load their MJCF from ``sims/assets``; :meth:`Robot.from_mjcf` brings a user's file and
gets the same conditions. Models are always assembled through ``mujoco.MjSpec`` — conditions
edit the spec, never the XML text.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from file_errors import DamagedFileError

ASSETS = Path(__file__).parent / "assets"


# ---------------------------------------------------------------- frame skip names
#: Separates a robot or family name from its frame skip: ``cheetah@2``, ``spec.toml#walk@2``
#: (``sims.registry`` resolves such names).
FRAME_SKIP_MARK = "@"


def _check_frame_skip(k: object, what: str) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{what}={k!r}: allowed an integer >= 1 (1 keeps the robot as it is)")


def base_name(name: str) -> str:
    """A frame-skipped name without its suffix (``cheetah@2`` -> ``cheetah``)."""
    return name.rpartition(FRAME_SKIP_MARK)[0] if FRAME_SKIP_MARK in name else name


def frame_skipped_name(name: str, frame_skip: int, k: int) -> tuple[str, int]:
    """The name and frame skip of an object called ``name`` with frame skip ``frame_skip``
    once each action is held ``k`` times longer: they compound (``cheetah@2`` by 3 is
    ``("cheetah@6", 6)``)."""
    base = base_name(name) if frame_skip > 1 else name
    total = frame_skip * k
    return f"{base}{FRAME_SKIP_MARK}{total}", total


class LegError(ValueError):
    """A leg that does not fit its model's body tree (see :meth:`Robot.check_legs`): the
    message names the leg, the element and the rule it breaks."""


#: What a leg is, rule by rule; :meth:`Robot.check_legs` refuses a leg that breaks one.
LEG_RULES = {
    "below": "a leg's bodies are descendants of the torso, never the torso itself",
    "one_leg": "a body or actuator belongs to one leg at most, listed once",
    "own_joints": "a leg's actuators drive joints of that leg's own bodies",
    "non_empty": "a leg has at least one body and one actuator",
}


@dataclass(frozen=True)
class Leg:
    """One leg: the actuators that drive it and the bodies from the hip segment down.

    :meth:`Robot.check_legs` holds a leg to :data:`LEG_RULES`: its bodies hang below the
    torso, no body or actuator is in two legs, and its actuators drive joints of its bodies,
    so ``lost_leg`` and ``shortened`` change that leg and nothing else.
    """

    name: str
    actuators: tuple[str, ...]
    bodies: tuple[str, ...]  # outermost-first is not required; every listed body is scaled


@dataclass(frozen=True)
class ObsPart:
    """A named slice of the flat observation vector."""

    name: str
    start: int
    size: int


@dataclass(frozen=True)
class Robot:
    """Everything the simulator layer needs to know about one robot model.

    ``xml`` is the MJCF path. ``n_substeps`` physics steps make one control step, so the
    control timestep is ``n_substeps * timestep``. ``frame_skip`` is how many of the named
    base robot's control steps one action is held for (see :meth:`with_frame_skip`); it is
    already part of ``n_substeps``.
    """

    name: str
    xml: Path
    torso: str
    n_substeps: int = 1
    legs: tuple[Leg, ...] = ()
    floor: str | None = "floor"  # name of the ground plane geom, None if the model has none
    ctrl_cost: float = 0.05  # weight of ||a||^2 in the reward (paper: 0.05 for the cheetah)
    alive_bonus: float = 0.0  # reward per step scaled by torso uprightness (quadruped)
    # Upright locomotion: a robot on its side or back is failing, whatever its speed. Each step
    # whose torso uprightness (cos of its tilt) is below ``tilt_threshold`` costs
    # ``tilt_penalty`` (ramped in over 0.1 so the planners' reward stays continuous); 0 gives
    # the paper's plain reward, under which both robots learn to run on their backs.
    tilt_penalty: float = 10.0
    tilt_threshold: float = 0.3
    max_slope_deg: float = 25.0  # steepest slope the robot can stand on at rest
    max_payload_kg: float = 50.0  # heaviest payload accepted
    init_noise: float = 0.1  # std of the uniform-ish noise on the initial joint state
    # Whether data collection ends a trajectory once the torso has stayed upside down
    # (``sims.collect.FallReset``) by default, as locomotion suites end an episode when the
    # torso falls: a robot on its back is where no controller should be, and one such
    # trajectory held back for validation outweighs the rest (docs/results.md). Only the
    # training config's ``collect.fall_reset = "auto"`` reads it.
    fall_reset: bool = False
    planar: bool = False  # True when the root moves in the x-z plane only
    description: str = ""
    frame_skip: int = 1
    # Control steps one decision of a learned controller spans by default: what the presets and
    # `adapt eval --family NAME` plan at (NAME@K with K = decision_steps; 1 = every control
    # step). Chosen per robot by measurement (docs/results.md, planning rate): a decision every
    # 50 ms lets a 0.75 s lookahead fit in 15 model steps.
    decision_steps: int = 1
    # The MJCF text, for a robot rebuilt from a checkpoint or export whose file is not here;
    # None reads ``xml``.
    mjcf_text: str | None = field(default=None, repr=False)
    # The robot table of the spec file this robot was loaded from, as JSON ("" for a robot
    # built in Python); checkpoints and exports carry it (see ``sims.specs``).
    source: str = field(default="", compare=False, repr=False)
    _spec_cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        _check_frame_skip(self.frame_skip, "frame_skip")
        _check_frame_skip(self.decision_steps, "decision_steps")
        if not (np.isfinite(self.tilt_penalty) and self.tilt_penalty >= 0):
            raise ValueError(f"tilt_penalty={self.tilt_penalty!r}: allowed a number >= 0")
        if not -1.0 <= self.tilt_threshold <= 1.0:
            raise ValueError(f"tilt_threshold={self.tilt_threshold!r}: allowed [-1, 1] "
                             "(uprightness: 1 upright, -1 upside down)")

    # ---------------------------------------------------------------- model access
    def spec(self) -> mujoco.MjSpec:
        """A fresh, editable MjSpec of the healthy robot."""
        if self.mjcf_text is not None:
            try:
                return mujoco.MjSpec.from_string(self.mjcf_text)
            except ValueError as e:
                raise ValueError(f"robot {self.name!r}: its stored MJCF text (of "
                                 f"{str(self.xml)!r}) does not parse: {e}") from e
        return load_spec(self.xml)

    def base_model(self) -> mujoco.MjModel:
        """The compiled healthy model (cached)."""
        if "model" not in self._spec_cache:
            self._spec_cache["model"] = self.spec().compile()
        return self._spec_cache["model"]

    @property
    def timestep(self) -> float:
        return float(self.base_model().opt.timestep)

    @property
    def control_timestep(self) -> float:
        return self.n_substeps * self.timestep

    @property
    def mjcf_sha256(self) -> str:
        """sha256 of the MJCF text (of the top file: included files are not hashed)."""
        data = self.mjcf_text.encode() if self.mjcf_text is not None else self.xml.read_bytes()
        return hashlib.sha256(data).hexdigest()

    def describe_model(self) -> str:
        """The model in one line, to tell two robots of one name apart in an error."""
        return (f"robot {self.name!r} ({str(self.xml)!r}, mjcf sha256 {self.mjcf_sha256[:12]}, "
                f"control step {self.control_timestep:g} s)")

    @property
    def actuator_names(self) -> tuple[str, ...]:
        m = self.base_model()
        return tuple(m.actuator(i).name for i in range(m.nu))

    @property
    def joint_names(self) -> tuple[str, ...]:
        m = self.base_model()
        return tuple(m.joint(i).name for i in range(m.njnt))

    @property
    def leg_names(self) -> tuple[str, ...]:
        return tuple(leg.name for leg in self.legs)

    def leg(self, name: str | int) -> Leg:
        """Look a leg up by name or index; a clear error lists the legs there are."""
        if isinstance(name, (int, np.integer)):
            if not 0 <= int(name) < len(self.legs):
                raise ValueError(
                    f"leg={name!r} is out of range for robot {self.name!r}: "
                    f"allowed indices 0..{len(self.legs) - 1} ({', '.join(self.leg_names)})"
                )
            return self.legs[int(name)]
        for leg in self.legs:
            if leg.name == name:
                return leg
        allowed = ", ".join(self.leg_names) or "none (this robot declares no legs)"
        raise ValueError(f"leg={name!r} is unknown for robot {self.name!r}: allowed {allowed}")

    def check_actuator(self, name: str, field_name: str = "actuator") -> None:
        if name not in self.actuator_names:
            raise ValueError(
                f"{field_name}={name!r} is unknown for robot {self.name!r}: "
                f"allowed {', '.join(self.actuator_names)}"
            )

    def check_joint(self, name: str, field_name: str = "joint") -> None:
        allowed = self.actuated_joint_names
        if name not in allowed:
            raise ValueError(
                f"{field_name}={name!r} is unknown for robot {self.name!r}: "
                f"allowed {', '.join(allowed)}"
            )

    def check_legs(self) -> None:
        """Refuse legs that do not fit the model's body tree (:data:`LEG_RULES`), each
        :class:`LegError` naming the leg, the element and the rule, before any work."""
        m = self.base_model()
        torso = self.torso_id
        below = descendants(m, torso)
        allowed_bodies = ", ".join(m.body(b).name for b in sorted(below)) or "none"
        owner: dict[tuple[str, str], str] = {}  # (bodies|actuators, name) -> leg
        for leg in self.legs:
            where = f"legs[{leg.name}]"
            for part, names in (("bodies", leg.bodies), ("actuators", leg.actuators)):
                if not names:
                    raise LegError(f"{where}.{part}=[]: allowed a non-empty list (rule: "
                                   f"{LEG_RULES['non_empty']})")
                for n in names:
                    if names.count(n) > 1:
                        raise LegError(f"{where}.{part}: {n!r} is listed twice (rule: "
                                       f"{LEG_RULES['one_leg']})")
            for a in leg.actuators:
                if a not in self.actuator_names:
                    raise LegError(f"{where}.actuators={a!r} is unknown for robot "
                                   f"{self.name!r}: allowed {', '.join(self.actuator_names)}")
            for b in leg.bodies:
                bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b)
                if bid < 0:
                    raise LegError(f"{where}.bodies: {b!r} is not a body of "
                                   f"{str(self.xml)!r}: allowed {allowed_bodies}")
                if bid not in below:
                    what = "is the torso" if bid == torso else (
                        f"is not below the torso {self.torso!r}")
                    raise LegError(f"{where}.bodies: {b!r} {what} (rule: {LEG_RULES['below']}):"
                                   f" allowed {allowed_bodies}")
            for part, names in (("bodies", leg.bodies), ("actuators", leg.actuators)):
                for n in names:
                    other = owner.setdefault((part, n), leg.name)
                    if other != leg.name:
                        raise LegError(f"{where}.{part}: {n!r} is also in leg {other!r} (rule: "
                                       f"{LEG_RULES['one_leg']})")
        for leg in self.legs:
            own = {int(m.body(b).id) for b in leg.bodies}
            for a in leg.actuators:
                for joint in _driven_joints(m, m.actuator(a).id,
                                            f"legs[{leg.name}].actuators: {a!r}"):
                    body = int(m.jnt_bodyid[joint])
                    if body not in own:
                        raise LegError(
                            f"legs[{leg.name}].actuators: {a!r} drives joint "
                            f"{m.joint(joint).name!r} of body {m.body(body).name!r}, not of "
                            f"this leg's bodies ({', '.join(leg.bodies)}) (rule: "
                            f"{LEG_RULES['own_joints']})")

    @property
    def actuated_joint_names(self) -> tuple[str, ...]:
        """Hinge/slide joints that are not part of the floating root."""
        m = self.base_model()
        names = []
        for j in range(m.njnt):
            jt = int(m.jnt_type[j])
            if jt in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)) and (
                m.jnt_bodyid[j] != self.torso_id
            ):
                names.append(m.joint(j).name)
        return tuple(names)

    @property
    def torso_id(self) -> int:
        return int(self.base_model().body(self.torso).id)

    @property
    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.base_model().actuator_ctrlrange
        return r[:, 0].copy(), r[:, 1].copy()

    # ---------------------------------------------------------------- observation layout
    @property
    def obs_qpos_index(self) -> np.ndarray:
        """qpos entries that enter the observation: all but the root's horizontal position.

        Horizontal position does not change the dynamics on the ground, and leaving it out is
        what lets a model trained near the origin predict 40 m down the track.
        """
        m = self.base_model()
        skip: set[int] = set()
        for j in range(m.njnt):
            if m.jnt_bodyid[j] != self.torso_id:
                continue
            adr = m.jnt_qposadr[j]
            if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                skip.update((adr, adr + 1))
            elif m.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE:
                axis = m.jnt_axis[j]
                if abs(axis[2]) < 1e-9:  # a horizontal slide is a root position coordinate
                    skip.add(adr)
        return np.array([i for i in range(m.nq) if i not in skip], dtype=np.int64)

    @property
    def obs_dim(self) -> int:
        return len(self.obs_qpos_index) + self.base_model().nv

    @property
    def act_dim(self) -> int:
        return self.base_model().nu

    @property
    def obs_parts(self) -> tuple[ObsPart, ...]:
        """Named slices of the observation: one per joint coordinate, then one per velocity."""
        m = self.base_model()
        parts: list[ObsPart] = []
        qidx = set(self.obs_qpos_index.tolist())
        cursor = 0
        for j in range(m.njnt):
            name = m.joint(j).name or f"joint{j}"
            adr = m.jnt_qposadr[j]
            nq = _JOINT_NQ[int(m.jnt_type[j])]
            kept = [i for i in range(adr, adr + nq) if i in qidx]
            if kept:
                parts.append(ObsPart(f"qpos/{name}", cursor, len(kept)))
                cursor += len(kept)
        for j in range(m.njnt):
            name = m.joint(j).name or f"joint{j}"
            nv = _JOINT_NV[int(m.jnt_type[j])]
            parts.append(ObsPart(f"qvel/{name}", cursor, nv))
            cursor += nv
        return tuple(parts)

    def obs_part(self, name: str) -> ObsPart:
        for p in self.obs_parts:
            if p.name == name:
                return p
        raise KeyError(f"no observation part {name!r}; parts: {[p.name for p in self.obs_parts]}")

    @property
    def actuator_velocity_index(self) -> tuple[int, ...]:
        """Index in the observation of each actuator's joint velocity, in actuator order."""
        m = self.base_model()
        out = []
        for i in range(m.nu):
            if m.actuator_trntype[i] != mujoco.mjtTrn.mjTRN_JOINT:
                raise ValueError(f"robot {self.name!r}: actuator {m.actuator(i).name!r} does "
                                 "not drive a joint")
            out.append(self.obs_part(f"qvel/{m.joint(int(m.actuator_trnid[i, 0])).name}").start)
        return tuple(out)

    @property
    def forward_velocity_index(self) -> int:
        """Index in the observation of the torso's world-frame x velocity."""
        m = self.base_model()
        for j in range(m.njnt):
            if m.jnt_bodyid[j] != self.torso_id:
                continue
            if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                return self.obs_part(f"qvel/{m.joint(j).name}").start
            if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE and abs(m.jnt_axis[j][0]) > 0.99:
                return self.obs_part(f"qvel/{m.joint(j).name}").start
        raise ValueError(
            f"robot {self.name!r}: its torso {self.torso!r} has no free joint or x slide joint, "
            "so forward velocity is undefined"
        )

    @property
    def pitch_index(self) -> int | None:
        """Index in the observation of a planar robot's root pitch angle (hinge about y)."""
        m = self.base_model()
        for j in range(m.njnt):
            if (m.jnt_bodyid[j] == self.torso_id and m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
                    and abs(m.jnt_axis[j][1]) > 0.99):
                return self.obs_part(f"qpos/{m.joint(j).name}").start
        return None

    def with_frame_skip(self, k: int) -> Robot:
        """This robot with each action held for ``k`` of its control steps, named ``NAME@k``.

        The MJCF, observation, reward and conditions stay as they are; only the control step
        grows k times (``n_substeps`` × k). A frame-skipped robot's own frame skip compounds:
        ``cheetah@2`` with 3 is ``cheetah@6``.
        """
        _check_frame_skip(k, f"robot {self.name!r}: frame_skip")
        k = int(k)
        if k == 1:
            return self
        name, total = frame_skipped_name(self.name, self.frame_skip, k)
        return dataclasses.replace(self, name=name, n_substeps=self.n_substeps * k,
                                   frame_skip=total, decision_steps=1, _spec_cache={})

    def with_paper_reward(self) -> Robot:
        """This robot under the paper's plain reward (no tilt penalty), for reproduction."""
        return dataclasses.replace(self, tilt_penalty=0.0)

    @property
    def orientation_quat_index(self) -> int | None:
        """Index of the free joint's quaternion (w, x, y, z) in the observation, if any."""
        m = self.base_model()
        for j in range(m.njnt):
            if m.jnt_bodyid[j] == self.torso_id and m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
                # the kept part of a free joint's qpos is z then the quaternion
                return self.obs_part(f"qpos/{m.joint(j).name}").start + 1
        return None

    @classmethod
    def from_mjcf(
        cls,
        path: str | Path,
        name: str | None = None,
        torso: str | None = None,
        legs: tuple[Leg, ...] = (),
        n_substeps: int = 1,
        **kwargs,
    ) -> Robot:
        """Bring your own MJCF: any model with actuators and a torso with a root joint.

        The ground plane is found by type (the first plane geom of the world body); without one,
        terrain and friction conditions are refused for this robot.
        """
        path = Path(path)
        mjcf_text = kwargs.get("mjcf_text")
        if mjcf_text is None and not path.is_file():
            raise ValueError(f"mjcf={str(path)!r}: no such file")
        if mjcf_text is None:
            spec = load_spec(path)
        else:
            try:
                spec = mujoco.MjSpec.from_string(mjcf_text)
            except ValueError as e:
                raise ValueError(f"mjcf={str(path)!r}: its stored text is malformed: {e}") from e
        try:
            model = spec.compile()
        except ValueError as e:
            raise ValueError(f"mjcf={str(path)!r} does not compile: {e}") from e
        if model.nu == 0:
            raise ValueError(f"mjcf={str(path)!r} has no actuators; a robot needs at least one")
        if torso is None:
            if model.nbody < 2:
                raise ValueError(f"mjcf={str(path)!r} has no body besides the world")
            torso = model.body(1).name
        elif mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, torso) < 0:
            raise ValueError(f"torso={torso!r} is not a body of {str(path)!r}: allowed "
                             f"{', '.join(_body_names(model))}")
        floor = None
        for g in range(model.ngeom):
            if model.geom_bodyid[g] == 0 and model.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE:
                floor = model.geom(g).name
                if not floor:
                    raise ValueError(
                        f"mjcf={str(path)!r}: the ground plane geom needs a name so conditions "
                        "can find it"
                    )
                break
        planar = not any(
            model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE for j in range(model.njnt)
        )
        robot = cls(
            name=name or path.stem, xml=path, torso=torso, legs=tuple(legs),
            n_substeps=n_substeps, floor=floor, planar=planar, **kwargs,
        )
        robot.check_legs()
        robot.forward_velocity_index  # noqa: B018  (raises early if undefined)
        return robot


_JOINT_NQ = {
    int(mujoco.mjtJoint.mjJNT_FREE): 7, int(mujoco.mjtJoint.mjJNT_BALL): 4,
    int(mujoco.mjtJoint.mjJNT_SLIDE): 1, int(mujoco.mjtJoint.mjJNT_HINGE): 1,
}
_JOINT_NV = {
    int(mujoco.mjtJoint.mjJNT_FREE): 6, int(mujoco.mjtJoint.mjJNT_BALL): 3,
    int(mujoco.mjtJoint.mjJNT_SLIDE): 1, int(mujoco.mjtJoint.mjJNT_HINGE): 1,
}


def descendants(model: mujoco.MjModel, body: int) -> set[int]:
    """The ids of the bodies below ``body`` in the kinematic tree (not ``body`` itself)."""
    out: set[int] = set()
    for b in range(1, model.nbody):  # a parent's id is always below its children's
        if model.body_parentid[b] == body or model.body_parentid[b] in out:
            out.add(b)
    return out


def _driven_joints(model: mujoco.MjModel, actuator: int, what: str) -> list[int]:
    """The joints actuator ``actuator`` drives: its joint, or the joints of its fixed tendon;
    a LegError starting with ``what`` for one that drives no joint (a site, a body, a spatial
    tendon)."""
    trn = int(model.actuator_trntype[actuator])
    target = int(model.actuator_trnid[actuator, 0])
    if trn in (int(mujoco.mjtTrn.mjTRN_JOINT), int(mujoco.mjtTrn.mjTRN_JOINTINPARENT)):
        return [target]
    if trn == int(mujoco.mjtTrn.mjTRN_TENDON):
        adr, num = model.tendon_adr[target], model.tendon_num[target]
        wraps = range(adr, adr + num)
        if all(model.wrap_type[w] == mujoco.mjtWrap.mjWRAP_JOINT for w in wraps):
            return [int(model.wrap_objid[w]) for w in wraps]
    raise LegError(f"{what} drives no joint but a site, body or spatial tendon (rule: "
                   f"{LEG_RULES['own_joints']})")


def _body_names(model: mujoco.MjModel) -> list[str]:
    return [model.body(i).name for i in range(1, model.nbody)]


def load_spec(path: Path) -> mujoco.MjSpec:
    """Parse an MJCF file into an MjSpec; a file mujoco cannot parse is a DamagedFileError."""
    try:
        return mujoco.MjSpec.from_file(str(path))
    except ValueError as e:  # mujoco reports XML/schema errors (and bad UTF-8) as ValueError
        raise DamagedFileError("mjcf", path, "an MJCF model", "MuJoCo XML (a <mujoco> document)",
                               detail=f"mujoco: {e}") from e


CHEETAH = Robot(
    name="cheetah",
    xml=ASSETS / "cheetah.xml",
    torso="torso",
    n_substeps=1,
    legs=(
        Leg("back", ("bthigh", "bshin", "bfoot"), ("bthigh", "bshin", "bfoot")),
        Leg("front", ("fthigh", "fshin", "ffoot"), ("fthigh", "fshin", "ffoot")),
    ),
    ctrl_cost=0.05,
    max_slope_deg=20.0,
    max_payload_kg=30.0,
    planar=True,
    # Random actions leave it on its back for the rest of a 10 s rollout in about 1 of 30.
    fall_reset=True,
    description="planar half-cheetah, 6 actuators, 100 Hz control (GrBAL paper)",
    decision_steps=5,  # 20 Hz decisions (docs/results.md, planning rate)
)

QUADRUPED = Robot(
    name="quadruped",
    xml=ASSETS / "quadruped.xml",
    torso="torso",
    n_substeps=2,
    legs=(
        Leg("front_left", ("hip_1", "ankle_1"), ("aux_1", "foot_1")),
        Leg("front_right", ("hip_2", "ankle_2"), ("aux_2", "foot_2")),
        Leg("back_left", ("hip_3", "ankle_3"), ("aux_3", "foot_3")),
        Leg("back_right", ("hip_4", "ankle_4"), ("aux_4", "foot_4")),
    ),
    ctrl_cost=0.005,
    alive_bonus=0.05,
    max_slope_deg=25.0,
    max_payload_kg=5.0,
    # 70 % of its random-action transitions at 25 Hz are upside down without it
    # (research/collection_falls.py).
    fall_reset=True,
    description="ant-like quadruped, 4 legs x (hip, ankle) = 8 actuators, 50 Hz control",
    decision_steps=2,  # 25 Hz decisions (docs/results.md, planning rate)
)

#: The robots every process knows by name from the start (``sims.registry`` registers them).
BUILT_IN_ROBOTS: tuple[Robot, ...] = (CHEETAH, QUADRUPED)
