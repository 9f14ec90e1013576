"""A robot on the other side of DDS, with ROS 2's message types: :class:`DdsRobot` implements
``export.runtime.loop.Robot`` by subscribing to the robot's state and publishing its commands
(``adapt deploy EXPORT --robot dds:CONFIG``; docs/deploy-robot.md).

What travels where (``NS`` is the config's ``namespace``; ROS 2 names a topic ``/NS/T`` and
puts ``rt/NS/T`` on the wire):

* ``rt/NS/joint_states`` (``sensor_msgs/msg/JointState``, robot -> runtime): one entry per
  one-degree-of-freedom joint of the observation, by name, in any order. ``position`` fills the
  observation's ``qpos/NAME`` part, ``velocity`` its ``qvel/NAME`` part; values the observation
  does not use (the position of a joint it sees only as a velocity, ``effort``) are not read.
  ``header.stamp`` is when the state was sampled (the robot's clock).
* ``rt/NS/odom`` (``nav_msgs/msg/Odometry``, robot -> runtime), only when the observation has
  a floating base (a free joint: ``qpos/NAME`` of 5 = height and orientation, ``qvel/NAME`` of
  6): ``pose.pose.position.z`` and ``pose.pose.orientation`` (w, x, y, z into the observation)
  and ``twist.twist.linear`` / ``angular`` (MuJoCo's free-joint velocity: linear in the world
  frame, angular in the body frame), with the same ``header.stamp`` as the joint states it
  belongs with; the runtime pairs the two by stamp.
* ``rt/NS/joint_commands`` (``std_msgs/msg/Float64MultiArray``, runtime -> robot): one value
  per actuator in the config's ``command_joints`` order (a ros2_control
  ``forward_command_controller``'s ``joints``), ``layout.dim = [{label: "joints", size: n,
  stride: n}]``.

Faults never reach the controller: a state older than ``stale_periods`` control periods, a
non-finite or out-of-range value, or a message without the joints it had at start-up raises
:class:`StateFault` from :meth:`DdsRobot.observe` (the loop counts it and steps without an
observation) and the next :meth:`DdsRobot.act` publishes the safe command instead (``hold``:
the last command published, ``zero``: zeros clipped into the limits). A command is clipped into
the actuator limits before it is published (counted), so none outside them is ever written.

numpy and ``cyclonedds`` only (no torch, mujoco or ``sims``).
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from export.runtime.timeline import LatencyLog

#: The runtime's safe command on a state fault.
SAFE_COMMANDS = ("hold", "zero")
#: Stamp-matching keeps this many recent messages per topic (a floating base's odometry may
#: arrive just after its joint states).
RECENT = 8


class StateFault(RuntimeError):
    """The robot's latest state is unusable (stale, non-finite, out of range, malformed)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DdsConfig:
    """What ``dds:CONFIG`` (a TOML or JSON file) holds; docs/deploy-robot.md has a full one."""

    command_joints: tuple[str, ...]
    domain_id: int = 0
    namespace: str = ""
    state_topic: str = "joint_states"
    odom_topic: str = "odom"
    command_topic: str = "joint_commands"
    frame_id: str = ""
    safe_action: str = "hold"
    stale_periods: float = 2.0
    max_abs_position: float = 1e3
    max_abs_velocity: float = 1e3
    command_limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    connect_timeout_s: float = 10.0
    # The network: CycloneDDS on these interfaces and unicast peers; ``cyclonedds_uri`` (an
    # XML text or file URI) replaces them.
    interface: str = "127.0.0.1"
    peers: tuple[str, ...] = ("127.0.0.1",)
    multicast: bool = False
    cyclonedds_uri: str = ""

    def __post_init__(self) -> None:
        where = "dds config"
        joints = self.command_joints
        if (not isinstance(joints, tuple) or not joints
                or not all(isinstance(j, str) and j for j in joints)):
            raise ValueError(f"{where}: command_joints={list(joints)!r}: allowed a non-empty "
                             "list of joint names (the actuators' joints, in command order)")
        dup = sorted({j for j in joints if joints.count(j) > 1})
        if dup:
            raise ValueError(f"{where}: command_joints lists {dup} more than once")
        if not (isinstance(self.domain_id, int) and 0 <= self.domain_id <= 232):
            raise ValueError(f"{where}: domain_id={self.domain_id!r}: allowed an integer "
                             "0..232 (ROS_DOMAIN_ID)")
        for name in ("namespace", "state_topic", "odom_topic", "command_topic", "frame_id",
                     "interface", "cyclonedds_uri"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{where}: {name}={getattr(self, name)!r}: allowed a string")
        for name in ("state_topic", "odom_topic", "command_topic"):
            if not getattr(self, name).strip("/"):
                raise ValueError(f"{where}: {name}={getattr(self, name)!r}: allowed a topic "
                                 "name")
        if self.safe_action not in SAFE_COMMANDS:
            raise ValueError(f"{where}: safe_action={self.safe_action!r}: allowed "
                             f"{' or '.join(SAFE_COMMANDS)}")
        for name, low in (("stale_periods", 1.0), ("max_abs_position", 0.0),
                          ("max_abs_velocity", 0.0), ("connect_timeout_s", 0.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v) and v > low):
                raise ValueError(f"{where}: {name}={v!r}: allowed a number > {low:g}")
        for j, lim in self.command_limits.items():
            if j not in joints:
                raise ValueError(f"{where}: command_limits names {j!r}, which is not in "
                                 f"command_joints {list(joints)}")
            if not (isinstance(lim, tuple) and len(lim) == 2
                    and all(isinstance(x, (int, float)) and math.isfinite(x) for x in lim)
                    and lim[0] < lim[1]):
                raise ValueError(f"{where}: command_limits.{j}={list(lim)!r}: allowed [low, "
                                 "high] with low < high")
        if not (isinstance(self.peers, tuple) and all(isinstance(p, str) and p
                                                      for p in self.peers)):
            raise ValueError(f"{where}: peers={self.peers!r}: allowed a list of addresses")
        if not isinstance(self.multicast, bool):
            raise ValueError(f"{where}: multicast={self.multicast!r}: allowed true or false")

    def topic(self, name: str) -> str:
        from export.runtime.dds_types import ros_topic

        return ros_topic(self.namespace, getattr(self, name))


def load_config(path: str | Path) -> DdsConfig:
    """Read ``path`` (``.toml`` or ``.json``); an unknown or malformed field is refused naming
    it, the value and what is allowed."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"dds config {str(p)!r}: no such file")
    text = p.read_text()
    try:
        if p.suffix == ".toml":
            raw = tomllib.loads(text)
        elif p.suffix == ".json":
            raw = json.loads(text)
        else:
            raise ValueError(f"dds config {str(p)!r}: allowed a .toml or .json file")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"dds config {str(p)!r} does not parse: {e}") from e
    return config_from_dict(raw, str(p))


def config_from_dict(raw: Mapping[str, Any], where: str = "dds config") -> DdsConfig:
    known = {f.name for f in fields(DdsConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; allowed {sorted(known)}")
    if "command_joints" not in raw:
        raise ValueError(f"{where}: command_joints is missing: allowed a list of the "
                         "actuators' joint names in command order")
    kw = dict(raw)
    for key in ("command_joints", "peers"):
        if key in kw:
            if not isinstance(kw[key], list):
                raise ValueError(f"{where}: {key}={kw[key]!r}: allowed a list of strings")
            kw[key] = tuple(kw[key])
    if "command_limits" in kw:
        if not isinstance(kw["command_limits"], Mapping):
            raise ValueError(f"{where}: command_limits={kw['command_limits']!r}: allowed a "
                             "table joint = [low, high]")
        kw["command_limits"] = {j: tuple(v) if isinstance(v, list) else v
                                for j, v in kw["command_limits"].items()}
    try:
        return DdsConfig(**kw)
    except ValueError as e:
        raise ValueError(str(e).replace("dds config", where, 1)) from e


def cyclonedds_xml(config: DdsConfig) -> str:
    """The CycloneDDS configuration: ``config.cyclonedds_uri`` as is, or one built from the
    interface, the unicast peers and the multicast switch (loopback only by default: nothing
    leaves the machine)."""
    if config.cyclonedds_uri:
        return config.cyclonedds_uri
    peers = "".join(f'<Peer address="{p}"/>' for p in config.peers)
    multicast = "true" if config.multicast else "false"
    return ('<CycloneDDS xmlns="https://cdds.io/config"><Domain Id="any"><General>'
            f'<Interfaces><NetworkInterface address="{config.interface}"/></Interfaces>'
            f"<AllowMulticast>{multicast}</AllowMulticast></General><Discovery>"
            f"<ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>20"
            f"</MaxAutoParticipantIndex><Peers>{peers}</Peers></Discovery></Domain>"
            "</CycloneDDS>")


# --------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------


#: The configured domains of this process by id, with their XML: CycloneDDS creates a domain
#: once per process, so a second participant on the same id shares the first one's.
_DOMAINS: dict[int, tuple[str, Any]] = {}


def open_participant(config: DdsConfig) -> Any:
    """A DomainParticipant on ``config.domain_id`` configured by :func:`cyclonedds_xml`."""
    from cyclonedds.domain import Domain, DomainParticipant

    xml = cyclonedds_xml(config)
    if config.domain_id in _DOMAINS:
        if _DOMAINS[config.domain_id][0] != xml:
            raise ValueError(f"dds: domain {config.domain_id} is already configured in this "
                             "process with another network configuration")
    else:
        _DOMAINS[config.domain_id] = (xml, Domain(config.domain_id, xml))
    return DomainParticipant(config.domain_id)


def sensor_qos(depth: int = 1) -> Any:
    """Best effort, keep last ``depth``: matches a reliable or best-effort ROS 2 writer and
    never queues old states. Plain CDR, as ROS 2 writes."""
    from cyclonedds.core import Policy, Qos

    return Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(depth),
               Policy.DataRepresentation(use_cdrv0_representation=True))


def command_qos() -> Any:
    """Reliable, keep last 1: matches a reliable subscriber (ROS 2's default QoS, e.g. a
    forward_command_controller) as well as a best-effort one."""
    from cyclonedds.core import Policy, Qos

    return Qos(Policy.Reliability.Reliable(max_blocking_time=0), Policy.History.KeepLast(1),
               Policy.DataRepresentation(use_cdrv0_representation=True))


def take_valid(reader: Any, n: int = RECENT) -> list[Any]:
    """Up to ``n`` samples, without the invalid ones a vanished writer leaves behind."""
    return [s for s in reader.take(n) if s.sample_info.valid_data]


# --------------------------------------------------------------------------------------------
# Observation <-> messages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObservationMap:
    """Where each part of the export's observation (``obs_layout``) comes from."""

    obs_dim: int
    position: dict[str, int]  # joint -> index of its qpos/NAME part
    velocity: dict[str, int]  # joint -> index of its qvel/NAME part
    base: tuple[str, int, int] | None  # (free joint, qpos start, qvel start)

    @classmethod
    def of(cls, obs_layout: Sequence[Mapping[str, Any]], obs_dim: int) -> ObservationMap:
        position: dict[str, int] = {}
        velocity: dict[str, int] = {}
        wide: dict[str, dict[str, tuple[int, int]]] = {}
        for part in obs_layout:
            kind, _, joint = str(part["name"]).partition("/")
            start, size = int(part["start"]), int(part["size"])
            if kind not in ("qpos", "qvel") or not joint:
                raise ValueError(f"observation part {part['name']!r}: a dds: robot carries "
                                 "qpos/NAME and qvel/NAME parts only")
            if size == 1:
                (position if kind == "qpos" else velocity)[joint] = start
            else:
                wide.setdefault(joint, {})[kind] = (start, size)
        base = None
        for joint, parts in wide.items():
            if parts.get("qpos", (0, 0))[1] == 5 and parts.get("qvel", (0, 0))[1] == 6 \
                    and base is None:
                base = (joint, parts["qpos"][0], parts["qvel"][0])
            else:
                raise ValueError(
                    f"observation parts of joint {joint!r} "
                    f"{ {k: v[1] for k, v in parts.items()} }: a dds: robot carries "
                    "one-degree-of-freedom joints (sensor_msgs/JointState) and at most one "
                    "floating base (qpos 5, qvel 6: nav_msgs/Odometry)")
        return cls(obs_dim, position, velocity, base)

    @property
    def joints(self) -> set[str]:
        return set(self.position) | set(self.velocity)

    def check_names(self, names: Sequence[str], topic: str) -> None:
        """Refuse a JointState whose joints are not exactly the observation's, by name."""
        have, need = set(names), self.joints
        missing, extra = sorted(need - have), sorted(have - need)
        if missing or extra:
            what = []
            if missing:
                what.append(f"lacks joint(s) {missing} the export's observation needs")
            if extra:
                what.append(f"has joint(s) {extra} the export's observation does not know")
            raise ValueError(f"dds: {topic} {' and '.join(what)}; the export expects "
                             f"{sorted(need)}")
        if len(have) != len(names):
            raise ValueError(f"dds: {topic} names a joint more than once: {list(names)}")

    def observation(self, js: Any, odom: Any | None) -> np.ndarray:
        """The observation from a JointState (and an Odometry for a floating base); raises
        :class:`StateFault` ("malformed") on missing joints or short arrays."""
        obs = np.empty(self.obs_dim)
        index = {n: i for i, n in enumerate(js.name)}
        try:
            for joint, k in self.position.items():
                obs[k] = js.position[index[joint]]
            for joint, k in self.velocity.items():
                obs[k] = js.velocity[index[joint]]
        except (KeyError, IndexError) as e:
            raise StateFault("malformed", f"joint state without {e} (names "
                             f"{list(js.name)}, {len(js.position)} positions, "
                             f"{len(js.velocity)} velocities)") from e
        if self.base is not None:
            assert odom is not None
            _, qp, qv = self.base
            p, q, tw = odom.pose.pose.position, odom.pose.pose.orientation, odom.twist.twist
            obs[qp:qp + 5] = (p.z, q.w, q.x, q.y, q.z)
            obs[qv:qv + 6] = (tw.linear.x, tw.linear.y, tw.linear.z,
                              tw.angular.x, tw.angular.y, tw.angular.z)
        return obs

    def messages(self, obs: np.ndarray, names: Sequence[str], positions: np.ndarray,
                 stamp_ns: int, frame_id: str = "", efforts: np.ndarray | None = None,
                 base_xy: tuple[float, float] = (0.0, 0.0)) -> tuple[Any, Any | None]:
        """The robot's side: the JointState of joints ``names`` (their ``positions`` where the
        observation has none) and, for a floating base, its Odometry, from ``obs``."""
        from export.runtime.dds_types import (
            Header,
            JointState,
            Odometry,
            Point,
            Pose,
            PoseWithCovariance,
            Quaternion,
            Twist,
            TwistWithCovariance,
            Vector3,
            time_of_ns,
        )

        header = Header(stamp=time_of_ns(stamp_ns), frame_id=frame_id)
        pos = [float(obs[self.position[n]]) if n in self.position else float(positions[i])
               for i, n in enumerate(names)]
        vel = [float(obs[self.velocity[n]]) for n in names]
        eff = [] if efforts is None else [float(x) for x in efforts]
        js = JointState(header=header, name=list(names), position=pos, velocity=vel,
                        effort=eff)
        if self.base is None:
            return js, None
        _, qp, qv = self.base
        z, qw, qx, qy, qz = (float(x) for x in obs[qp:qp + 5])
        v = [float(x) for x in obs[qv:qv + 6]]
        odom = Odometry(
            header=Header(stamp=time_of_ns(stamp_ns), frame_id=frame_id),
            pose=PoseWithCovariance(pose=Pose(position=Point(base_xy[0], base_xy[1], z),
                                              orientation=Quaternion(qx, qy, qz, qw))),
            twist=TwistWithCovariance(twist=Twist(linear=Vector3(*v[:3]),
                                                  angular=Vector3(*v[3:]))))
        return js, odom


def command_message(values: Sequence[float]) -> Any:
    from export.runtime.dds_types import Float64MultiArray, MultiArrayDimension, MultiArrayLayout

    n = len(values)
    return Float64MultiArray(layout=MultiArrayLayout(dim=[MultiArrayDimension("joints", n, n)]),
                             data=[float(x) for x in values])


# --------------------------------------------------------------------------------------------
# The robot
# --------------------------------------------------------------------------------------------


class DdsRobot:
    """``export.runtime.loop.Robot`` over DDS (see the module docstring for the topics).

    Args:
      config: the :class:`DdsConfig`.
      meta: the export's metadata (``obs_layout``, ``obs_dim``, ``act_dim``, ``action_low``,
        ``action_high``; ``reward.forward_index`` for the speed shown).
      rate_hz: the control rate the loop runs at (staleness is counted in its periods).
      capacity: ticks to reserve latency storage for (the run's length).

    :meth:`connect` waits for the robot and checks its joints against the export before the
    loop starts; :meth:`reset` waits for a fresh state and starts the ticks a quarter period
    after it, so each tick reads a state sampled just before it.
    """

    def __init__(self, config: DdsConfig, meta: Mapping[str, Any], rate_hz: float,
                 capacity: int = 1024) -> None:
        if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz={rate_hz!r}: allowed a number > 0")
        self.config = config
        self.map = ObservationMap.of(meta["obs_layout"], int(meta["obs_dim"]))
        act_dim = int(meta["act_dim"])
        joints = config.command_joints
        if len(joints) != act_dim:
            raise ValueError(f"dds config: command_joints has {len(joints)} joints "
                             f"{list(joints)}; the export's action has {act_dim}")
        unknown = [j for j in joints if j not in self.map.joints]
        if unknown:
            raise ValueError(f"dds config: command_joints {unknown} are not joints of the "
                             f"export's observation {sorted(self.map.joints)}")
        self.low = np.asarray(meta["action_low"], float).copy()
        self.high = np.asarray(meta["action_high"], float).copy()
        for j, (lo, hi) in config.command_limits.items():
            k = joints.index(j)
            self.low[k], self.high[k] = max(lo, self.low[k]), min(hi, self.high[k])
            if self.low[k] > self.high[k]:
                raise ValueError(f"dds config: command_limits.{j}={[lo, hi]} does not overlap "
                                 f"the export's action bounds [{meta['action_low'][k]}, "
                                 f"{meta['action_high'][k]}]")
        self.period_s = 1.0 / float(rate_hz)
        self.stale_ns = int(config.stale_periods * self.period_s * 1e9)
        self.forward_index = (meta.get("reward") or {}).get("forward_index")
        self._zero = np.clip(np.zeros(act_dim), self.low, self.high)
        self._last_command = self._zero.copy()
        self.counters = dict.fromkeys(
            ("states", "repeated_states", "stale", "nonfinite", "out_of_range", "malformed",
             "safe_commands", "clipped_commands", "commands", "late_commands"), 0)
        self.added = LatencyLog(capacity)  # stamp -> command written, seconds
        self.age = LatencyLog(capacity)  # stamp -> state taken by the runtime, seconds
        self._window = (dict(self.counters), 0)
        self._js: dict[int, Any] = {}
        self._odom: dict[int, Any] = {}
        self._used = -1  # stamp (ns) of the state last acted on
        self._fault = False
        self._last_obs: np.ndarray | None = None
        self._open()

    # ------------------------------------------------------------------ DDS
    def _open(self) -> None:
        from cyclonedds.pub import DataWriter
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic

        from export.runtime.dds_types import Float64MultiArray, JointState, Odometry

        c = self.config
        self.participant = open_participant(c)
        self.state_reader = DataReader(
            self.participant, Topic(self.participant, c.topic("state_topic"), JointState),
            qos=sensor_qos(RECENT))
        self.odom_reader = None
        if self.map.base is not None:
            self.odom_reader = DataReader(
                self.participant, Topic(self.participant, c.topic("odom_topic"), Odometry),
                qos=sensor_qos(RECENT))
        self.writer = DataWriter(
            self.participant,
            Topic(self.participant, c.topic("command_topic"), Float64MultiArray),
            qos=command_qos())

    def close(self) -> None:
        """Leave the domain (the robot sees the writer go)."""
        if getattr(self, "participant", None) is not None:
            del self.writer, self.state_reader, self.odom_reader
            self.participant = None

    def _poll(self) -> None:
        from export.runtime.dds_types import stamp_ns

        for s in take_valid(self.state_reader):
            self._js[stamp_ns(s.header.stamp)] = s
        if self.odom_reader is not None:
            for s in take_valid(self.odom_reader):
                self._odom[stamp_ns(s.header.stamp)] = s
        for d in (self._js, self._odom):
            while len(d) > RECENT:
                del d[min(d)]

    def _freshest(self) -> tuple[int, Any, Any | None] | None:
        """The newest complete state (joint states with their odometry, if any)."""
        self._poll()
        for t in sorted(self._js, reverse=True):
            if self.odom_reader is None:
                return t, self._js[t], None
            if t in self._odom:
                return t, self._js[t], self._odom[t]
        return None

    # ------------------------------------------------------------------ start-up
    def connect(self, timeout_s: float | None = None) -> None:
        """Wait for the robot's first state and refuse it unless it carries exactly the
        export's joints (one line naming the missing or extra ones)."""
        timeout = self.config.connect_timeout_s if timeout_s is None else timeout_s
        end = time.monotonic() + timeout
        while (got := self._freshest()) is None:
            if time.monotonic() > end:
                topics = [self.config.topic("state_topic")]
                if self.odom_reader is not None:
                    topics.append(self.config.topic("odom_topic"))
                raise ValueError(f"dds: no state on {' + '.join(topics)} in domain "
                                 f"{self.config.domain_id} within {timeout:g} s (is the "
                                 "robot running, on this domain and network?)")
            time.sleep(0.002)
        self.map.check_names(got[1].name, self.config.topic("state_topic"))

    def reset(self) -> np.ndarray:
        """The robot is not reset (it is a real one): wait for a state sampled after this call
        and return the freshest state a quarter period after its stamp, so the loop's ticks
        (which start now) follow the robot's by a quarter period. A state noticed too late
        for that (a busy machine) is passed over for the next one, a few times at most."""
        since = time.time_ns()
        end = time.monotonic() + self.config.connect_timeout_s
        quarter_ns = int(self.period_s * 1e9 / 4)
        tries = 0
        while True:
            got = self._freshest()
            if got is not None and got[0] >= since:
                wait_ns = got[0] + quarter_ns - time.time_ns()
                tries += 1
                if wait_ns >= 0 or tries >= 5:
                    time.sleep(max(wait_ns, 0) / 1e9)
                    break
                since = got[0] + 1
            if time.monotonic() > end:
                raise ValueError(f"dds: no fresh state on {self.config.topic('state_topic')} "
                                 f"within {self.config.connect_timeout_s:g} s")
            time.sleep(0.0002)
        self._window = (dict(self.counters), len(self.added))
        return self.observe()

    # ------------------------------------------------------------------ Robot protocol
    def observe(self) -> np.ndarray:
        self._fault = True  # until a usable state is returned
        got = self._freshest()
        now = time.time_ns()
        if got is None:
            self.counters["stale"] += 1
            raise StateFault("stale", "no state received yet")
        stamp, js, odom = got
        if now - stamp > self.stale_ns:
            self.counters["stale"] += 1
            raise StateFault("stale", f"newest state is {(now - stamp) / 1e6:.1f} ms old "
                             f"(> {self.config.stale_periods:g} periods)")
        try:
            obs = self.map.observation(js, odom)
        except StateFault:
            self.counters["malformed"] += 1
            raise
        if not np.all(np.isfinite(obs)):
            self.counters["nonfinite"] += 1
            raise StateFault("nonfinite", "state holds NaN or inf")
        pos = [obs[k] for k in self.map.position.values()]
        vel = [obs[k] for k in self.map.velocity.values()]
        if (np.max(np.abs(pos), initial=0.0) > self.config.max_abs_position
                or np.max(np.abs(vel), initial=0.0) > self.config.max_abs_velocity):
            self.counters["out_of_range"] += 1
            raise StateFault("out_of_range", "state beyond max_abs_position / "
                             "max_abs_velocity")
        if stamp == self._used:
            self.counters["repeated_states"] += 1
        else:
            self.counters["states"] += 1
        self._used = stamp
        self.age.append((now - stamp) / 1e9)
        self._fault = False
        self._last_obs = obs
        return obs

    def act(self, action: np.ndarray) -> None:
        a = np.asarray(action, dtype=float)
        if self._fault or a.shape != self._zero.shape or not np.all(np.isfinite(a)):
            self.counters["safe_commands"] += 1
            a = self._last_command if self.config.safe_action == "hold" else self._zero
        clipped = np.clip(a, self.low, self.high)
        if not np.array_equal(clipped, a):
            self.counters["clipped_commands"] += 1
        self.writer.write(command_message(clipped))
        now = time.time_ns()
        self._last_command = clipped
        self.counters["commands"] += 1
        if not self._fault and self._used >= 0:
            added = (now - self._used) / 1e9
            self.added.append(added)
            self.counters["late_commands"] += added > self.period_s

    # ------------------------------------------------------------------ reporting
    def _latency(self, start: int = 0) -> dict[str, float | None]:
        v = self.added.values(start) * 1e3
        if not len(v):
            return {"p50": None, "p99": None, "max": None}
        return {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
                "max": float(v.max())}

    def metrics(self) -> dict[str, Any]:
        """The counters, the added latency (state stamped -> command written) over the run in
        ms and as a share of the period, the state's age when taken, and the observed speed."""
        lat = self._latency()
        age = self.age.values() * 1e3
        speed = (float(self._last_obs[self.forward_index])
                 if self._last_obs is not None and self.forward_index is not None else None)
        return {
            **self.counters,
            "added_latency_ms": lat,
            "added_latency_periods": {k: None if v is None else v / (self.period_s * 1e3)
                                      for k, v in lat.items()},
            "state_age_ms": {"p50": float(np.percentile(age, 50)) if len(age) else None,
                             "p99": float(np.percentile(age, 99)) if len(age) else None},
            "period_ms": self.period_s * 1e3,
            "speed": speed,
            "condition": "dds",
        }

    def window_metrics(self) -> dict[str, Any]:
        """The timeline row's DDS columns for the window since the previous call."""
        before, start = self._window
        lat = self._latency(start)
        row = {f"dds_added_{k}_ms": v for k, v in lat.items()}
        for key in ("states", "late_commands", "stale", "nonfinite", "out_of_range", "malformed",
                    "safe_commands", "clipped_commands", "repeated_states"):
            row[f"dds_{key}"] = self.counters[key] - before[key]
        self._window = (dict(self.counters), len(self.added))
        return row
