"""Offscreen rendering of a robot under a condition: still images and videos.

On a machine without a display, MuJoCo renders through OSMesa (``MUJOCO_GL=osmesa``, Debian's
``libosmesa6``); ``sims`` sets that default before mujoco is first imported when no display
is available.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import mujoco
import numpy as np

from sims.physics import Physics
from sims.robots import descendants

#: The camera views, each a free camera that follows the robot (:func:`robot_camera`): ``track``
#: a three-quarter view from the front left, ``side`` from the robot's left (it walks along
#: +x, left to right in the image), ``top`` from above (+x to the right).
CAMERAS = ("track", "side", "top")
_ANGLES = {"track": (135.0, -20.0), "side": (90.0, -8.0), "top": (90.0, -89.0)}  # az, el (deg)
#: Share of the image's height (or width, whichever binds) the robot at rest spans at the
#: default distance: room left for legs that swing and a robot that falls over.
FILL = 0.7


def check_camera(camera: str, distance: float | None) -> None:
    """Refuse a camera view not in :data:`CAMERAS` or a distance that is not metres > 0."""
    if camera not in CAMERAS:
        raise ValueError(f"camera={camera!r}: allowed {', '.join(CAMERAS)}")
    if distance is not None and (isinstance(distance, bool) or not isinstance(
            distance, (int, float)) or not math.isfinite(distance) or distance <= 0):
        raise ValueError(f"distance={distance!r}: allowed metres > 0, or none to frame the "
                         "robot by its size")


def robot_camera(physics: Physics, camera: str = "track", distance: float | None = None,
                 aspect: float = 4 / 3) -> mujoco.MjvCamera:
    """A free camera of view ``camera`` aimed at the robot in its current state.

    The distance comes from the healthy robot at rest, so it is the same in every frame of a
    video and under every condition: ``distance`` metres, or by default the nearest at which
    the geom bounding boxes of the torso's subtree span :data:`FILL` of an image of ``aspect``
    width / height. The camera looks at the centre of the torso subtree's current bounding
    box: it follows the robot, and one that falls over stays in the middle of the picture.
    """
    check_camera(camera, distance)
    robot = physics.robot
    rest_model = robot.base_model()
    rest = mujoco.MjData(rest_model)
    mujoco.mj_kinematics(rest_model, rest)
    corners = _subtree_box_corners(rest_model, rest, rest_model.body(robot.torso).id)
    centre = (corners.min(axis=0) + corners.max(axis=0)) / 2
    azimuth, elevation = _ANGLES[camera]
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.azimuth, cam.elevation = azimuth, elevation
    cam.distance = distance if distance is not None else _framing_distance(
        corners - centre, azimuth, elevation, float(rest_model.vis.global_.fovy), aspect)
    now = _subtree_box_corners(physics.model, physics.data, physics.model.body(robot.torso).id)
    cam.lookat[:] = (now.min(axis=0) + now.max(axis=0)) / 2
    return cam


def _subtree_box_corners(model: mujoco.MjModel, data: mujoco.MjData, root: int) -> np.ndarray:
    """World corners ``[8 n, 3]`` of the bounding boxes of the geoms of ``root``'s subtree."""
    inside = {root} | descendants(model, root)
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
    out = []
    for g in range(model.ngeom):
        if model.geom_bodyid[g] not in inside or model.geom_type[g] == mujoco.mjtGeom.mjGEOM_PLANE:
            continue
        centre, half = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
        local = centre + signs * half
        out.append(data.geom_xpos[g] + local @ data.geom_xmat[g].reshape(3, 3).T)
    if not out:  # a torso without geoms: frame its position
        return np.repeat(data.xpos[root][None], 2, axis=0) + [[-0.5] * 3, [0.5] * 3]
    return np.concatenate(out)


def _framing_distance(points: np.ndarray, azimuth: float, elevation: float, fovy: float,
                      aspect: float) -> float:
    """The distance from the points' centre at which a perspective camera at ``azimuth`` /
    ``elevation`` sees every point (relative to the centre) within :data:`FILL` of the image."""
    az, el = math.radians(azimuth), math.radians(elevation)
    forward = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    up = np.array([-math.sin(el) * math.cos(az), -math.sin(el) * math.sin(az), math.cos(el)])
    right = np.cross(forward, up)
    tan_y = FILL * math.tan(math.radians(fovy) / 2)
    depth = points @ forward  # > 0: beyond the centre, seen from the camera
    need = np.maximum(np.abs(points @ up) / tan_y, np.abs(points @ right) / (tan_y * aspect))
    return float(max((need - depth).max(), 1e-3))


def render_frame(
    physics: Physics, width: int = 320, height: int = 240, camera: str = "track",
    distance: float | None = None, renderer: mujoco.Renderer | None = None,
) -> np.ndarray:
    """One RGB frame ``[height, width, 3]`` (the renderer's size when one is given) from the
    camera view ``camera`` (:data:`CAMERAS`), ``distance`` metres from the robot or framed by
    its size (:func:`robot_camera`)."""
    check_camera(camera, distance)
    own = renderer is None
    if renderer is None:
        renderer = mujoco.Renderer(physics.model, height=height, width=width)
    try:
        cam = robot_camera(physics, camera, distance, aspect=renderer.width / renderer.height)
        renderer.update_scene(physics.data, camera=cam)
        return renderer.render().copy()
    finally:
        if own:
            renderer.close()


def save_image(frame: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, frame)
    return path


def save_video(frames: Sequence[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """MP4 (via imageio-ffmpeg) or GIF, chosen by the file suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imageio.mimsave(path, list(frames), duration=1.0 / fps, loop=0)
    elif path.suffix == ".mp4":
        imageio.mimsave(path, list(frames), fps=fps, macro_block_size=1)
    else:
        raise ValueError(f"video path={str(path)!r}: allowed suffixes .mp4, .gif")
    return path
