"""Normaliser, MLPDynamics and RecurrentDynamics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adaptive_control.models.dynamics import MLPDynamics, RecurrentDynamics
from adaptive_control.models.normalizer import Normalizer
from adaptive_control.types import Transitions, WindowBatch

OBS, ACT = 3, 2


def transitions(*lead: int, t: int = 6, seed: int = 0, dtype: torch.dtype = torch.float64,
                scale: float = 1.0) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(*lead, t, OBS, generator=g, dtype=dtype) * scale + 2.0
    act = torch.rand(*lead, t, ACT, generator=g, dtype=dtype) * 2 - 1
    nxt = obs + 0.3 * torch.randn(*lead, t, OBS, generator=g, dtype=dtype) + 0.1
    return Transitions(obs, act, nxt)


def fitted(t: Transitions) -> Normalizer:
    return Normalizer.fit(t.obs, t.act, t.next_obs, dtype=torch.float64)


# --- Normalizer -----------------------------------------------------------------------------


def test_normalizer_fit_matches_numpy_and_accepts_arrays_with_leading_dims() -> None:
    t = transitions(4, t=10, scale=3.0)
    n = Normalizer.fit(t.obs.numpy(), t.act.numpy(), t.next_obs.numpy(), dtype=torch.float64)
    obs = t.obs.reshape(-1, OBS).numpy()
    delta = (t.next_obs - t.obs).reshape(-1, OBS).numpy()
    np.testing.assert_allclose(n.obs_mean.numpy(), obs.mean(0), rtol=1e-12)
    np.testing.assert_allclose(n.obs_std.numpy(), obs.std(0), rtol=1e-12)
    np.testing.assert_allclose(n.delta_mean.numpy(), delta.mean(0), rtol=1e-12)
    np.testing.assert_allclose(n.delta_std.numpy(), delta.std(0), rtol=1e-12)
    z = n.norm_obs(t.obs).reshape(-1, OBS)
    assert torch.allclose(z.mean(0), torch.zeros(OBS, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(OBS, dtype=torch.float64))
    assert n.obs_mean.dtype == torch.float64
    assert Normalizer.fit(t.obs, t.act, t.next_obs).obs_mean.dtype == torch.float32


def test_normalizer_round_trip_and_std_floor() -> None:
    t = transitions(t=20)
    obs = t.obs.clone()
    obs[:, 1] = 5.0  # a constant dimension
    n = Normalizer.fit(obs, t.act, t.next_obs, dtype=torch.float64)
    assert n.obs_std[1].item() == pytest.approx(1e-6)
    d = t.next_obs - t.obs
    assert torch.allclose(n.denorm_delta(n.norm_delta(d)), d, atol=1e-12)
    ident = Normalizer.identity(OBS, ACT, torch.float64)
    assert torch.equal(ident.norm_obs(t.obs), t.obs)
    assert torch.equal(ident.denorm_delta(d), d)


def test_normalizer_rejects_nan_and_inf_with_count() -> None:
    t = transitions(t=8)
    obs = t.obs.clone()
    obs[0, 0] = float("nan")
    obs[3, 2] = float("nan")
    obs[5, 1] = float("inf")
    with pytest.raises(ValueError, match=r"obs contains 3 non-finite"):
        Normalizer.fit(obs, t.act, t.next_obs)
    act = t.act.numpy().copy()
    act[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"act contains 1 non-finite"):
        Normalizer.fit(t.obs, act, t.next_obs)


def test_normalizer_shape_checks() -> None:
    t = transitions(t=8)
    with pytest.raises(ValueError, match="next_obs"):
        Normalizer.fit(t.obs, t.act, t.next_obs[:, :2])
    with pytest.raises(ValueError, match="actions"):
        Normalizer.fit(t.obs, t.act[:5], t.next_obs)


# --- MLPDynamics ----------------------------------------------------------------------------


def test_mlp_state_dict_holds_normalizer_and_round_trips() -> None:
    t = transitions(t=12)
    m = MLPDynamics(OBS, ACT, (8, 8), fitted(t)).double()
    sd = m.state_dict()
    for name in ("obs_mean", "obs_std", "act_mean", "act_std", "delta_mean", "delta_std"):
        assert f"normalizer.{name}" in sd
    assert not any(k.startswith("normalizer.") for k, _ in m.named_parameters())
    fresh = MLPDynamics(OBS, ACT, (8, 8), seed=7).double()
    assert not torch.allclose(fresh(t.obs, t.act), m(t.obs, t.act))
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.normalizer.delta_std, m.normalizer.delta_std)
    assert torch.equal(fresh(t.obs, t.act), m(t.obs, t.act))


def test_mlp_forward_loss_and_functional_path_agree() -> None:
    t = transitions(2, t=5)
    n = fitted(t)
    m = MLPDynamics(OBS, ACT, (8, 8), n).double()
    out = m.net(torch.cat([n.norm_obs(t.obs), n.norm_act(t.act)], -1))
    assert torch.allclose(m(t.obs, t.act), t.obs + out * n.delta_std + n.delta_mean)
    target = (t.next_obs - t.obs - n.delta_mean) / n.delta_std
    assert torch.allclose(m.loss(t), F.mse_loss(out, target))
    p = m.params()
    assert torch.equal(m.functional_forward(p, t.obs, t.act), m(t.obs, t.act))
    assert torch.equal(m.functional_loss(p, t), m.loss(t))
    shifted = {k: v + 0.1 for k, v in p.items()}
    assert not torch.allclose(m.functional_forward(shifted, t.obs, t.act), m(t.obs, t.act))
    with pytest.raises(KeyError):
        m.functional_loss({**p, "bogus": p["net.0.bias"]}, t)
    with pytest.raises(RuntimeError):  # strict: a missing key must not fall back to θ
        m.functional_loss({k: v for k, v in p.items() if k != "net.0.bias"}, t)


def test_rollout_loss_scores_open_loop_predictions_chunk_by_chunk() -> None:
    """rollout_steps=h: each chunk of h transitions is predicted from its first true state on
    the model's own predictions; the remainder is left out; h=1 is the one-step loss."""
    t = transitions(2, t=7)
    n = fitted(t)
    m = MLPDynamics(OBS, ACT, (8, 8), n).double()
    p = m.params()
    assert torch.equal(m.functional_loss(p, t, 1), m.loss(t))
    errs = []
    for start in (0, 3):  # chunks [0, 3) and [3, 6); transition 6 is the remainder
        cur = t.obs[:, start]
        for j in range(3):
            cur = m(cur, t.act[:, start + j])
            errs.append(((cur - t.next_obs[:, start + j]) / n.delta_std) ** 2)
    by_step = torch.stack(errs).reshape(2, 3, *errs[0].shape)  # [chunk, step, batch, obs]
    expected = by_step.mean(dim=(0, 2, 3)).mean()
    assert torch.allclose(m.functional_loss(p, t, 3), expected)
    # open loop differs from teacher forcing once the model is imperfect
    assert not torch.allclose(m.functional_loss(p, t, 3), m.functional_loss(p, t, 1))
    with pytest.raises(ValueError, match="rollout_steps=8"):
        m.functional_loss(p, t, 8)


def test_models_are_seeded_without_global_rng() -> None:
    state = torch.random.get_rng_state()
    a = MLPDynamics(OBS, ACT, (8,), seed=3)
    b = MLPDynamics(OBS, ACT, (8,), seed=3)
    c = MLPDynamics(OBS, ACT, (8,), seed=4)
    r = RecurrentDynamics(OBS, ACT, 8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.net[0].weight, b.net[0].weight)
    assert not torch.equal(a.net[0].weight, c.net[0].weight)
    assert r.rnn.weight_hh_l0.abs().max() <= 1 / 8**0.5


def test_normalizer_is_copied_not_shared() -> None:
    n = fitted(transitions(t=12))
    a = MLPDynamics(OBS, ACT, (4,), n)
    b = MLPDynamics(OBS, ACT, (4,), n)
    with torch.no_grad():
        a.normalizer.obs_mean.add_(1.0)
    assert not torch.equal(a.normalizer.obs_mean, b.normalizer.obs_mean)
    with pytest.raises(ValueError, match="obs_dim"):
        MLPDynamics(OBS + 1, ACT, (4,), n)


# --- RecurrentDynamics ----------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_prediction_depends_on_past_window(cell: str) -> None:
    t = transitions(t=8)
    m = RecurrentDynamics(OBS, ACT, 16, cell, fitted(t)).double()
    past_a = transitions(t=8, seed=1)
    past_b = Transitions(past_a.obs, past_a.act, past_a.obs + 2.0 * (past_a.next_obs - past_a.obs))
    obs, act = t.obs[:4], t.act[:4]
    prev = torch.zeros(4, OBS, dtype=torch.float64)
    pa, _ = m.step(obs, act, prev, m.encode(past_a))
    pb, _ = m.step(obs, act, prev, m.encode(past_b))
    assert pa.shape == (4, OBS)
    assert (pa - pb).abs().max() > 1e-4


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_encode_batched_matches_unbatched(cell: str) -> None:
    m = RecurrentDynamics(OBS, ACT, 8, cell).double()
    past = transitions(3, t=5)
    hb = m.encode(past)
    h1 = m.encode(Transitions(past.obs[1], past.act[1], past.next_obs[1]))
    if cell == "lstm":
        assert isinstance(hb, tuple) and hb[0].shape == (3, 8) and h1[0].shape == (8,)
        assert torch.allclose(hb[0][1], h1[0]) and torch.allclose(hb[1][1], h1[1])
    else:
        assert hb.shape == (3, 8) and h1.shape == (8,)
        assert torch.allclose(hb[1], h1)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_loss_is_fixed_context_one_step_predictions(cell: str) -> None:
    """loss() must equal stepping each future transition from the encoded past context."""
    data = transitions(2, t=7, seed=3)
    n = fitted(data)
    m = RecurrentDynamics(OBS, ACT, 8, cell, n).double()
    batch = WindowBatch(data.slice_time(0, 4), data.slice_time(4, 7))
    ctx = m.encode(batch.past)
    fut = batch.future
    prev = batch.past.next_obs[:, -1] - batch.past.obs[:, -1]
    errs = []
    for k in range(len(fut)):
        nxt, _ = m.step(fut.obs[:, k], fut.act[:, k], prev, ctx)
        true = fut.next_obs[:, k] - fut.obs[:, k]
        errs.append(n.norm_delta(nxt - fut.obs[:, k]) - n.norm_delta(true))
        prev = fut.next_obs[:, k] - fut.obs[:, k]  # teacher forcing, as in training
    manual = torch.stack(errs).pow(2).mean()
    assert torch.allclose(m.loss(batch), manual, rtol=1e-10)
    m.past_weight = 1.0
    assert m.loss(batch) > manual  # past one-step predictions add a positive term


def test_recurrent_state_dict_and_bad_cell() -> None:
    m = RecurrentDynamics(OBS, ACT, 8, "lstm", fitted(transitions(t=6)))
    assert "normalizer.delta_std" in m.state_dict()
    with pytest.raises(ValueError, match="cell"):
        RecurrentDynamics(OBS, ACT, 8, "rnn")  # type: ignore[arg-type]


def test_action_gain_scales_the_command_and_folds_into_a_plain_mlp() -> None:
    g = torch.Generator().manual_seed(3)
    norm = Normalizer.fit(torch.randn(64, 4, generator=g), torch.rand(64, 3, generator=g) * 2 - 1,
                          torch.randn(64, 4, generator=g))
    gained = MLPDynamics(4, 3, (8, 8), norm, seed=1, action_gain=True).double()
    plain = MLPDynamics(4, 3, (8, 8), norm, seed=1).double()
    obs, act = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.rand(
        5, 3, generator=g, dtype=torch.float64)
    # gains of one are the plain model; a gain scales that actuator's command
    torch.testing.assert_close(gained(obs, act), plain(obs, act))
    params = gained.params()
    params["act_gain"] = torch.tensor([0.0, 0.5, -1.0], dtype=torch.float64)
    scaled = act * params["act_gain"]
    torch.testing.assert_close(gained.functional_forward(params, obs, act), plain(obs, scaled))
    # folded into the first layer, the gains leave a plain MLP with the same predictions
    folded = gained.fold_action_gain(params)
    assert set(folded) == set(plain.params())
    torch.testing.assert_close(plain.functional_forward(folded, obs, act),
                               gained.functional_forward(params, obs, act))
    with pytest.raises(KeyError, match="act_gain"):
        plain.functional_forward(params, obs, act)
