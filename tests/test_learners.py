"""Learners: GrBAL (MAML) maths, MB+DE test-time-only updates, ReBAL, factory, toy meta-learning."""

from __future__ import annotations

import pytest
import torch

from adaptive_control.learners import (
    MB,
    MBDE,
    GrBAL,
    GrBALConfig,
    MBConfig,
    MBDEConfig,
    ReBAL,
    ReBALConfig,
    inner_update,
    make_learner,
)
from adaptive_control.models.dynamics import MLPDynamics
from adaptive_control.types import Transitions, WindowBatch

OBS, ACT = 2, 1
F64 = torch.float64


def window_batch(b: int = 3, m: int = 4, k: int = 5, seed: int = 0) -> WindowBatch:
    g = torch.Generator().manual_seed(seed)

    def tr(t: int) -> Transitions:
        obs = torch.randn(b, t, OBS, generator=g, dtype=F64)
        act = torch.randn(b, t, ACT, generator=g, dtype=F64)
        gain = torch.randn(b, 1, OBS, generator=g, dtype=F64)  # per-task dynamics
        return Transitions(obs, act, obs + gain * act + 0.1 * torch.tanh(obs))

    return WindowBatch(tr(m), tr(k))


def task(batch: WindowBatch, i: int) -> tuple[Transitions, Transitions]:
    p, f = batch.past, batch.future
    return (Transitions(p.obs[i], p.act[i], p.next_obs[i]),
            Transitions(f.obs[i], f.act[i], f.next_obs[i]))


def grbal(**kw: object) -> GrBAL:
    cfg = GrBALConfig(**{"hidden_sizes": (5,), "inner_lr": 0.3, **kw})  # type: ignore[arg-type]
    return GrBAL(OBS, ACT, cfg).double()


def meta_grad(learner: GrBAL, batch: WindowBatch) -> list[torch.Tensor]:
    return list(torch.autograd.grad(learner.loss(batch), list(learner.model.parameters())))


# --- inner update ---------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2])
def test_inner_update_equals_hand_sgd(steps: int) -> None:
    model = MLPDynamics(OBS, ACT, (6, 6)).double()
    past, _ = task(window_batch(), 0)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    hand = params
    for _ in range(steps):
        loss = model.functional_loss(hand, past)
        grads = torch.autograd.grad(loss, list(hand.values()))
        hand = {k: (v - 0.05 * g).detach().requires_grad_(True)
                for (k, v), g in zip(hand.items(), grads, strict=True)}
    got = inner_update(model, params, past, 0.05, steps=steps, create_graph=False)
    assert got.keys() == params.keys()
    for k in params:
        assert torch.allclose(got[k], hand[k], atol=1e-14), k
        assert not torch.equal(got[k], params[k])


def test_inner_update_per_parameter_lr() -> None:
    model = MLPDynamics(OBS, ACT, (4,)).double()
    past, _ = task(window_batch(), 1)
    params = {k: v.detach() for k, v in model.named_parameters()}
    lrs = {k: torch.rand(v.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
           for k, v in params.items()}
    grads = torch.func.grad(model.functional_loss)(params, past)
    got = inner_update(model, params, past, lrs, steps=1, create_graph=False)
    for k in params:
        assert torch.allclose(got[k], params[k] - lrs[k] * grads[k], atol=1e-14)


def test_inner_step_norm_limit_scales_large_gradients_and_leaves_small_ones_exact() -> None:
    model = MLPDynamics(OBS, ACT, (6,)).double()
    past, _ = task(window_batch(), 0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    grads = torch.func.grad(model.functional_loss)(params, past)
    norm = float(torch.sqrt(sum((g * g).sum() for g in grads.values())))
    plain = inner_update(model, params, past, 0.1, create_graph=False)
    # below the limit: bit for bit the plain step
    loose = inner_update(model, params, past, 0.1, create_graph=False, max_norm=2 * norm)
    assert all(torch.equal(loose[k], plain[k]) for k in params)
    # above it: the same direction, scaled to the limit
    tight = inner_update(model, params, past, 0.1, create_graph=False, max_norm=norm / 4)
    step = torch.sqrt(sum(((params[k] - tight[k]) ** 2).sum() for k in params))
    assert abs(float(step) - 0.1 * norm / 4) < 1e-12
    for k in params:
        torch.testing.assert_close(params[k] - tight[k], (params[k] - plain[k]) / 4)


def test_norm_limited_meta_gradient_is_finite_at_a_zero_inner_gradient() -> None:
    # (its value is checked against finite differences with the meta-gradients below)
    learner = grbal(inner_max_norm=0.05)
    batch = window_batch()
    # an all-masked past window has an exactly zero inner gradient: no NaN from its norm
    model = learner.model
    past, fut = task(batch, 0)
    none = torch.zeros(past.obs.shape[0], dtype=F64)
    adapted = inner_update(model, model.params(), past, 0.3, create_graph=True, mask=none,
                           max_norm=0.05)
    grads = torch.autograd.grad(model.functional_loss(adapted, fut), list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)


def test_inner_max_norm_is_refused_when_negative() -> None:
    with pytest.raises(ValueError, match="inner_max_norm=-1.*>= 0"):
        GrBALConfig(inner_max_norm=-1.0)


# --- meta-gradients -------------------------------------------------------------------------


@pytest.mark.parametrize("max_norm", [0.0, 0.05])
def test_second_order_meta_gradient_matches_finite_differences(max_norm: float) -> None:
    learner = grbal(inner_max_norm=max_norm)
    batch = window_batch()
    if max_norm:  # the limit binds on these windows
        assert learner.loss(batch).item() != grbal().loss(batch).item()
    analytic = meta_grad(learner, batch)
    eps = 1e-6
    numeric = []
    with torch.no_grad():
        for p in learner.model.parameters():
            g = torch.zeros_like(p)
            for idx in range(p.numel()):
                orig = p.view(-1)[idx].item()
                p.view(-1)[idx] = orig + eps
                up = learner.loss(batch).item()
                p.view(-1)[idx] = orig - eps
                down = learner.loss(batch).item()
                p.view(-1)[idx] = orig
                g.view(-1)[idx] = (up - down) / (2 * eps)
            numeric.append(g)
    for a, n in zip(analytic, numeric, strict=True):
        assert torch.allclose(a, n, rtol=1e-5, atol=1e-8), (a - n).abs().max()


def test_first_order_matches_fomaml_and_differs_from_second_order() -> None:
    batch = window_batch()
    fo, so = grbal(first_order=True), grbal()
    g_fo, g_so = meta_grad(fo, batch), meta_grad(so, batch)
    # FOMAML by hand: gradient of each task's future loss at its adapted weights, averaged.
    model = fo.model
    theta = {k: v.detach() for k, v in model.named_parameters()}
    hand = {k: torch.zeros_like(v) for k, v in theta.items()}
    for i in range(batch.batch_size):
        past, fut = task(batch, i)
        g_in = torch.func.grad(model.functional_loss)(theta, past)
        adapted = {k: (theta[k] - 0.3 * g_in[k]).requires_grad_(True) for k in theta}
        g_out = torch.autograd.grad(model.functional_loss(adapted, fut), list(adapted.values()))
        for k, g in zip(adapted, g_out, strict=True):
            hand[k] += g / batch.batch_size
    for g, k in zip(g_fo, theta, strict=True):
        assert torch.allclose(g, hand[k], atol=1e-12), k
    assert max(float((a - b).abs().max()) for a, b in zip(g_fo, g_so, strict=True)) > 1e-4


def test_vmapped_meta_loss_equals_mean_of_looped_task_losses() -> None:
    learner = grbal(inner_steps=2)
    batch = window_batch(b=4)
    model = learner.model
    per_task = []
    for i in range(batch.batch_size):
        past, fut = task(batch, i)
        adapted = inner_update(model, model.params(), past, 0.3, steps=2, create_graph=True)
        per_task.append(model.functional_loss(adapted, fut))
    looped = torch.stack(per_task).mean()
    vmapped = learner.loss(batch)
    assert torch.allclose(vmapped, looped, atol=1e-14)
    params = list(model.parameters())
    for a, b in zip(torch.autograd.grad(vmapped, params), torch.autograd.grad(looped, params),
                    strict=True):
        assert torch.allclose(a, b, atol=1e-14)


@pytest.mark.parametrize("steps,first_order,gains,max_norm", [
    (1, False, False, 0.0), (2, False, False, 0.0), (2, True, False, 0.0),
    (1, False, True, 0.0), (2, False, True, 0.0), (2, True, True, 0.0),
    (1, False, True, 0.05), (2, False, True, 0.05), (2, True, True, 0.05),
    (1, False, False, 0.05), (1, False, True, 100.0)])
def test_lowrank_meta_loss_equals_vmap(steps: int, first_order: bool, gains: bool,
                                       max_norm: float) -> None:
    batch = window_batch(b=4)
    kw = {"hidden_sizes": (6, 5), "inner_steps": steps, "first_order": first_order,
          "action_gains": gains, "gain_inner_lr": 0.5, "inner_max_norm": max_norm}
    vm, lr = grbal(**kw), grbal(**kw, meta_impl="lowrank")
    if 0 < max_norm < 1:  # the limit binds: the clipped step differs from the plain one
        plain = grbal(**{**kw, "inner_max_norm": 0.0}, meta_impl="lowrank")
        assert not torch.allclose(plain.task_losses(batch), lr.task_losses(batch), atol=1e-6)
    assert torch.allclose(vm.task_losses(batch), lr.task_losses(batch), atol=1e-13)
    for a, b in zip(meta_grad(vm, batch), meta_grad(lr, batch), strict=True):
        assert torch.allclose(a, b, atol=1e-13)
    with torch.no_grad():  # usable for validation without a graph
        assert torch.allclose(lr.loss(batch), vm.loss(batch), atol=1e-13)


def test_meta_sgd_inner_lrs_are_parameters_and_get_gradients() -> None:
    learner = grbal(learn_inner_lr=True)
    batch = window_batch()
    lr_params = list(learner.inner_lrs.parameters())
    ids = {id(p) for p in learner.parameters()}
    assert lr_params and all(id(p) in ids for p in lr_params)
    lrs = learner.inner_lr()
    assert isinstance(lrs, dict)
    for k, p in learner.model.named_parameters():
        # float32 at construction, then .double(): equal to 0.3 up to float32 rounding.
        assert lrs[k].shape == p.shape and torch.allclose(lrs[k], torch.full_like(p, 0.3))
    # Initialised to inner_lr, Meta-SGD computes the same meta-loss as plain MAML.
    assert torch.allclose(learner.loss(batch), grbal().loss(batch), rtol=1e-6)
    learner.loss(batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lr_params)
    opt = torch.optim.SGD(learner.parameters(), lr=0.1)
    opt.step()
    assert not all(torch.allclose(p, torch.full_like(p, 0.3)) for p in lr_params)


def test_grbal_adapt_is_fresh_each_call_and_uses_adapted_params() -> None:
    learner = grbal(inner_steps=1)
    batch = window_batch()
    past, fut = task(batch, 0)
    theta = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
    p1 = learner.adapt(past)
    p2 = learner.adapt(past)
    a, _ = p1(fut.obs, fut.act, p1.initial_state(len(fut)))
    b, _ = p2(fut.obs, fut.act, None)
    assert torch.equal(a, b)
    assert not a.requires_grad
    for k, v in learner.model.named_parameters():
        assert torch.equal(v, theta[k])
    expected = learner.model.functional_forward(learner.adapted_params(past), fut.obs, fut.act)
    assert torch.allclose(a, expected)
    assert not torch.allclose(a, learner.model(fut.obs, fut.act))


# --- MB and MB+DE ---------------------------------------------------------------------------


def test_mb_trains_on_whole_window_and_does_not_adapt() -> None:
    learner = MB(OBS, ACT, MBConfig(hidden_sizes=(5,))).double()
    batch = window_batch()
    whole = Transitions(*(torch.cat([a, b], 1) for a, b in (
        (batch.past.obs, batch.future.obs), (batch.past.act, batch.future.act),
        (batch.past.next_obs, batch.future.next_obs))))
    assert torch.allclose(learner.loss(batch), learner.model.loss(whole))
    past, fut = task(batch, 0)
    pred, state = learner.adapt(past)(fut.obs, fut.act, None)
    assert state is None
    assert torch.equal(pred, learner.model(fut.obs, fut.act))


def test_mbde_changes_weights_only_at_test_time() -> None:
    learner = MBDE(OBS, ACT, MBDEConfig(hidden_sizes=(5,), online_steps=2, online_lr=0.1))
    learner = learner.double()
    batch = window_batch()
    past, fut = task(batch, 0)
    trained = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
    assert not any(p is v for p in learner.parameters() for v in learner.online_params().values())

    pred0 = learner.adapt(past)(fut.obs, fut.act, None)[0]
    online1 = learner.online_params()
    for k, v in learner.model.named_parameters():  # adapt never touches the trained weights
        assert torch.equal(v, trained[k])
        assert not torch.equal(online1[k], trained[k])
    assert not torch.allclose(pred0, learner.model(fut.obs, fut.act))

    # The online copy carries over: a second call continues from it.
    learner.adapt(past)
    online2 = learner.online_params()
    fresh = inner_update(learner.model, online1, past, 0.1, steps=2, create_graph=False)
    for k in trained:
        assert torch.allclose(online2[k], fresh[k], atol=1e-14)

    # Training (loss + optimiser step) moves the trained weights, not the online copy.
    opt = torch.optim.SGD(learner.parameters(), lr=0.1)
    opt.zero_grad()
    learner.loss(batch).backward()
    opt.step()
    for k, v in learner.online_params().items():
        assert torch.equal(v, online2[k])
    assert not torch.equal(learner.model.net[0].weight, trained["net.0.weight"])

    # reset() restores the (current) trained weights.
    learner.reset()
    for k, v in learner.model.named_parameters():
        assert torch.equal(learner.online_params()[k], v.detach())


# --- ReBAL ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rebal_adapt_depends_on_past_window_and_threads_delta_state(cell: str) -> None:
    learner = ReBAL(OBS, ACT, ReBALConfig(hidden_size=8, cell=cell)).double()  # type: ignore[arg-type]
    batch = window_batch(b=2)
    past_a, fut = task(batch, 0)
    past_b, _ = task(batch, 1)
    n = 4
    obs, act = fut.obs[:n], fut.act[:n]
    pa, pb = learner.adapt(past_a), learner.adapt(past_b)
    sa = pa.initial_state(n)
    assert sa.shape == (n, OBS)
    assert torch.allclose(sa[0], past_a.next_obs[-1] - past_a.obs[-1])
    ya, sa2 = pa(obs, act, sa)
    yb, _ = pb(obs, act, pb.initial_state(n))
    assert (ya - yb).abs().max() > 1e-4
    assert torch.allclose(sa2, ya - obs)  # the state is the predicted Δs
    # The predictor is one model.step from the encoded context (held fixed).
    step, _ = learner.model.step(obs, act, sa, learner.model.encode(past_a))
    assert torch.allclose(ya, step)
    loss = learner.loss(batch)
    loss.backward()
    assert learner.model.rnn.weight_hh_l0.grad is not None


# --- factory --------------------------------------------------------------------------------


def test_make_learner_names_configs_and_errors() -> None:
    assert isinstance(make_learner("GrBAL", OBS, ACT, GrBALConfig(hidden_sizes=(4,))), GrBAL)
    assert isinstance(make_learner("MB+DE", OBS, ACT, MBDEConfig(hidden_sizes=(4,))), MBDE)
    assert type(make_learner("mb", OBS, ACT, MBConfig(hidden_sizes=(4,)))) is MB
    assert isinstance(make_learner("rebal", OBS, ACT, ReBALConfig(hidden_size=4)), ReBAL)
    with pytest.raises(ValueError, match=r"unknown learner 'maml'.*mb, mbde, grbal, rebal"):
        make_learner("maml", OBS, ACT)
    with pytest.raises(ValueError, match="GrBALConfig"):
        make_learner("grbal", OBS, ACT, MBConfig())
    with pytest.raises(ValueError, match="inner_steps"):
        GrBALConfig(inner_steps=-1)
    with pytest.raises(ValueError, match="Meta-SGD"):
        GrBALConfig(meta_impl="lowrank", learn_inner_lr=True)
    with pytest.raises(ValueError, match=r"\[M, dim\]"):
        grbal().adapt(window_batch().past)


# --- the point of meta-learning -------------------------------------------------------------


def toy_linear_tasks(n: int, g: torch.Generator, m: int = 16, k: int = 16) -> WindowBatch:
    """x' = x + b_task * a with b_task ~ U(-2, 2): no single model fits all tasks."""
    b = torch.rand(n, 1, 1, generator=g) * 4 - 2
    x = torch.randn(n, m + k, 2, generator=g)
    a = torch.rand(n, m + k, 2, generator=g) * 2 - 1
    t = Transitions(x, a, x + b * a)
    return WindowBatch(t.slice_time(0, m), t.slice_time(m, m + k))


def test_grbal_learns_to_adapt_on_toy_linear_systems() -> None:
    learner = GrBAL(2, 2, GrBALConfig(hidden_sizes=(32, 32), inner_lr=0.5, seed=0))
    opt = torch.optim.Adam(learner.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    test = toy_linear_tasks(64, torch.Generator().manual_seed(1000))
    with torch.no_grad():
        post_before = learner.task_losses(test).mean().item()
    for _ in range(100):
        loss = learner.loss(toy_linear_tasks(10, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pre = learner.preadapt_losses(test).mean().item()
        post = learner.task_losses(test).mean().item()
    assert post < 0.5 * pre, (pre, post)
    assert post < 0.6 * post_before, (post_before, post)
    # The same through the test-time API: adapt on a task's past, predict its future.
    past, fut = task(test, 0)
    adapted = learner.adapt(past)(fut.obs, fut.act, None)[0]
    plain = learner.model(fut.obs, fut.act).detach()
    err = lambda y: (y - fut.next_obs).pow(2).mean().item()  # noqa: E731
    assert err(adapted) < err(plain)


def test_grbal_action_gains_adapt_toward_a_dead_actuator() -> None:
    # Data from the prior model itself with actuator 0 dead: the inner steps should move that
    # gain toward 0 and leave the healthy one near 1 (the structure that lets GrBAL identify a
    # failed motor that training never broke).
    g = torch.Generator().manual_seed(0)
    learner = GrBAL(3, 2, GrBALConfig(hidden_sizes=(16,), action_gains=True, inner_lr=1e-6,
                                      gain_inner_lr=10.0, inner_steps=5)).double()
    model = learner.model
    obs = torch.randn(64, 3, generator=g, dtype=F64)
    act = torch.rand(64, 2, generator=g, dtype=F64) * 2 - 1
    truth = model.params()
    truth["act_gain"] = torch.tensor([0.0, 1.0], dtype=F64)
    with torch.no_grad():
        nxt = model.functional_forward(truth, obs, act)
    adapted = learner.adapted_params(Transitions(obs, act, nxt))
    assert adapted["act_gain"][0] < 0.5
    assert abs(float(adapted["act_gain"][1]) - 1.0) < 0.25
    assert learner.inner_lr()["act_gain"] == 10.0  # type: ignore[index]


def test_rebal_action_gains_encoder_is_shared_across_motors() -> None:
    # One GRU for all motors: swapping two motors' commands and joint velocities swaps their
    # gains (what lets a failure learned on one motor be recognised on another).
    from adaptive_control.learners import ReBALGains

    g = torch.Generator().manual_seed(0)
    learner = make_learner("rebal", 4, 2, ReBALConfig(action_gains=True, hidden_size=6),
                           actuator_velocity_index=(2, 3)).double()
    assert isinstance(learner, ReBALGains)
    with torch.no_grad():
        learner.encoder.head.weight.normal_(generator=g)  # trained-like, not the zero init
    obs = torch.randn(7, 4, generator=g, dtype=F64)
    act = torch.randn(7, 2, generator=g, dtype=F64)
    nxt = obs + 0.1 * torch.randn(7, 4, generator=g, dtype=F64)
    swap = [0, 1, 3, 2]
    n = learner.model.normalizer  # per-motor statistics: make them equal so a swap is exact
    for buf in (n.act_mean, n.obs_mean, n.delta_mean):
        buf.zero_()
    for buf in (n.act_std, n.obs_std, n.delta_std):
        buf.fill_(1.0)
    gains = learner.gains(Transitions(obs, act, nxt))
    swapped = learner.gains(Transitions(obs[:, swap], act[:, [1, 0]], nxt[:, swap]))
    torch.testing.assert_close(swapped, gains.flip(0))
    assert not torch.allclose(gains, torch.ones(2, dtype=F64))
    # adaptation is the encoder's read of the window: another window, other predictions
    p1 = learner.adapt(Transitions(obs, act, nxt))
    p2 = learner.adapt(Transitions(obs, -act, nxt))
    x, a = obs[:3], act[:3]
    assert not torch.allclose(p1(x, a, None)[0], p2(x, a, None)[0])
    with pytest.raises(ValueError, match="joint velocity"):
        make_learner("rebal", 4, 2, ReBALConfig(action_gains=True))


def test_adaptation_describes_each_learner():
    from adaptive_control.learners import ReBALGains

    cases = {
        "mb": ("none", "none", "nothing", "none"),
        "mbde": ("online_sgd", "window", "weights", "online_weights"),
        "grbal": ("gradient", "window", "weights", "none"),
        "rebal": ("recurrent", "window", "context", "hidden"),
    }
    for name, want in cases.items():
        ad = make_learner(name, OBS, ACT).adaptation()
        assert (ad.kind, ad.inputs, ad.updates, ad.state) == want, name
    ad = make_learner("mbde", OBS, ACT, MBDEConfig(online_lr=0.05, online_steps=3)).adaptation()
    assert ad.sgd and ad.carries_weights and ad.inner_lr == 0.05 and ad.inner_steps == 3
    assert not ad.meta_sgd
    ad = make_learner("grbal", OBS, ACT, GrBALConfig(learn_inner_lr=True)).adaptation()
    assert ad.meta_sgd and set(ad.inner_lr) == {k for k, _ in GrBAL(OBS, ACT).model
                                                .named_parameters()}
    ad = make_learner("rebal", OBS, ACT, ReBALConfig(cell="gru", hidden_size=8)).adaptation()
    assert (ad.cell, ad.hidden_size) == ("gru", 8)
    gains = ReBALGains(4, 2, ReBALConfig(action_gains=True, hidden_size=8),
                       actuator_velocity_index=(2, 3))
    ad = gains.adaptation()
    assert (ad.kind, ad.updates, ad.hidden_size) == ("gains", "action_gains", 8)
    assert ad.encoder is gains.encoder


def test_masked_inner_update_and_lowrank_corrections_agree_with_the_plain_step():
    from adaptive_control.learners import lowrank_corrections, lowrank_forward, mlp_layers

    model = MLPDynamics(OBS, ACT, (8, 8)).double()
    g = torch.Generator().manual_seed(0)
    past = Transitions(torch.randn(5, OBS, generator=g, dtype=F64),
                       torch.randn(5, ACT, generator=g, dtype=F64),
                       torch.randn(5, OBS, generator=g, dtype=F64))
    theta = {k: v.detach() for k, v in model.named_parameters()}
    plain = inner_update(model, theta, past, 0.1, 2, create_graph=False)
    ones = inner_update(model, theta, past, 0.1, 2, create_graph=False,
                        mask=torch.ones(5, dtype=F64))
    zeros = inner_update(model, theta, past, 0.1, 2, create_graph=False,
                         mask=torch.zeros(5, dtype=F64))
    mask = torch.tensor([0, 1, 0, 1, 1], dtype=F64)
    garbage = Transitions(*(torch.where(mask[:, None] > 0, x, torch.nan)
                            for x in (past.obs, past.act, past.next_obs)))
    masked = inner_update(model, theta, garbage, 0.1, 2, create_graph=False, mask=mask)
    keep = mask > 0
    valid = inner_update(model, theta, Transitions(past.obs[keep], past.act[keep],
                                                   past.next_obs[keep]), 0.1, 2,
                         create_graph=False)
    for k in theta:
        torch.testing.assert_close(ones[k], plain[k])
        torch.testing.assert_close(zeros[k], theta[k])
        torch.testing.assert_close(masked[k], valid[k])
    # The factored form of the same steps predicts what the adapted weights predict.
    layers = mlp_layers(model)
    corr = lowrank_corrections(layers, model.net_inputs(past.obs, past.act), model.target(past),
                               0.1, 2, first_order=True, mask=torch.ones(5, dtype=F64))
    x = model.net_inputs(past.obs, past.act)
    out, _ = lowrank_forward(layers, x, corr, 0.1)
    want = model._functional_norm_delta(plain, past.obs, past.act)
    torch.testing.assert_close(out, want)
