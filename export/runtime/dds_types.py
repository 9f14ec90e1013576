"""ROS 2 message types on the DDS wire, for :mod:`export.runtime.dds`.

Each class has the field names, order and types of the ROS 2 message (``common_interfaces``
and ``rcl_interfaces``) and the DDS type name ROS 2's ``rmw`` layer gives it
(``sensor_msgs::msg::dds_::JointState_``), so a ROS 2 node, ``topic_based_ros2_control``
or ``ros2 topic echo`` reads what these write and the other way round. ROS 2 prefixes topic
names with ``rt/`` on the wire (``/joint_states`` is ``rt/joint_states``); see
:func:`ros_topic`.

Only ``cyclonedds.idl`` is imported (no torch, mujoco or ``sims``). Every message is written
in plain CDR (XCDR1), what ROS 2's ``rmw_cyclonedds_cpp`` uses: :data:`ROS_REPRESENTATION`
goes into every reader's and writer's QoS.
"""

# No ``from __future__ import annotations``: cyclonedds reads these classes' annotations as
# objects (a string annotation such as "sequence[str]" does not resolve).
from dataclasses import dataclass, field

from cyclonedds.idl import IdlStruct
from cyclonedds.idl.types import array, float64, int32, sequence, uint32

__all__ = ["Float64MultiArray", "Header", "JointState", "MultiArrayDimension",
           "MultiArrayLayout", "Odometry", "Point", "Pose", "PoseWithCovariance", "Quaternion",
           "Time", "Twist", "TwistWithCovariance", "Vector3", "ros_topic", "stamp_ns",
           "time_of_ns"]


# builtin_interfaces ---------------------------------------------------------------------------

@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


# std_msgs -------------------------------------------------------------------------------------

@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class MultiArrayDimension(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayDimension_"):
    label: str = ""
    size: uint32 = 0
    stride: uint32 = 0


@dataclass
class MultiArrayLayout(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayLayout_"):
    dim: sequence[MultiArrayDimension] = field(default_factory=list)
    data_offset: uint32 = 0


@dataclass
class Float64MultiArray(IdlStruct, typename="std_msgs::msg::dds_::Float64MultiArray_"):
    layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
    data: sequence[float64] = field(default_factory=list)


# sensor_msgs ----------------------------------------------------------------------------------

@dataclass
class JointState(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    header: Header = field(default_factory=Header)
    name: sequence[str] = field(default_factory=list)
    position: sequence[float64] = field(default_factory=list)
    velocity: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)


# geometry_msgs and nav_msgs (a floating base's state) -----------------------------------------

@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0
    w: float64 = 1.0


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@dataclass
class PoseWithCovariance(IdlStruct, typename="geometry_msgs::msg::dds_::PoseWithCovariance_"):
    pose: Pose = field(default_factory=Pose)
    covariance: array[float64, 36] = field(default_factory=lambda: [0.0] * 36)


@dataclass
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


@dataclass
class TwistWithCovariance(IdlStruct,
                          typename="geometry_msgs::msg::dds_::TwistWithCovariance_"):
    twist: Twist = field(default_factory=Twist)
    covariance: array[float64, 36] = field(default_factory=lambda: [0.0] * 36)


@dataclass
class Odometry(IdlStruct, typename="nav_msgs::msg::dds_::Odometry_"):
    header: Header = field(default_factory=Header)
    child_frame_id: str = ""
    pose: PoseWithCovariance = field(default_factory=PoseWithCovariance)
    twist: TwistWithCovariance = field(default_factory=TwistWithCovariance)


# helpers --------------------------------------------------------------------------------------

def ros_topic(namespace: str, name: str) -> str:
    """The DDS topic of ROS 2 topic ``/<namespace>/<name>``: ``rt/<namespace>/<name>``."""
    parts = [p for p in (*namespace.split("/"), *name.split("/")) if p]
    return "rt/" + "/".join(parts)


def time_of_ns(ns: int) -> Time:
    """A ``builtin_interfaces/Time`` from integer nanoseconds."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def stamp_ns(t: Time) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time``."""
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)
