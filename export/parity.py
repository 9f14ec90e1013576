"""Parity checks of an export: ONNX Runtime against the library's own torch code.

The references are the library's code paths — the learner's ``adapt``/``prior`` (or
:func:`~adaptive_control.learners.inner_update` from a carried state), the pure planner
functions — chosen by the learner's :meth:`~adaptive_control.learners.Learner.adaptation`
description. :func:`verify_export` compares every graph on random inputs (every mask
pattern) and on a trajectory recorded in simulation with the torch
:class:`~adaptive_control.control.AdaptiveController` (:func:`record_trajectory`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor

from adaptive_control.learners import (
    Ensemble,
    EnsemblePredictor,
    Learner,
    MLPPredictor,
    inner_update,
)
from adaptive_control.models.dynamics import MLPDynamics
from adaptive_control.planning import (
    PlannerConfig,
    make_objective,
    make_planner,
    optimize,
    warm_start_prior,
)
from adaptive_control.training.config import TrainConfig
from adaptive_control.types import Transitions
from export.runtime import artifacts as C
from sims.registry import get_family
from sims.rewards import TaskReward, task_reward
from sims.robots import Robot

#: Largest allowed max-abs difference between ONNX Runtime and torch.
PARITY_TOL = 1e-4


def max_parity_error(parity: Mapping[str, Mapping[str, float]]) -> float:
    """The largest error of a ``{graph: {check: max abs error}}`` report (NaN if none)."""
    errs = [v for d in parity.values() for v in d.values()]
    return max(errs) if errs else math.nan


# --------------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------------


def members_of(learner: Learner) -> list[Learner]:
    """An :class:`Ensemble`'s members, or the learner alone."""
    return list(learner.members) if isinstance(learner, Ensemble) else [learner]


def single_member(learner: Learner) -> Learner:
    """The member of an ensemble of one (which exports as that plain learner), else
    ``learner``."""
    members = members_of(learner)
    return members[0] if len(members) == 1 else learner


def _member_feed(feed: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Member ``i``'s view of an ensemble graph's feed: its slice of every carried state."""
    return {k: (v[i] if k.startswith(C.STATE_IN_PREFIX) else v) for k, v in feed.items()}


def _stacked(outs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-member outputs stacked along a leading member axis."""
    return {k: np.stack([o[k] for o in outs]) for k in outs[0]}


# --------------------------------------------------------------------------------------------
# torch references (the library's own code paths)
# --------------------------------------------------------------------------------------------


def _t(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _valid(feed: Mapping[str, np.ndarray]) -> Transitions:
    keep = feed[C.RECENT_MASK] > 0
    return Transitions(_t(feed[C.RECENT_OBS][keep]), _t(feed[C.RECENT_ACT][keep]),
                       _t(feed[C.RECENT_NEXT_OBS][keep]))


@torch.no_grad()
def reference_adapted(learner: Learner, feed: Mapping[str, np.ndarray]
                      ) -> tuple[Any, Any]:
    """(predictor, adapted MLP params or None) from the library's learner code. An
    ensemble's predictor is the library's :class:`EnsemblePredictor` over its members' (each
    from its own slice of the carried state); its params are per member."""
    if isinstance(learner, Ensemble):
        pairs = [reference_adapted(m, _member_feed(feed, i))
                 for i, m in enumerate(learner.members)]
        return EnsemblePredictor([p for p, _ in pairs]), [q for _, q in pairs]
    ad = learner.adaptation()
    recent = _valid(feed)
    model = learner.model
    if ad.carries_weights:  # from the trained weights plus the carried change in the feed
        start = {k: v.detach() + _t(feed[C.STATE_IN_PREFIX + k])
                 for k, v in model.named_parameters()}
        params = start
        if len(recent) > 0:
            assert ad.inner_lr is not None
            params = inner_update(model, start, recent, ad.inner_lr, ad.inner_steps,
                                  create_graph=False, max_norm=ad.inner_max_norm)
        return MLPPredictor(model, params), {k: v.detach() for k, v in params.items()}
    reads = ad.inputs == "window" and len(recent) > 0
    predictor = learner.adapt(recent) if reads else learner.prior()
    if ad.updates != "weights":
        return predictor, None
    params = predictor.params  # None: the live (trained) weights
    if params is None:
        params = {k: v.detach() for k, v in model.named_parameters()}
    return predictor, params


@torch.no_grad()
def plan_with_noise(spec: PlannerConfig, predictor: Any, reward: TaskReward, obs: Tensor,
                    noise: Tensor, lo: Tensor, hi: Tensor, prev_plan: Tensor | None) -> Tensor:
    """The plan ``[H, da]`` controller.onnx computes from ``noise`` (and, warm-started, the
    previous plan), by the library's pure planner functions."""
    assert prev_plan is not None or not spec.warm_start
    return optimize(spec, make_objective(spec, predictor, reward, obs), noise, lo, hi,
                    warm_start_prior(spec, prev_plan, lo, hi))


@torch.no_grad()
def reference_controller(learner: Learner, spec: PlannerConfig, robot: Robot,
                         feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """controller.onnx's outputs computed with the library: learner + pure planner function."""
    predictor, params = reference_adapted(learner, feed)
    lo, hi = (torch.tensor(b, dtype=torch.float32) for b in robot.action_bounds)
    reward = task_reward(robot)
    obs, noise = _t(feed[C.OBS]), _t(feed[C.NOISE])
    prev = _t(feed[C.PREV_PLAN]) if spec.warm_start else None
    plan = plan_with_noise(spec, predictor, reward, obs, noise, lo, hi, prev)
    out = {C.ACTION: plan[0].numpy(), C.PLAN: plan.numpy()}
    if learner.adaptation().carries_weights:
        assert params is not None
        out.update(_carried_out(learner, params))
    return out


def _carried_out(learner: Learner, params: Any) -> dict[str, np.ndarray]:
    """``state_out.*``: the online weights less the trained ones (per member, stacked)."""
    if isinstance(learner, Ensemble):
        return _stacked([_carried_out(m, p) for m, p in zip(learner.members, params,
                                                              strict=True)])
    return {C.STATE_OUT_PREFIX + k: (params[k] - v.detach()).numpy()
            for k, v in learner.model.named_parameters()}


@torch.no_grad()
def reference_graph(role: str, learner: Learner, spec: PlannerConfig, robot: Robot,
                    feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of graph ``role`` for ``feed``, computed with the library's torch code
    (an ensemble's non-controller graphs: every member's outputs, stacked member-first)."""
    ad = learner.adaptation()
    if role == "controller":
        return reference_controller(learner, spec, robot, feed)
    if isinstance(learner, Ensemble):
        return _stacked([reference_graph(role, m, spec, robot, _member_feed(feed, i))
                         for i, m in enumerate(learner.members)])
    if role == "dynamics":
        obs, act = _t(feed[C.OBS]), _t(feed[C.ACT])
        if ad.kind == "recurrent":
            h = _t(feed[C.HIDDEN])
            hidden = (h, _t(feed[C.CELL])) if learner.model.cell == "lstm" else h
            nxt, hn = learner.model.step(obs, act, _t(feed[C.PREV_DELTA]), hidden)
            out = {C.NEXT_OBS: nxt.numpy()}
            if isinstance(hn, tuple):
                out[C.NEXT_HIDDEN], out[C.NEXT_CELL] = hn[0].numpy(), hn[1].numpy()
            else:
                out[C.NEXT_HIDDEN] = hn.numpy()
            return out
        if ad.kind == "gains":
            params = {**learner.model.params(), "act_gain": _t(feed[C.ACTION_GAINS])}
            return {C.NEXT_OBS: learner.model.functional_forward(params, obs, act).numpy()}
        return {C.NEXT_OBS: learner.model(obs, act).numpy()}
    if role == "adapt_step":
        _, params = reference_adapted(learner, feed)
        assert params is not None
        assert isinstance(learner.model, MLPDynamics)
        params = learner.model.fold_action_gain(params)  # the graph outputs a plain MLP
        out = {C.ADAPTED_PREFIX + k: v.numpy() for k, v in params.items()}
        if ad.carries_weights:
            out.update(_carried_out(learner, params))
        return out
    if role == "encode" and ad.kind == "gains":
        gains = (learner.adapt(_valid(feed)).params["act_gain"] if feed[C.RECENT_MASK].any()
                 else torch.ones(learner.model.act_dim))
        return {C.ACTION_GAINS: gains.numpy()}
    if role == "encode":
        assert ad.kind == "recurrent"
        pred = learner.adapt(_valid(feed)) if feed[C.RECENT_MASK].any() else learner.prior()
        ctx = pred.context
        out = {C.LAST_DELTA: pred.last_delta.numpy()}
        if isinstance(ctx, tuple):
            out[C.CONTEXT_HIDDEN], out[C.CONTEXT_CELL] = ctx[0].numpy(), ctx[1].numpy()
        else:
            out[C.CONTEXT_HIDDEN] = ctx.numpy()
        return out
    raise ValueError(f"graph role={role!r} is unknown: allowed {', '.join(C.GRAPH_FILES)}")


# --------------------------------------------------------------------------------------------
# Inputs for the parity checks
# --------------------------------------------------------------------------------------------


def random_feed(meta: Mapping[str, Any], rng: np.random.Generator, mask: np.ndarray | None = None,
                batch: int = 7) -> dict[str, np.ndarray]:
    """Plausible random inputs for a graph described by its metadata (``inputs`` etc.)."""
    n = meta["normalizer"]
    lo, hi = np.array(meta["action_low"]), np.array(meta["action_high"])
    om, os_ = np.array(n["obs_mean"]), np.array(n["obs_std"])
    dm, ds = np.array(n["delta_mean"]), np.array(n["delta_std"])
    feed: dict[str, np.ndarray] = {}
    for spec in meta["inputs"]:
        name = spec["name"]
        shape = tuple(batch if isinstance(d, str) else d for d in spec["shape"])
        if name in (C.OBS, C.RECENT_OBS):
            x = om + os_ * rng.standard_normal(shape)
        elif name in (C.ACT, C.RECENT_ACT, C.PREV_PLAN):
            x = rng.uniform(lo, hi, size=shape)
        elif name == C.RECENT_NEXT_OBS:
            x = feed[C.RECENT_OBS] + dm + ds * rng.standard_normal(shape)
        elif name == C.PREV_DELTA:
            x = dm + ds * rng.standard_normal(shape)
        elif name == C.ACTION_GAINS:
            x = 1.0 + 0.5 * rng.standard_normal(shape)
        elif name == C.RECENT_MASK:
            x = mask if mask is not None else np.ones(shape)
        elif name == C.NOISE:
            x = (rng.random(shape) if meta["planner"]["name"] == "random_shooting"
                 else rng.standard_normal(shape))
        elif name.startswith(C.STATE_IN_PREFIX):
            x = 1e-3 * rng.standard_normal(shape)
        else:  # hidden / cell states
            x = np.tanh(rng.standard_normal(shape))
        feed[name] = np.asarray(x, dtype=np.float32)
    return feed


def _masks(m: int, rng: np.random.Generator) -> list[np.ndarray]:
    """All ones, all zeros, a partly filled window (leading rows empty) and a random pattern."""
    partial = np.zeros(m, np.float32)
    partial[m // 2:] = 1
    rand = (rng.random(m) < 0.6).astype(np.float32)
    return [np.ones(m, np.float32), np.zeros(m, np.float32), partial, rand]


@dataclass
class RecordedStep:
    """One step of the torch AdaptiveController in simulation, as controller.onnx sees it."""

    feed: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]  # the torch controller's own action, plan (and state)


@torch.no_grad()
def record_trajectory(learner: Learner, cfg: TrainConfig, spec: PlannerConfig, steps: int,
                      seed: int = 0, condition: Any = None) -> list[RecordedStep]:
    """Run the torch :class:`AdaptiveController` (with the exported planner) in ``AdaptEnv``
    for ``steps`` steps and record each step's controller.onnx inputs and the torch outputs.

    The noise is the controller's own draw (reproduced from its generator state), so the
    expected outputs are exactly what the torch controller did. ``condition`` defaults to the
    family's first held-out condition.
    """
    from adaptive_control.control import AdaptiveController
    from sims.env import AdaptEnv
    from sims.episode import run_episode

    if steps < 1:
        return []
    family = get_family(cfg.family)
    robot = family.robot
    lo, hi = robot.action_bounds
    planner = make_planner(spec, torch.tensor(lo, dtype=torch.float32),
                           torch.tensor(hi, dtype=torch.float32))
    ctrl = AdaptiveController(learner, planner, task_reward(robot), m=cfg.m, seed=seed)
    cond = condition if condition is not None else family.test_conditions[0]
    env = AdaptEnv(robot, cond, episode_steps=steps, seed=seed)
    m, da = cfg.m, robot.act_dim
    mid = ((lo + hi) / 2).astype(np.float32)
    carried = learner.adaptation().carries_weights  # read with each online_params()
    members = members_of(learner)
    thetas = ([{k: v.detach().clone() for k, v in mb.model.named_parameters()}
               for mb in members] if carried else [])

    def carried_change(prefix: str) -> dict[str, np.ndarray]:
        changes = [{prefix + k: (mb.online_params()[k] - v).numpy() for k, v in theta.items()}
                   for mb, theta in zip(members, thetas, strict=True)]
        return _stacked(changes) if isinstance(learner, Ensemble) else changes[0]
    out: list[RecordedStep] = []
    # The window is rebuilt here from what was observed and executed (not read from the
    # controller's internals), so the recording also checks the contract's window layout.
    obs_hist: list[np.ndarray] = []
    act_hist: list[np.ndarray] = []

    def act(observation: np.ndarray) -> np.ndarray:
        nonlocal obs_hist, act_hist
        obs = np.asarray(observation, dtype=np.float32)
        obs_hist = (obs_hist + [obs])[-(m + 1):]
        feed = _window_feed(obs_hist, act_hist, m, robot.obs_dim, da)
        feed[C.OBS] = obs
        gen = torch.Generator().manual_seed(0)
        gen.set_state(ctrl.generator.get_state())
        shape = spec.noise_shape(da)
        draw = torch.rand if spec.noise_distribution == "uniform" else torch.randn
        feed[C.NOISE] = draw(shape, generator=gen, dtype=torch.float32).numpy()
        if spec.warm_start:
            last = planner.last_plan
            feed[C.PREV_PLAN] = (np.tile(mid, (spec.horizon, 1)) if last is None
                                 else last.numpy().astype(np.float32))
        if carried:
            feed.update(carried_change(C.STATE_IN_PREFIX))
        action = ctrl(obs)
        expected = {C.ACTION: action.astype(np.float32),
                    C.PLAN: planner.last_plan.numpy().astype(np.float32)}
        if carried:
            expected.update(carried_change(C.STATE_OUT_PREFIX))
        out.append(RecordedStep(feed, expected))
        act_hist = (act_hist + [action.astype(np.float32)])[-m:]
        return action

    ctrl.reset()
    run_episode(env, act)
    return out


def _window_feed(obs_hist: list[np.ndarray], act_hist: list[np.ndarray], m: int, do: int,
                 da: int) -> dict[str, np.ndarray]:
    """The recent-window inputs for the AdaptiveController's history (prior until M exist)."""
    feed = {C.RECENT_OBS: np.zeros((m, do), np.float32),
            C.RECENT_ACT: np.zeros((m, da), np.float32),
            C.RECENT_NEXT_OBS: np.zeros((m, do), np.float32),
            C.RECENT_MASK: np.zeros(m, np.float32)}
    n = min(len(act_hist), m)
    if len(act_hist) >= m:
        o = np.asarray(obs_hist[-(m + 1):], np.float32)
        feed[C.RECENT_OBS] = o[:-1].copy()
        feed[C.RECENT_NEXT_OBS] = o[1:].copy()
        feed[C.RECENT_ACT] = np.asarray(act_hist[-m:], np.float32)
        feed[C.RECENT_MASK][:] = 1.0
    elif n > 0:  # the rows exist but the torch controller plans with the prior: mask stays 0
        o = np.asarray(obs_hist[-(n + 1):], np.float32)
        feed[C.RECENT_OBS][m - n:] = o[:-1]
        feed[C.RECENT_NEXT_OBS][m - n:] = o[1:]
        feed[C.RECENT_ACT][m - n:] = np.asarray(act_hist[-n:], np.float32)
    return feed


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------


def ort_session(path: str | Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def max_abs_error(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> float:
    """Largest |got − want| over the outputs both have; inf on a shape mismatch or NaN."""
    err = 0.0
    for k, w in want.items():
        g = np.asarray(got[k], dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            return math.inf
        if g.size:
            d = float(np.max(np.abs(g - w)))
            err = max(err, d if math.isfinite(d) else math.inf)
    return err


def run_session(sess: Any, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, {k: v for k, v in feed.items() if k in wanted}),
                    strict=True))


def read_metadata(path: str | Path) -> dict[str, Any]:
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props}


def verify_export(out_dir: str | Path, learner: Learner, cfg: TrainConfig, spec: PlannerConfig,
                  record_steps: int = 40, seed: int = 0,
                  log: Callable[[str], None] | None = None,
                  recorded: list[RecordedStep] | None = None) -> dict[str, dict[str, float]]:
    """Max abs error ONNX Runtime vs torch per graph, on random and on recorded inputs
    (``recorded``: steps already recorded with :func:`record_trajectory`, instead of
    recording ``record_steps`` here)."""
    say = log or (lambda s: None)
    out = Path(out_dir)
    robot = get_family(cfg.family).robot
    rng = np.random.default_rng(seed)
    results: dict[str, dict[str, float]] = {}
    sessions = {}
    metas = {}
    for role, fname in C.GRAPH_FILES.items():
        if (out / fname).exists():
            sessions[role] = ort_session(out / fname)
            metas[role] = read_metadata(out / fname)
    for role, sess in sessions.items():
        errs = []
        for mask in _masks(cfg.m, rng):
            feed = random_feed(metas[role], rng, mask)
            errs.append(max_abs_error(run_session(sess, feed),
                                      reference_graph(role, learner, spec, robot, feed)))
        results[role] = {"random": max(errs)}
    steps = (recorded if recorded is not None
             else record_trajectory(learner, cfg, spec, record_steps, seed))
    if steps:
        say(f"checking ONNX Runtime against the torch controller on {len(steps)} recorded "
            "simulation steps")
        errs = [max_abs_error(run_session(sessions["controller"], s.feed), s.expected)
                for s in steps]
        results["controller"]["recorded"] = max(errs)
        learner.reset()
        for role in ("dynamics", "adapt_step", "encode"):
            if role not in sessions:
                continue
            errs = [max_abs_error(run_session(sessions[role], f),
                                  reference_graph(role, learner, spec, robot, f))
                    for f in _recorded_feeds(role, steps, metas[role], rng)]
            results[role]["recorded"] = max(errs)
    return results


def _recorded_feeds(role: str, steps: list[RecordedStep], meta: Mapping[str, Any],
                    rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Inputs for the non-controller graphs taken from a recorded trajectory."""
    feeds = []
    if role == "dynamics":
        full = [s.feed for s in steps if s.feed[C.RECENT_MASK].all()] or [steps[-1].feed]
        for f in full[:: max(1, len(full) // 4)]:
            feed = random_feed(meta, rng, batch=f[C.RECENT_OBS].shape[0])
            feed[C.OBS], feed[C.ACT] = f[C.RECENT_OBS], f[C.RECENT_ACT]
            if C.PREV_DELTA in feed:  # true previous deltas along the window
                d = f[C.RECENT_NEXT_OBS] - f[C.RECENT_OBS]
                feed[C.PREV_DELTA] = np.concatenate([np.zeros_like(d[:1]), d[:-1]])
            feeds.append(feed)
        return feeds
    for s in steps:
        feed = {k: s.feed[k] for k in C.RECENT_INPUTS}
        for k, v in s.feed.items():
            if k.startswith(C.STATE_IN_PREFIX):
                feed[k] = v
        feeds.append(feed)
    return feeds


def precision_error(fp32: Mapping[str, Path], converted: Mapping[str, Path], m: int,
                    recorded: list[RecordedStep], seed: int = 0) -> dict[str, dict[str, float]]:
    """How far reduced-precision graphs are from the float32 graphs they were made from, on
    random inputs (every mask pattern) and on ``recorded`` steps.

    ``dynamics``: the error of the predicted next observation relative to the predicted
    change, ``mean |q − f| / mean |f − obs|`` (``relative_change_error``), and its largest
    absolute error. ``controller``: the action's mean and largest absolute difference in
    half action ranges (the same noise for both; MPPI's weights are exponential in the
    predicted returns, so small model errors can move the action).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for role, path in converted.items():
        meta = read_metadata(path)
        sf, sq = ort_session(fp32[role]), ort_session(path)
        feeds = [random_feed(meta, rng, mask) for mask in _masks(m, rng)]
        feeds += ([s.feed for s in recorded] if role == "controller"
                  else _recorded_feeds(role, recorded, meta, rng) if recorded else [])
        if role == "controller":
            half = (np.asarray(meta["action_high"]) - np.asarray(meta["action_low"])) / 2
            diffs = np.stack([np.abs(run_session(sq, f)[C.ACTION] - run_session(sf, f)[C.ACTION])
                              / half for f in feeds])
            out[role] = {"action_mean_abs": float(diffs.mean()),
                         "action_max_abs": float(diffs.max())}
        else:
            err = change = 0.0
            worst = 0.0
            for f in feeds:
                q, ref = run_session(sq, f)[C.NEXT_OBS], run_session(sf, f)[C.NEXT_OBS]
                err += float(np.abs(q - ref).sum())
                change += float(np.abs(ref - f[C.OBS]).sum())
                worst = max(worst, float(np.abs(q - ref).max()))
            out[role] = {"relative_change_error": err / max(change, 1e-12),
                         "max_abs": worst}
    return out
