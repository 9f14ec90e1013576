"""MPC planning: the objective (predicted return of candidate action sequences), pure
trajectory optimisers of an objective, and the stateful planners that warm-start them."""

from adaptive_control.planning.objective import (
    Objective,
    TrajectoryObjective,
    mean_minus_std,
    member_mean,
    rollout_returns,
)
from adaptive_control.planning.optimizers import (
    cem,
    hold_steps,
    mppi,
    num_elites,
    random_shooting,
    shift_plan,
    smooth_noise,
    smoothing_matrix,
)
from adaptive_control.planning.planners import (
    CEM,
    MPPI,
    PLANNER_CONFIGS,
    PLANNER_NAMES,
    PROBLEM_FIELDS,
    CEMConfig,
    MPPIConfig,
    Planner,
    PlannerConfig,
    RandomShooting,
    RandomShootingConfig,
    make_objective,
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
    "CEM", "CEMConfig", "MPPI", "MPPIConfig", "Objective", "PLANNER_CONFIGS", "PLANNER_NAMES",
    "PROBLEM_FIELDS", "Planner", "PlannerConfig", "RandomShooting", "RandomShootingConfig",
    "TrajectoryObjective", "cem", "hold_steps", "make_objective", "make_planner",
    "mean_minus_std", "member_mean", "mppi", "num_elites", "optimize", "planner_config",
    "planner_config_class", "planner_settings", "planning_steps",
    "random_shooting", "rollout_returns", "shift_plan", "smooth_noise", "smoothing_matrix",
    "switch_planner", "warm_start_prior", "with_settings",
]
