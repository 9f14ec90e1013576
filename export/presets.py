"""Deploy presets: per robot and precision, the planner size chosen by measurement for real-time
control on one core.

Each preset is the best mean normalised score on the held-out episodes among the MPPI sizes
whose p99 controller step, exported and timed on one thread, fits the deadline (90 % of the
control period: 9 ms for the cheetah at 100 Hz, 18 ms for the quadruped at 50 Hz). The
measurement, its command and its limits are in docs/export.md ("Real-time presets");
``research/deploy_presets.py`` repeats it. A preset is a starting point for a machine like the
one it was measured on: ``adapt export`` times the exported step and warns when its p99
misses the deadline here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from export.precision import PRECISIONS


@dataclass(frozen=True)
class DeployPreset:
    """Planner settings for ``adapt export --deploy-preset``, with what they measured."""

    planner: str
    num_candidates: int
    horizon: int
    measured: str  # the figures behind the choice, for the manifest and the docs

    def settings(self) -> dict[str, Any]:
        return {"num_candidates": self.num_candidates, "horizon": self.horizon}


#: (robot, precision) -> preset, from research/deploy_presets.py on this project's reference
#: runs (cheetah: five GrBAL training seeds, 2 x 256, held-out dead back thigh, 1000 steps;
#: a size fits when its p99 is within 70 % of the deadline).
DEPLOY_PRESETS: dict[tuple[str, str], DeployPreset] = {
    ("cheetah", "fp32"): DeployPreset(
        "mppi", 64, 30, "cheetah, fp32, 100 Hz: p50 4.7 / p99 5.8 ms against a 9 ms deadline "
        "(70 % headroom: 6.3 ms); held-out dead back thigh over 5 training seeds: score "
        "-0.57 ± 1.61, 16 % flipped (128 x 15: -1.27; 96 x 20: -1.33)"),
    ("cheetah", "int8"): DeployPreset(
        "mppi", 96, 30, "cheetah, int8, 100 Hz: p50 4.5 / p99 6.2 ms against a 9 ms deadline "
        "(70 % headroom: 6.3 ms); held-out dead back thigh over 5 training seeds: score "
        "-0.66 ± 1.82, 18 % flipped (192 x 15: -0.72; 256 x 15: -1.26)"),
    # At the cheetah's decision step (50 ms, cheetah@5) the small preset's own planner fits
    # with room to spare: no smaller size is needed.
    ("cheetah@5", "fp32"): DeployPreset(
        "mppi", 256, 15, "cheetah@5, fp32, 20 Hz: p50 16.5 / p99 22.1 ms against a 45 ms "
        "deadline (70 % headroom: 31.5 ms) with the other core busy and a load average of 5; "
        "the small preset's own planner (docs/results.md, planning rate)"),
    # The learned quadruped does not stand yet (docs/results.md), so its sizes were not scored:
    # the preset is the most candidate-steps whose p99 fits, at the training horizon if any.
    ("quadruped", "fp32"): DeployPreset(
        "mppi", 192, 20, "quadruped, fp32, 50 Hz: p50 8.6 / p99 12.1 ms against an 18 ms "
        "deadline (70 % headroom: 12.6 ms); largest fitting size, not scored"),
    ("quadruped", "int8"): DeployPreset(
        "mppi", 192, 30, "quadruped, int8, 50 Hz: p50 7.9 / p99 9.3 ms against an 18 ms "
        "deadline (70 % headroom: 12.6 ms); largest fitting size, not scored"),
}


def deploy_preset(robot: str, precision: str) -> DeployPreset:
    """The preset for ``robot`` in ``precision``, or a ValueError naming the ones measured."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision={precision!r}: allowed {', '.join(PRECISIONS)}")
    preset = DEPLOY_PRESETS.get((robot, precision))
    if preset is None:
        have = ", ".join(f"{r} ({p})" for r, p in DEPLOY_PRESETS)
        raise ValueError(f"--deploy-preset: no preset measured for robot {robot!r} in "
                         f"{precision}: presets exist for {have}; give --planner, "
                         "--candidates and --horizon instead")
    return preset
