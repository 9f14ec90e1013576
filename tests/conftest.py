"""Shared test setup. Keep it generic: fixtures that many test files need.

``MUJOCO_GL`` must be set before anything imports mujoco, so that offscreen rendering works on
a machine without a display (OSMesa, Debian's ``libosmesa6``).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed-seed generator; pass it explicitly, as the library expects."""
    return np.random.default_rng(0)


@pytest.fixture
def registry():
    """Restore the robot and family registries after a test that loads spec files."""
    from registries import restored_registry

    with restored_registry():
        yield
