"""Tests for adaptive_control.planning on toy problems with known optima."""

from __future__ import annotations

import dataclasses
import importlib.util
import typing
import warnings

import pytest
import torch
from torch import Tensor, nn

from adaptive_control.planning import (
    CEM,
    MPPI,
    PLANNER_CONFIGS,
    PLANNER_NAMES,
    CEMConfig,
    MPPIConfig,
    Planner,
    PlannerConfig,
    RandomShooting,
    RandomShootingConfig,
    TrajectoryObjective,
    cem,
    hold_steps,
    make_objective,
    make_planner,
    mean_minus_std,
    mppi,
    num_elites,
    planner_config,
    planner_settings,
    random_shooting,
    rollout_returns,
    shift_plan,
    smooth_noise,
    switch_planner,
)

# --------------------------------------------------------------------------------------------
# Toy models
# --------------------------------------------------------------------------------------------


class Integrator:
    """x' = x + a in any dimension; counts calls to check batching (one call per step)."""

    def __init__(self) -> None:
        self.calls = 0

    def initial_state(self, batch_size: int) -> None:
        return None

    def __call__(self, obs: Tensor, act: Tensor, state: None) -> tuple[Tensor, None]:
        self.calls += 1
        return obs + act, state


def track(target: float | Tensor):
    """Reward −‖x' − target‖²."""

    def reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
        return -((next_obs - target) ** 2).sum(-1)

    return reward


class BoundsSpy(Integrator):
    """Integrator that records whether any action it is fed leaves [low, high]."""

    def __init__(self, low: Tensor, high: Tensor) -> None:
        super().__init__()
        self.low, self.high = low, high
        self.max_violation = 0.0

    def __call__(self, obs: Tensor, act: Tensor, state: None) -> tuple[Tensor, None]:
        viol = torch.maximum(self.low - act, act - self.high).max().item()
        self.max_violation = max(self.max_violation, viol)
        return super().__call__(obs, act, state)


class StepCounter:
    """Recurrent toy model: state = (step count [N], constant tag); next_obs = count + 1."""

    def __init__(self) -> None:
        self.seen: list[Tensor] = []

    def initial_state(self, batch_size: int) -> tuple[Tensor, str]:
        return torch.zeros(batch_size), "tag"

    def __call__(self, obs: Tensor, act: Tensor, state: tuple[Tensor, str]):
        count, tag = state
        assert tag == "tag"  # arbitrary (non-tensor) structure passes through untouched
        assert count.shape == (obs.shape[0],)
        self.seen.append(count.clone())
        nxt = (count + 1).unsqueeze(-1).expand_as(obs)
        return nxt, (count + 1, tag)


def first_coord(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    return next_obs[:, 0]


def constant_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    return torch.zeros(obs.shape[0])


LOW1, HIGH1 = torch.tensor([-1.0]), torch.tensor([1.0])


def small_planner(name: str, low: Tensor = LOW1, high: Tensor = HIGH1, **kw) -> Planner:
    """Planners configured for the 1-D toy problem (short horizon: a sharp optimum)."""
    base = {
        "random_shooting": dict(num_candidates=2000, horizon=2),
        "cem": dict(num_candidates=200, horizon=2, num_iterations=6),
        # Horizon 1: shifting with fill "last" keeps the plan, so repeated calls refine it.
        "mppi": dict(num_candidates=300, horizon=1, lambda_=0.01, noise_sigma=0.5),
    }[name]
    return make_planner(planner_config(name, **{**base, **kw}), low, high)


def run_plan(planner: Planner, obs: Tensor, predictor, reward, seed: int, calls: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    act = None
    for _ in range(calls):
        act = planner.plan(obs, predictor, reward, gen)
    return act


# Several calls for MPPI: one update is one reweighting step; with warm start the plan refines.
CALLS = {"random_shooting": 1, "cem": 1, "mppi": 8}
# Random shooting is best-of-N, so it is looser (worst over 120 seed×target runs: 0.053).
TOL = {"random_shooting": 0.08, "cem": 0.02, "mppi": 0.03}

# --------------------------------------------------------------------------------------------
# Optimum on the toy problem, bounds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PLANNER_NAMES)
@pytest.mark.parametrize("target, expected", [(0.5, 0.5), (-0.3, -0.3), (3.0, 1.0), (-3.0, -1.0)])
def test_planner_finds_first_action_optimum(name: str, target: float, expected: float) -> None:
    # x' = x + a from x = 0, reward −(x' − target)²: the optimal first action is the target,
    # or the bound when the target is out of reach.
    for seed in range(3):
        planner = small_planner(name)
        spy = BoundsSpy(LOW1, HIGH1)
        act = run_plan(planner, torch.zeros(1), spy, track(target), seed, CALLS[name])
        assert act.shape == (1,)
        assert abs(act.item() - expected) < TOL[name], (name, seed, act.item())
        assert -1.0 <= act.item() <= 1.0
        assert spy.max_violation <= 0.0  # no candidate ever left the bounds
        assert planner.last_plan.shape == (planner.config.horizon, 1)
        assert planner.last_plan.abs().max() <= 1.0


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_bounds_respected_with_aggressive_settings(name: str) -> None:
    # Asymmetric bounds, a reward that pushes far outside them and very wide sampling.
    low, high = torch.tensor([-0.3, 0.1, -2.0]), torch.tensor([0.2, 2.0, -1.5])
    wide = {"random_shooting": {}, "cem": {"init_std": 50.0}, "mppi": {"noise_sigma": 50.0}}
    planner = make_planner(planner_config(name, num_candidates=64, horizon=4, **wide[name]),
                           low, high)
    spy = BoundsSpy(low, high)
    reward = track(torch.tensor([5.0, -5.0, 5.0]))
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        act = planner.plan(torch.zeros(3), spy, reward, gen)
        assert ((act >= low) & (act <= high)).all()
        assert ((planner.last_plan >= low) & (planner.last_plan <= high)).all()
    assert spy.max_violation <= 0.0


def test_pure_functions_respect_bounds_from_outside_prior() -> None:
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.5])
    pred, rew = Integrator(), track(torch.tensor([3.0, 3.0]))
    gen = torch.Generator().manual_seed(1)
    outside = torch.full((3, 2), 7.0)  # a prior/mean far outside the box
    objective = TrajectoryObjective(pred, rew, torch.zeros(2))
    plan_c = cem(objective, torch.randn(2, 32, 3, 2, generator=gen), low, high, outside, 1.0)
    plan_m = mppi(objective, torch.randn(32, 3, 2, generator=gen), outside, low, high, 1.0)
    for plan in (plan_c, plan_m):
        assert ((plan >= low) & (plan <= high)).all()


def test_cem_beats_random_shooting_with_same_budget() -> None:
    # 6-D integrator, horizon 5: a 30-D search where uniform sampling is hopeless.
    da, horizon, budget = 6, 5, 1000
    target = torch.tensor([0.4, -0.6, 0.2, 0.7, -0.3, 0.5])
    low, high = -torch.ones(da), torch.ones(da)
    pred, rew = Integrator(), track(target)
    obs = torch.zeros(da)
    objective = TrajectoryObjective(pred, rew, obs)
    wins, gaps = 0, []
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        rs_plan, _ = random_shooting(objective, torch.rand(budget, horizon, da, generator=gen),
                                     low, high)
        cem_plan = cem(objective, torch.randn(5, budget // 5, horizon, da, generator=gen),
                       low, high, torch.zeros(horizon, da), 1.0)
        r_rs = rollout_returns(pred, rew, obs, rs_plan.unsqueeze(0)).item()
        r_cem = rollout_returns(pred, rew, obs, cem_plan.unsqueeze(0)).item()
        wins += r_cem > r_rs
        gaps.append(r_cem - r_rs)
    assert wins == 5, gaps
    # Not a marginal win: CEM's true return is much better.
    assert sum(gaps) / len(gaps) > 1.0, gaps


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def test_rollout_returns_matches_manual_sum_with_discount() -> None:
    pred, rew = Integrator(), track(0.0)
    actions = torch.tensor([[[1.0], [1.0], [-2.0]], [[0.0], [0.5], [0.5]]])
    out = rollout_returns(pred, rew, torch.tensor([0.0]), actions, discount=0.5)
    # candidate 0: x = 1, 2, 0 -> −(1 + 0.5·4 + 0.25·0); candidate 1: x = 0, .5, 1.
    expected = torch.tensor([-(1 + 2.0), -(0 + 0.5 * 0.25 + 0.25 * 1.0)])
    torch.testing.assert_close(out, expected)
    assert pred.calls == 3  # one batched call per horizon step, not per candidate


def test_stateful_predictor_state_threaded_through_horizon() -> None:
    pred, horizon, n = StepCounter(), 6, 7
    actions = torch.zeros(n, horizon, 1)
    out = rollout_returns(pred, first_coord, torch.zeros(2), actions)
    # next_obs at step t is t + 1 only if the state advanced every step.
    torch.testing.assert_close(out, torch.full((n,), horizon * (horizon + 1) / 2))
    assert len(pred.seen) == horizon
    for t, count in enumerate(pred.seen):
        torch.testing.assert_close(count, torch.full((n,), float(t)))


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_planners_thread_state(name: str) -> None:
    pred = StepCounter()
    planner = make_planner(planner_config(name, num_candidates=5, horizon=4), LOW1, HIGH1)
    planner.plan(torch.zeros(1), pred, first_coord, torch.Generator().manual_seed(0))
    iters = planner.config.num_iterations if name == "cem" else 1
    assert len(pred.seen) == 4 * iters  # state re-initialised per rollout, one call per step
    assert [c[0].item() for c in pred.seen[:4]] == [0.0, 1.0, 2.0, 3.0]
    assert all(c.shape == (5,) for c in pred.seen)


def test_pure_functions_deterministic_given_noise() -> None:
    pred, rew = Integrator(), track(0.3)
    obs, low, high = torch.zeros(2), -torch.ones(2), torch.ones(2)
    g = torch.Generator().manual_seed(0)
    u, z3, z4 = (torch.rand(50, 4, 2, generator=g), torch.randn(50, 4, 2, generator=g),
                 torch.randn(3, 50, 4, 2, generator=g))
    prior = torch.zeros(4, 2)
    objective = TrajectoryObjective(pred, rew, obs)
    a1, r1 = random_shooting(objective, u, low, high)
    a2, r2 = random_shooting(objective, u.clone(), low, high)
    assert torch.equal(a1, a2) and torch.equal(r1, r2)
    assert torch.equal(cem(objective, z4, low, high, prior, 0.5),
                       cem(objective, z4.clone(), low, high, prior, 0.5))
    assert torch.equal(mppi(objective, z3, prior, low, high, 0.5),
                       mppi(objective, z3.clone(), prior, low, high, 0.5))


def test_random_shooting_maps_noise_to_bounds_and_picks_argmax() -> None:
    noise = torch.tensor([[[0.0]], [[0.5]], [[0.75]], [[0.999]]])
    best, returns = random_shooting(TrajectoryObjective(Integrator(), track(0.4), torch.zeros(1)),
                                    noise, -1.0, 1.0)
    # candidates −1, 0, 0.5, 0.998; 0.5 is closest to 0.4.
    torch.testing.assert_close(best, torch.tensor([[0.5]]))
    torch.testing.assert_close(returns, -(torch.tensor([-1.0, 0.0, 0.5, 0.998]) - 0.4) ** 2)


def test_random_shooting_never_picks_nan_candidate() -> None:
    class NanForNegative(Integrator):
        def __call__(self, obs, act, state):
            nxt, state = super().__call__(obs, act, state)
            return torch.where(act < 0, torch.nan, nxt), state

    noise = torch.tensor([[[0.0]], [[0.6]], [[0.9]]])  # actions −1, 0.2, 0.8
    best, _ = random_shooting(TrajectoryObjective(NanForNegative(), track(0.0), torch.zeros(1)),
                              noise, -1.0, 1.0)
    torch.testing.assert_close(best, torch.tensor([[0.2]]))


def test_cem_elite_count_and_smoothing() -> None:
    assert num_elites(500, 0.1) == 50
    assert num_elites(100, 0.29) == 29  # not 28 from float error
    assert num_elites(5, 0.01) == 1
    # One iteration, all candidates elites, alpha = 0: mean becomes the candidates' mean.
    noise = torch.tensor([[[[1.0]], [[-0.5]], [[0.2]]]])
    objective = TrajectoryObjective(Integrator(), track(0.0), torch.zeros(1))
    out = cem(objective, noise, -1.0, 1.0, torch.zeros(1, 1), 0.5, elite_frac=1.0, alpha=0.0)
    torch.testing.assert_close(out, torch.tensor([[(0.5 - 0.25 + 0.1) / 3]]))
    # alpha weighs the old mean: with alpha = 0.1 the result is 0.1·0 + 0.9·elite mean.
    out = cem(objective, noise, -1.0, 1.0, torch.zeros(1, 1), 0.5, elite_frac=1.0, alpha=0.1)
    torch.testing.assert_close(out, torch.tensor([[0.9 * (0.5 - 0.25 + 0.1) / 3]]))


def test_mppi_zero_noise_returns_prior_and_weights_favour_better() -> None:
    prior = torch.tensor([[0.3], [-0.2], [2.0]])
    out = mppi(TrajectoryObjective(Integrator(), track(0.0), torch.zeros(1)), torch.zeros(8, 3, 1),
               prior, -1.0, 1.0, 0.5)
    torch.testing.assert_close(out, torch.tensor([[0.3], [-0.2], [1.0]]))  # clipped prior
    # Two candidates ±0.1 around 0 (beta = 0: white noise), target 0.1: the plan moves to +.
    noise = torch.tensor([[[1.0]], [[-1.0]]])
    out = mppi(TrajectoryObjective(Integrator(), track(0.1), torch.zeros(1)), noise,
               torch.zeros(1, 1), -1.0, 1.0, 0.1, lambda_=0.001, beta=0.0)
    assert 0.09 < out.item() <= 0.1 + 1e-6


def test_smooth_noise_is_ar1_with_unit_variance() -> None:
    z = torch.randn(200_000, 6, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(smooth_noise(z, 0.0), z)
    e = smooth_noise(z, 0.6)
    torch.testing.assert_close(e[:, 0], z[:, 0])
    torch.testing.assert_close(e.var(0).flatten(), torch.ones(6), atol=0.02, rtol=0)
    lag1 = (e[:, 1:] * e[:, :-1]).mean().item()
    lag2 = (e[:, 2:] * e[:, :-2]).mean().item()
    assert abs(lag1 - 0.6) < 0.01 and abs(lag2 - 0.36) < 0.01
    # beta = 1: the first draw repeated over the horizon.
    e1 = smooth_noise(z[:10], 1.0)
    torch.testing.assert_close(e1, z[:10, :1].expand(10, 6, 1))
    with pytest.raises(ValueError, match="beta"):
        smooth_noise(z, 1.5)


def test_shift_plan() -> None:
    plan = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    torch.testing.assert_close(shift_plan(plan), torch.tensor([[2.0, 20], [3, 30], [3, 30]]))
    torch.testing.assert_close(shift_plan(plan, 0.0), torch.tensor([[2.0, 20], [3, 30], [0, 0]]))
    torch.testing.assert_close(shift_plan(plan, torch.tensor([5.0, 6.0]))[-1],
                               torch.tensor([5.0, 6.0]))
    assert torch.equal(plan[0], torch.tensor([1.0, 10.0]))  # input untouched


# --------------------------------------------------------------------------------------------
# Stateful classes: warm start, determinism
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fill", ["last", "mid"])
def test_mppi_warm_start_shifts_previous_plan(fill: str) -> None:
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 2.0])
    planner = MPPI(MPPIConfig(num_candidates=64, horizon=5, warm_start_fill=fill), low, high)
    gen = torch.Generator().manual_seed(0)
    obs, pred, rew = torch.zeros(2), Integrator(), track(torch.tensor([0.7, 1.5]))
    planner.plan(obs, pred, rew, gen)
    first = planner.last_plan.clone()
    # The very first call starts from the midpoint of the bounds.
    torch.testing.assert_close(planner.last_prior, torch.tensor([[0.0, 1.0]]).expand(5, 2))
    planner.plan(obs, pred, rew, gen)
    expected = shift_plan(first, None if fill == "last" else torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(planner.last_prior, expected)
    # Behavioural check: with negligible noise the new plan *is* the shifted previous plan.
    quiet = MPPI(MPPIConfig(num_candidates=16, horizon=5, noise_sigma=1e-7), low, high)
    quiet.last_plan = first.clone()
    quiet.plan(obs, pred, constant_reward, gen)
    torch.testing.assert_close(quiet.last_plan, shift_plan(first), atol=1e-5, rtol=0)
    # reset() forgets the warm start.
    planner.reset()
    assert planner.last_plan is None
    planner.plan(obs, pred, rew, gen)
    torch.testing.assert_close(planner.last_prior, torch.tensor([[0.0, 1.0]]).expand(5, 2))


def test_cem_warm_start_is_optional() -> None:
    pred, rew, obs = Integrator(), track(0.5), torch.zeros(1)
    gen = torch.Generator().manual_seed(0)
    cold = CEM(CEMConfig(num_candidates=32, horizon=3, warm_start=False), LOW1, HIGH1)
    cold.plan(obs, pred, rew, gen)
    cold.plan(obs, pred, rew, gen)
    torch.testing.assert_close(cold.last_prior, torch.zeros(3, 1))  # the paper: no warm start
    warm = CEM(CEMConfig(num_candidates=32, horizon=3), LOW1, HIGH1)  # the default: warm
    warm.plan(obs, pred, rew, gen)
    first = warm.last_plan.clone()
    warm.plan(obs, pred, rew, gen)
    torch.testing.assert_close(warm.last_prior, shift_plan(first))


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_same_seed_same_action(name: str) -> None:
    low, high = torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 0.5])
    pred, rew, obs = Integrator(), track(torch.tensor([0.3, -0.4])), torch.zeros(2)

    def episode(seed: int) -> tuple[Tensor, Tensor]:
        planner = make_planner(planner_config(name, num_candidates=50, horizon=4), low, high)
        gen = torch.Generator().manual_seed(seed)
        acts = torch.stack([planner.plan(obs, pred, rew, gen) for _ in range(3)])
        return acts, planner.last_plan

    a1, p1 = episode(7)
    a2, p2 = episode(7)
    a3, _ = episode(8)
    assert torch.equal(a1, a2) and torch.equal(p1, p2)
    assert not torch.equal(a1, a3)
    # The global RNG is not used: reseeding it changes nothing.
    torch.manual_seed(123)
    a4, _ = episode(7)
    assert torch.equal(a1, a4)


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_closed_loop_reaches_target(name: str) -> None:
    # Receding horizon on the true integrator (paper's 500 candidates, horizon 2): x settles at
    # the target, which needs two steps at the bound for the second coordinate. Judged on the
    # mean error over the last 4 of 12 steps (random shooting jitters around the target).
    target = torch.tensor([0.8, -1.7])
    planner = make_planner(planner_config(name, horizon=2,
                                          **({"lambda_": 0.05} if name == "mppi" else {})),
                           -torch.ones(2), torch.ones(2))
    assert isinstance(planner, Planner)
    pred, rew = Integrator(), track(target)
    gen = torch.Generator().manual_seed(0)
    x, errors = torch.zeros(2), []
    for _ in range(12):
        x = x + planner.plan(x, pred, rew, gen)
        errors.append((x - target).abs().mean().item())
    tol = 0.25 if name == "random_shooting" else 0.1  # 20-seed worst: 0.14 and 0.03
    assert sum(errors[-4:]) / 4 < tol, errors


# --------------------------------------------------------------------------------------------
# Validation and factory
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, field, value",
    [
        (RandomShootingConfig, "num_candidates", 0),
        (RandomShootingConfig, "horizon", 0),
        (RandomShootingConfig, "horizon", 2.5),
        (RandomShootingConfig, "discount", 0.0),
        (CEMConfig, "elite_frac", 0.0),
        (CEMConfig, "elite_frac", 1.5),
        (CEMConfig, "alpha", 1.0),
        (CEMConfig, "num_iterations", 0),
        (CEMConfig, "init_std", -1.0),
        (CEMConfig, "warm_start_fill", "zeros"),
        (MPPIConfig, "noise_sigma", 0.0),
        (MPPIConfig, "lambda_", 0.0),
        (MPPIConfig, "beta", 1.5),
        (MPPIConfig, "beta", float("nan")),
        (MPPIConfig, "num_candidates", True),
    ],
)
def test_config_validation_names_field(cls, field: str, value) -> None:
    with pytest.raises(ValueError, match=rf"{cls.__name__}\.{field}="):
        cls(**{field: value})


def test_config_defaults_are_paper_values() -> None:
    rs, c = RandomShootingConfig(), CEMConfig()
    assert (rs.num_candidates, rs.horizon, rs.discount) == (500, 10, 1.0)
    assert (c.num_iterations, c.elite_frac, c.alpha) == (5, 0.1, 0.1)
    assert c.warm_start and (c.beta, c.hold) == (0.0, 1)  # ours: warm start on by default
    assert MPPIConfig().warm_start is True
    for cls in (RandomShootingConfig, CEMConfig, MPPIConfig):
        assert all(f.type for f in dataclasses.fields(cls))


@pytest.mark.parametrize(
    "low, high, match",
    [
        ([0.0, 1.0], [1.0, 1.0], "low must be < high"),
        ([0.0, 1.0], [1.0], "high has shape"),
        ([[0.0]], [[1.0]], "1-D"),
        ([0.0], [float("inf")], "finite"),
    ],
)
def test_bounds_validation(low, high, match: str) -> None:
    for cls in (RandomShooting, CEM, MPPI):
        with pytest.raises(ValueError, match=match):
            cls(None, low, high)


def test_plan_rejects_batched_obs_and_pure_functions_check_shapes() -> None:
    planner = RandomShooting(None, LOW1, HIGH1)
    with pytest.raises(ValueError, match="obs"):
        planner.plan(torch.zeros(3, 1), Integrator(), track(0.0), torch.Generator())
    objective = TrajectoryObjective(Integrator(), track(0.0), torch.zeros(1))
    with pytest.raises(ValueError, match="low"):
        random_shooting(objective, torch.rand(4, 2, 3), torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="prev_plan"):
        mppi(objective, torch.randn(4, 2, 1), torch.zeros(3, 2), -1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="4 planning steps for a horizon of 3"):
        mppi(objective, torch.randn(4, 4, 1), torch.zeros(3, 1), -1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="elite_frac"):
        cem(objective, torch.randn(1, 4, 2, 1), -1.0, 1.0, torch.zeros(2, 1), 0.5, elite_frac=0.0)


def test_make_planner_factory() -> None:
    p = make_planner(planner_config("cem", num_iterations=3, warm_start=True), [-1.0], [1.0])
    assert isinstance(p, CEM) and p.config.num_iterations == 3 and p.config.warm_start
    assert isinstance(make_planner(planner_config("random_shooting"), [-1.0], [1.0]),
                      RandomShooting)
    assert isinstance(make_planner(MPPIConfig(), [-1.0], [1.0]), MPPI)
    with pytest.raises(ValueError, match="allowed: random_shooting, cem, mppi"):
        planner_config("ilqr")
    with pytest.raises(ValueError, match=r"\['elite_frac'\].*allowed: num_candidates"):
        planner_config("mppi", elite_frac=0.2)
    with pytest.raises(ValueError, match=r"MPPIConfig\.lambda_="):
        planner_config("mppi", lambda_=-1.0)
    with pytest.raises(ValueError, match="is not a planner config"):
        make_planner({"name": "mppi"}, [-1.0], [1.0])  # type: ignore[arg-type]


def test_planner_configs_carry_their_name() -> None:
    """Each config names its planner; the name cannot be changed by replace, only by
    switch_planner, which keeps the planning problem and takes the new planner's defaults."""
    assert [planner_config(n).name for n in PLANNER_NAMES] == list(PLANNER_NAMES)
    assert dataclasses.fields(CEMConfig)[0].name == "name"
    with pytest.raises(ValueError, match=r"CEMConfig\.name='mppi' must be 'cem'"):
        dataclasses.replace(CEMConfig(), name="mppi")
    c = CEMConfig(num_candidates=64, horizon=7, discount=0.9, warm_start=True)
    assert switch_planner(c, "mppi") == MPPIConfig(num_candidates=64, horizon=7, discount=0.9)
    assert switch_planner(c, "cem") is c


def test_one_planner_registry() -> None:
    """The ``PlannerConfig`` union and every list of names are the registry's."""
    assert typing.get_args(PlannerConfig) == PLANNER_CONFIGS
    assert [c().name for c in PLANNER_CONFIGS] == list(PLANNER_NAMES)


def test_config_fields_keep_their_order() -> None:
    """Config files, config.json and checkpoints list the fields in this order."""
    assert planner_settings("random_shooting") == ("num_candidates", "horizon", "discount")
    assert planner_settings("cem") == (
        "num_candidates", "horizon", "num_iterations", "elite_frac", "alpha", "init_std", "beta",
        "hold", "warm_start", "warm_start_fill", "discount")
    assert planner_settings("mppi") == (
        "num_candidates", "horizon", "noise_sigma", "lambda_", "beta", "hold", "warm_start",
        "warm_start_fill", "discount")
    assert (CEMConfig().beta, MPPIConfig().beta) == (0.0, 0.5)


# --------------------------------------------------------------------------------------------
# The objective and its hooks
# --------------------------------------------------------------------------------------------


def test_objective_default_is_rollout_returns() -> None:
    actions = torch.randn(6, 4, 2, generator=torch.Generator().manual_seed(0))
    pred, rew, obs = Integrator(), track(torch.tensor([0.3, -0.1])), torch.tensor([0.2, 0.0])
    assert torch.equal(TrajectoryObjective(pred, rew, obs, 0.9)(actions),
                       rollout_returns(pred, rew, obs, actions, 0.9))
    cfg = planner_config("mppi", discount=0.8)
    assert make_objective(cfg, pred, rew, obs).discount == 0.8


def test_terminal_value_is_discounted_and_changes_the_winner() -> None:
    # Candidates 0.1 and 0.5 held for 2 steps from 0: x = (0.1, 0.2) and (0.5, 1.0).
    noise = torch.tensor([[[0.55], [0.55]], [[0.75], [0.75]]])  # -1 + 2u: 0.1 and 0.5
    pred, rew = Integrator(), track(0.0)
    plain = TrajectoryObjective(pred, rew, torch.zeros(1), discount=0.5)
    best, returns = random_shooting(plain, noise, -1.0, 1.0)
    torch.testing.assert_close(returns, torch.tensor([-(0.01 + 0.5 * 0.04), -(0.25 + 0.5 * 1.0)]))
    torch.testing.assert_close(best, torch.full((2, 1), 0.1))
    # A value of 10·x at the last state, discounted by 0.5²: it now pays to go far.
    valued = dataclasses.replace(plain, terminal_value=lambda s: 10.0 * s[:, 0])
    best, returns = random_shooting(valued, noise, -1.0, 1.0)
    torch.testing.assert_close(returns, torch.tensor([-(0.01 + 0.5 * 0.04) + 0.25 * 2.0,
                                                      -(0.25 + 0.5 * 1.0) + 0.25 * 10.0]))
    torch.testing.assert_close(best, torch.full((2, 1), 0.5))


class MemberPredictor:
    """M members; member m (rows m·N .. m·N + N − 1) predicts x' = x + a + m·a², so the members
    disagree more the larger the action."""

    def __init__(self, members: int) -> None:
        self.members, self.batches = members, []

    def initial_state(self, batch_size: int) -> None:
        self.batches.append(batch_size)
        return None

    def __call__(self, obs: Tensor, act: Tensor, state: None) -> tuple[Tensor, None]:
        m = torch.arange(self.members, dtype=act.dtype).repeat_interleave(obs.shape[0]
                                                                          // self.members)
        return obs + act + m.unsqueeze(1) * act**2, state


def test_members_aggregate_mean_and_disagreement_penalty() -> None:
    a = torch.tensor([0.2, 1.0])
    actions = a.reshape(2, 1, 1)  # two candidates, one step
    pred = MemberPredictor(3)  # member returns a + m·a², m = 0, 1, 2
    mean = TrajectoryObjective(pred, first_coord, torch.zeros(1), members=3)(actions)
    assert pred.batches == [6]  # all members of all candidates in one batch
    torch.testing.assert_close(mean, a + a**2)
    std = a**2 * torch.tensor([0.0, 1.0, 2.0]).std(unbiased=False)
    penalised = TrajectoryObjective(pred, first_coord, torch.zeros(1), members=3,
                                    aggregate=mean_minus_std(4.0))(actions)
    torch.testing.assert_close(penalised, a + a**2 - 4.0 * std)
    # The mean prefers the large action, the disagreement penalty the small one.
    assert mean.argmax().item() == 1 and penalised.argmax().item() == 0
    # Per-candidate start states are tiled with the actions.
    per_candidate = TrajectoryObjective(pred, first_coord, torch.tensor([[1.0], [2.0]]),
                                        members=3)(actions)
    torch.testing.assert_close(per_candidate, a + a**2 + torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="members"):
        TrajectoryObjective(pred, first_coord, torch.zeros(1), members=0)


@pytest.mark.parametrize("name", PLANNER_NAMES)
def test_plan_objective_is_plan_with_the_objective_given(name: str) -> None:
    """plan() maximises make_objective(config, ...); plan_objective takes one, hooks included."""
    pred, rew = Integrator(), track(0.5)
    obs = torch.zeros(1)
    a, b = small_planner(name), small_planner(name)
    for _ in range(2):
        act_a = a.plan(obs, pred, rew, torch.Generator().manual_seed(3))
        act_b = b.plan_objective(make_objective(b.config, pred, rew, obs),
                                 torch.Generator().manual_seed(3))
        assert torch.equal(act_a, act_b) and torch.equal(a.last_plan, b.last_plan)
    # A terminal value rewarding x well beyond the target pulls the plan up.
    c = small_planner(name)
    valued = make_objective(c.config, pred, rew, obs, terminal_value=lambda s: 100.0 * s[:, 0])
    assert c.plan_objective(valued, torch.Generator().manual_seed(3)) > act_a


# --------------------------------------------------------------------------------------------
# Export-friendliness: the pure functions trace with the noise as a graph input
# --------------------------------------------------------------------------------------------


class _MLPModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))

    def initial_state(self, batch_size: int) -> None:
        return None

    def forward(self, obs: Tensor, act: Tensor, state: None) -> tuple[Tensor, None]:
        return obs + self.net(torch.cat([obs, act], -1)), state


def _task_reward(obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
    return next_obs[:, 0] - 0.05 * (act**2).sum(-1)


class _PlanModule(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.model = kind, _MLPModel()
        self.register_buffer("low", -torch.ones(2))
        self.register_buffer("high", torch.ones(2))

    def forward(self, obs: Tensor, noise: Tensor, prior: Tensor) -> Tensor:
        objective = TrajectoryObjective(self.model, _task_reward, obs)
        if self.kind == "random_shooting":
            return random_shooting(objective, noise, self.low, self.high)[0]
        if self.kind == "cem":
            return cem(objective, noise, self.low, self.high, prior, 0.5)
        return mppi(objective, noise, prior, self.low, self.high, 0.3, 0.5)


def _export_inputs(kind: str, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    if kind == "random_shooting":
        noise = torch.rand(32, 4, 2, generator=g)
    elif kind == "cem":
        noise = torch.randn(3, 32, 4, 2, generator=g)
    else:
        noise = torch.randn(32, 4, 2, generator=g)
    return torch.randn(3, generator=g), noise, 0.1 * torch.randn(4, 2, generator=g)


@pytest.mark.parametrize("kind", PLANNER_NAMES)
def test_pure_planners_trace_with_torch_export(kind: str) -> None:
    torch.manual_seed(0)
    module = _PlanModule(kind).eval()
    with torch.no_grad():
        exported = torch.export.export(module, _export_inputs(kind, 0))
        # New noise through the traced graph gives the eager answer: nothing was baked in.
        fresh = _export_inputs(kind, 1)
        torch.testing.assert_close(exported.module()(*fresh), module(*fresh))


class _HookedPlanModule(_PlanModule):
    """MPPI over an objective with both hooks: 3 members, a disagreement penalty, a terminal
    value."""

    def forward(self, obs: Tensor, noise: Tensor, prior: Tensor) -> Tensor:
        objective = TrajectoryObjective(self.model, _task_reward, obs, 0.9, members=3,
                                        terminal_value=lambda s: s.sum(-1),
                                        aggregate=mean_minus_std(0.5))
        return mppi(objective, noise, prior, self.low, self.high, 0.3, 0.5)


def test_objective_hooks_trace_with_torch_export() -> None:
    torch.manual_seed(0)
    module = _HookedPlanModule("mppi").eval()
    with torch.no_grad():
        exported = torch.export.export(module, _export_inputs("mppi", 0))
        fresh = _export_inputs("mppi", 1)
        torch.testing.assert_close(exported.module()(*fresh), module(*fresh))


_HAS_ONNX = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))


@pytest.mark.slow
@pytest.mark.skipif(not _HAS_ONNX, reason="onnx, onnxscript and onnxruntime needed")
@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_pure_planners_export_to_onnx(kind: str) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    module = _PlanModule(kind).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, _export_inputs(kind, 0), dynamo=True, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString())
    fresh = _export_inputs(kind, 1)
    names = [i.name for i in session.get_inputs()]
    (out,) = session.run(None, {n: t.numpy() for n, t in zip(names, fresh, strict=True)})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), module(*fresh), atol=1e-5, rtol=1e-5)


def test_hold_stretches_each_planning_step_over_control_steps() -> None:
    """hold=k: the noise has ceil(H/k) planning steps, each held for k control steps."""
    noise = torch.arange(3.0).reshape(1, 3, 1)
    assert hold_steps(noise, 7)[0, :, 0].tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert hold_steps(noise, 3) is noise
    with pytest.raises(ValueError, match="3 planning steps for a horizon of 2"):
        hold_steps(noise, 2)
    cfg = MPPIConfig(num_candidates=8, horizon=7, hold=3)
    assert cfg.noise_shape(2) == (8, 3, 2)
    assert CEMConfig(num_iterations=2, num_candidates=8, horizon=6, hold=2).noise_shape(1) == (
        2, 8, 3, 1)
    with pytest.raises(ValueError, match=r"MPPIConfig.hold=9 is longer than the horizon \(7\)"):
        MPPIConfig(horizon=7, hold=9)
    # Planned with zero-mean noise around a zero prior, the MPPI plan is piecewise constant.
    pred, rew = Integrator(), track(0.5)
    planner = MPPI(MPPIConfig(num_candidates=64, horizon=6, hold=3, beta=0.0, warm_start=False),
                   LOW1, HIGH1)
    planner.plan(torch.zeros(1), pred, rew, torch.Generator().manual_seed(0))
    plan = planner.last_plan[:, 0]
    assert torch.equal(plan[:3], plan[:1].expand(3)) and torch.equal(plan[3:], plan[3:4].expand(3))
    assert plan[0] != plan[3]


def test_cem_coloured_noise_correlates_candidates_along_the_horizon() -> None:
    """beta > 0: CEM's samples are AR(1)-correlated in time (iCEM), beta = 0 is white."""
    captured = []

    class Spy(Integrator):
        def __call__(self, obs, act, state):
            captured.append(act.clone())
            return super().__call__(obs, act, state)

    for beta in (0.0, 0.9):
        captured.clear()
        cfg = CEMConfig(num_candidates=4000, horizon=2, num_iterations=1, beta=beta,
                        init_std=0.1, warm_start=False)
        CEM(cfg, LOW1, HIGH1).plan(torch.zeros(1), Spy(), track(0.0),
                                   torch.Generator().manual_seed(1))
        corr = torch.corrcoef(torch.stack([captured[0][:, 0], captured[1][:, 0]]))[0, 1]
        assert abs(float(corr) - beta) < 0.06
