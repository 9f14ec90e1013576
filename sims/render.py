"""Offscreen rendering of a robot under a condition: still images and videos.

On a machine without a display, MuJoCo renders through OSMesa (``MUJOCO_GL=osmesa``, Debian's
``libosmesa6``); ``sims`` sets that default before mujoco is first imported when no display
is available.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import mujoco
import numpy as np

from sims.physics import Physics


def render_frame(
    physics: Physics, width: int = 320, height: int = 240, camera: str | int = "track",
    renderer: mujoco.Renderer | None = None,
) -> np.ndarray:
    """One RGB frame ``[height, width, 3]`` from the named camera (falls back to free camera)."""
    own = renderer is None
    if renderer is None:
        renderer = mujoco.Renderer(physics.model, height=height, width=width)
    try:
        cam = camera
        if isinstance(camera, str) and mujoco.mj_name2id(
                physics.model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            cam = -1
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
