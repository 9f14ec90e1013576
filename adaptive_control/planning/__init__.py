"""MPC planning: pure trajectory optimisers and the stateful planners that warm-start them."""

from adaptive_control.planning.optimizers import (
    cem,
    mppi,
    num_elites,
    random_shooting,
    rollout_returns,
    shift_plan,
    smooth_noise,
    smoothing_matrix,
)
from adaptive_control.planning.planners import (
    CEM,
    MPPI,
    PLANNER_NAMES,
    CEMConfig,
    MPPIConfig,
    Planner,
    RandomShooting,
    RandomShootingConfig,
    make_planner,
)

__all__ = [
    "CEM", "CEMConfig", "MPPI", "MPPIConfig", "PLANNER_NAMES", "Planner", "RandomShooting",
    "RandomShootingConfig", "cem", "make_planner", "mppi", "num_elites", "random_shooting",
    "rollout_returns", "shift_plan", "smooth_noise", "smoothing_matrix",
]
