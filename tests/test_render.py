"""Camera views of ``sims.render``: framed by the robot's size, following the robot.

How much of the image the robot covers is measured with MuJoCo's segmentation rendering
(pixels whose geom belongs to a body other than the world), under the same camera the RGB
frame uses.
"""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import mujoco
import numpy as np
import pytest
from registries import restored_registry

from adapt_cli import main
from sims.physics import Physics
from sims.registry import get_robot
from sims.render import CAMERAS, render_frame, robot_camera
from sims.robots import Robot

STRIDER = Path(__file__).resolve().parents[1] / "examples" / "own_robot" / "strider.toml"
W, H = 160, 120


@pytest.fixture(scope="module")
def robots():
    """The strider of the example spec file and the built-in robots (registries restored)."""
    with restored_registry():
        yield {"strider": get_robot(str(STRIDER)), "cheetah": get_robot("cheetah"),
               "quadruped": get_robot("quadruped")}


def at_rest(robot: Robot) -> Physics:
    physics = Physics(robot, robot.base_model())
    mujoco.mj_forward(physics.model, physics.data)
    return physics


def coverage(physics: Physics, cam: mujoco.MjvCamera | str) -> tuple[float, np.ndarray,
                                                                     np.ndarray]:
    """The share of the image the robot covers under ``cam``, and the centre and the span of
    its pixels' bounding box (x, y; shares of the image's width and height)."""
    renderer = mujoco.Renderer(physics.model, height=H, width=W)
    try:
        renderer.enable_segmentation_rendering()
        renderer.update_scene(physics.data, camera=cam)
        seg = renderer.render()
    finally:
        renderer.close()
    ids, types = seg[..., 0], seg[..., 1]
    robot = (types == mujoco.mjtObj.mjOBJ_GEOM) & (ids >= 0)
    robot[robot] = physics.model.geom_bodyid[ids[robot]] != 0
    ys, xs = np.nonzero(robot)
    if not len(xs):
        return 0.0, np.full(2, np.nan), np.zeros(2)
    centre = np.array([(xs.min() + xs.max() + 1) / 2 / W, (ys.min() + ys.max() + 1) / 2 / H])
    span = np.array([(xs.max() - xs.min() + 1) / W, (ys.max() - ys.min() + 1) / H])
    return float(robot.mean()), centre, span


@pytest.mark.parametrize("name", ["strider", "cheetah", "quadruped"])
@pytest.mark.parametrize("camera", CAMERAS)
def test_default_framing_fills_a_sensible_part_of_the_image(robots, name, camera):
    """The robot spans most of the image's width or height without touching its edges;
    stick-figure robots cover fewer pixels (a cheetah seen from above is a line)."""
    physics = at_rest(robots[name])
    share, centre, span = coverage(physics, robot_camera(physics, camera, aspect=W / H))
    assert 0.45 <= span.max() <= 0.9, (name, camera, span)
    assert (0.05 if name == "strider" or camera != "top" else 0.03) <= share <= 0.80, (
        name, camera, share)
    assert np.all(np.abs(centre - 0.5) < 0.1), centre  # in the middle


def test_the_strider_is_no_longer_a_fifth_of_the_image(robots):
    """Its own MJCF camera (2 m away) is what the render used before the views existed."""
    physics = at_rest(robots["strider"])
    own, _, own_span = coverage(physics, "track")
    framed, _, span = coverage(physics, robot_camera(physics, "side", aspect=W / H))
    assert own_span.max() < 0.4 and span.max() > 0.6 and framed > 3 * own


def test_distance_and_tracking(robots):
    physics = at_rest(robots["strider"])
    default = robot_camera(physics, "side", aspect=W / H)
    near, _, _ = coverage(physics, default)
    far, _, _ = coverage(physics, robot_camera(physics, "side", 2 * default.distance, W / H))
    assert far < near / 2  # twice as far: about a quarter of the pixels
    assert robot_camera(physics, "side", 1.5).distance == 1.5
    physics.data.qpos[0] += 7.0  # the root's x slide: the robot walked 7 m
    mujoco.mj_forward(physics.model, physics.data)
    moved = robot_camera(physics, "side", aspect=W / H)
    assert moved.lookat[0] == pytest.approx(default.lookat[0] + 7.0)
    assert moved.distance == pytest.approx(default.distance)
    share, centre, _ = coverage(physics, moved)
    assert share == pytest.approx(near, rel=0.05) and np.all(np.abs(centre - 0.5) < 0.1)
    physics.data.qpos[2] = 1.2  # falling forward: pitched 69°, the legs trailing
    mujoco.mj_forward(physics.model, physics.data)
    _, centre, span = coverage(physics, robot_camera(physics, "side", aspect=W / H))
    assert np.all(np.abs(centre - 0.5) < 0.1) and span.max() <= 0.95  # in the middle, whole


def test_render_frame_takes_the_view_and_the_distance(robots):
    physics = at_rest(robots["quadruped"])
    frames = {c: render_frame(physics, W, H, camera=c) for c in CAMERAS}
    assert all(f.shape == (H, W, 3) and f.std() > 5 for f in frames.values())
    assert not np.array_equal(frames["side"], frames["top"])
    assert not np.array_equal(frames["side"], render_frame(physics, W, H, "side", 8.0))


@pytest.mark.parametrize("camera, distance, fragments", [
    ("foo", None, ["camera='foo'", "track, side, top"]),
    ("Side", None, ["camera='Side'", "track, side, top"]),
    ("side", -1.0, ["distance=-1.0", "metres > 0"]),
    ("side", 0.0, ["distance=0.0", "metres > 0"]),
    ("side", math.nan, ["distance=nan", "metres > 0"]),
    ("side", math.inf, ["distance=inf", "metres > 0"]),
])
def test_bad_views_are_refused_naming_the_value_and_what_is_allowed(robots, camera, distance,
                                                                    fragments):
    physics = at_rest(robots["cheetah"])
    for call in (lambda: render_frame(physics, W, H, camera, distance),
                 lambda: robot_camera(physics, camera, distance)):
        with pytest.raises(ValueError) as err:
            call()
        assert all(f in str(err.value) for f in fragments)


def test_cli_renders_each_view_of_the_spec_robot(tmp_path, robots, capsys):
    images = {}
    for camera in CAMERAS:
        out = tmp_path / f"{camera}.png"
        assert main(["sims", "render", str(STRIDER), "--camera", camera, "--duration", "0.04",
                     "--width", str(W), "--height", str(H), "--out", str(out)]) == 0
        images[camera] = iio.imread(out)
    assert all(img.shape == (H, W, 3) for img in images.values())
    assert len({img.tobytes() for img in images.values()}) == 3
    out = tmp_path / "far.png"
    assert main(["sims", "render", str(STRIDER), "--camera", "side", "--distance", "6",
                 "--duration", "0.04", "--width", str(W), "--height", str(H),
                 "--out", str(out)]) == 0
    assert not np.array_equal(iio.imread(out), images["side"])
    assert "wrote" in capsys.readouterr().out
