"""Terrain height profiles along the direction of travel (x), in metres.

A profile is a 1-D array of heights at evenly spaced columns; the heightfield built from it is
constant across y. The fixed test terrains and the random training ramps follow the GrBAL paper
(see ../shared/REFERENCE.md): training fields are 6 ramps of 10 columns with grade U(0.2, 0.6)
of random sign, the first two uphill, heights within [0, h], h ~ U(0.2, 1); test terrains use
ramps of 15 columns: hill (h = 0.6), basin (h = 0.55), gentle (6 up-ramps, h = 1),
steep (6 up-ramps, h = 4).
"""

from __future__ import annotations

import numpy as np

COLUMN_WIDTH = 0.1  # m between heightfield columns
N_COLUMNS = 1000  # 100 m of track: a fast cheetah covers ~50 m in a 10 s episode
START_X = -5.0  # the track begins 5 m behind the robot's start
FLAT_RUN_IN = 0.5  # m of flat ground ahead of the start: features are under the front feet early

PROFILES = ("hill", "basin", "gentle", "steep")


def _x() -> np.ndarray:
    return START_X + COLUMN_WIDTH * np.arange(N_COLUMNS)


def _ramps(rises: list[float], ramp_cols: int, flat_cols: int) -> np.ndarray:
    """Heights for a sequence of ramps, each rising by ``rises[i]`` over ``ramp_cols`` columns,
    separated by ``flat_cols`` flat columns, after the flat run-in."""
    h = np.zeros(N_COLUMNS)
    col = int(round((FLAT_RUN_IN - START_X) / COLUMN_WIDTH))
    level = 0.0
    for rise in rises:
        if col >= N_COLUMNS:
            break
        stop = min(col + ramp_cols, N_COLUMNS)
        h[col:stop] = level + rise * (np.arange(1, stop - col + 1) / ramp_cols)
        level += rise
        h[stop:] = level
        col = stop + flat_cols
    return h


def profile(name: str) -> np.ndarray:
    """One of the paper's fixed test terrains as heights per column."""
    if name == "hill":
        return _ramps([0.6, -0.6], ramp_cols=15, flat_cols=5)
    if name == "basin":
        return _ramps([-0.55, 0.55], ramp_cols=15, flat_cols=5)
    if name == "gentle":
        return _ramps([1.0 / 6] * 6, ramp_cols=15, flat_cols=10)
    if name == "steep":
        return _ramps([4.0 / 6] * 6, ramp_cols=15, flat_cols=10)
    raise ValueError(f"profile={name!r} is unknown: allowed {', '.join(PROFILES)}")


def random_ramps(rng: np.random.Generator) -> np.ndarray:
    """A random training field: 6 ramps of 10 columns, grade U(0.2, 0.6), random sign (the
    first two uphill), heights kept within [0, h] with h ~ U(0.2, 1)."""
    h_max = rng.uniform(0.2, 1.0)
    grades = rng.uniform(0.2, 0.6, size=6)
    signs = np.where(rng.random(6) < 0.5, -1.0, 1.0)
    signs[:2] = 1.0
    rises = []
    level = 0.0
    for g, s in zip(grades, signs, strict=True):
        rise = s * g * 10 * COLUMN_WIDTH
        new = float(np.clip(level + rise, 0.0, h_max))
        rises.append(new - level)
        level = new
    return _ramps(rises, ramp_cols=10, flat_cols=int(rng.integers(5, 20)))


def slope_profile(degrees: float, start_x: float) -> np.ndarray:
    """Flat until ``start_x``, then a constant grade of ``degrees`` (for 'flat, then a slope')."""
    x = _x()
    return np.tan(np.radians(degrees)) * np.clip(x - start_x, 0.0, None)


def max_grade_deg(heights: np.ndarray) -> float:
    """Steepest column-to-column grade of a profile, in degrees."""
    return float(np.degrees(np.arctan(np.max(np.abs(np.diff(heights))) / COLUMN_WIDTH)))
