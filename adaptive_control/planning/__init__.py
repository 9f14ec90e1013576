"""MPC planning: pure trajectory optimisers and the stateful planners that warm-start them."""

from adaptive_control.planning.optimizers import (
    cem,
    hold_steps,
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
    PROBLEM_FIELDS,
    CEMConfig,
    MPPIConfig,
    Planner,
    PlannerConfig,
    RandomShooting,
    RandomShootingConfig,
    make_planner,
    optimize,
    planner_config,
    planner_config_class,
    planner_settings,
    planning_steps,
    switch_planner,
    warm_start_prior,
    with_settings,
)

__all__ = [
    "CEM", "CEMConfig", "MPPI", "MPPIConfig", "PLANNER_NAMES", "PROBLEM_FIELDS", "Planner",
    "PlannerConfig", "RandomShooting", "RandomShootingConfig", "cem", "hold_steps",
    "make_planner", "mppi", "num_elites", "optimize", "planner_config",
    "planner_config_class", "planner_settings", "planning_steps",
    "random_shooting", "rollout_returns", "shift_plan", "smooth_noise", "smoothing_matrix",
    "switch_planner", "warm_start_prior", "with_settings",
]
