"""The online adaptation loop: adapt on the last M transitions, plan, act.

At each control step the controller appends the transition it just saw, adapts the learner
on the most recent M transitions (GrBAL: n gradient steps from θ*; MB+DE: continues its SGD;
ReBAL: re-encodes the window into the hidden state; MB: nothing), plans with the adapted
predictor and returns the plan's first action. Before M transitions exist it plans with the
unadapted prior, as the paper does.

Adaptation and planning run on the learner's device: observations and the window go there,
actions come back as CPU numpy arrays. The planner's noise is drawn from the controller's
CPU generator and then moved, so one seed gives the same candidates on every device.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from adaptive_control.devices import module_device
from adaptive_control.learners import Learner
from adaptive_control.planning import Planner
from adaptive_control.types import Predictor, RewardFn, Transitions


@runtime_checkable
class Controller(Protocol):
    """What acts in an episode: model-based controllers, policies and the random floor alike."""

    #: Seconds each call took (evaluation reports their percentiles).
    latencies: list[float]

    def reset(self) -> None:
        """Start an episode: forget the history of the last one."""
        ...

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The observation now -> the action to execute."""
        ...


class AdaptiveController:
    """Callable ``obs -> action`` with ``reset()``: drives ``sims.collect`` and ``AdaptEnv``.

    Args:
      learner: a trained learner (MB, MB+DE, GrBAL or ReBAL).
      planner: an MPC planner (random shooting, CEM, MPPI).
      reward_fn: the task reward in torch, on (obs, act, next_obs).
      m: how many recent transitions adaptation looks at.
      adapt_every: adapt every this many control steps (1 = every step, the paper's cadence).
      seed: seed of the planner's noise generator (a CPU generator on every device).
    """

    def __init__(self, learner: Learner, planner: Planner, reward_fn: RewardFn, m: int,
                 adapt_every: int = 1, seed: int = 0):
        if m < 1:
            raise ValueError(f"m={m!r} must be >= 1")
        if adapt_every < 1:
            raise ValueError(f"adapt_every={adapt_every!r} must be >= 1")
        self.learner = learner
        self.planner = planner
        self.reward_fn = reward_fn
        self.m = m
        self.adapt_every = adapt_every
        self.generator = torch.Generator().manual_seed(seed)
        self._seed = seed
        self.latencies: list[float] = []  # seconds per call
        self.reset()

    def reset(self) -> None:
        """Forget the episode: history, online weights, the planner's warm start."""
        # Complete transitions (obs, act, next_obs), the newest last; the pending step's
        # observation and action wait in _last_obs / _last_act until the next observation.
        self._trans: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=self.m)
        self._last_obs: np.ndarray | None = None
        self._last_act: np.ndarray | None = None
        self._steps = 0
        self._predictor: Predictor | None = None
        self._adapted_at: int | None = None
        self.learner.reset()
        self.planner.reset()

    @property
    def n_transitions(self) -> int:
        return len(self._trans)

    @property
    def device(self) -> torch.device:
        """Where adaptation and planning run: the learner's device (read on every call, so a
        learner moved after construction is followed)."""
        return module_device(self.learner)

    def recent(self) -> Transitions | None:
        """The last M complete transitions on the learner's device, or None before M exist."""
        if len(self._trans) < self.m:
            return None
        o, a, n = (np.stack(x).astype(np.float32) for x in zip(*self._trans, strict=True))
        return Transitions(torch.from_numpy(o), torch.from_numpy(a),
                           torch.from_numpy(n)).to(self.device)

    def predictor(self) -> Predictor:
        """Adapt (when it is time) and return the predictor to plan with."""
        recent = self.recent()
        if recent is None:
            if self._predictor is None:
                self._predictor = self.learner.prior()
            return self._predictor
        if self._adapted_at is None or self._steps - self._adapted_at >= self.adapt_every:
            self._predictor = self.learner.adapt(recent)
            self._adapted_at = self._steps
        return self._predictor

    def observe_action(self, action: np.ndarray) -> None:
        """Record the action actually executed at the last step, when it was not this
        controller's (DAgger: the student acted, the teacher labels)."""
        if self._last_act is None:
            raise RuntimeError("observe_action before any step")
        self._last_act = np.asarray(action, dtype=np.float32)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        obs = np.asarray(obs, dtype=np.float32)
        if self._last_obs is not None:
            self._trans.append((self._last_obs, self._last_act, obs))
        self._last_obs = obs
        predictor = self.predictor()
        with torch.no_grad():
            action = self.planner.plan(torch.from_numpy(obs).to(self.device), predictor,
                                       self.reward_fn, self.generator)
        action = action.detach().cpu().numpy().astype(np.float64)
        self._last_act = action.astype(np.float32)
        self._steps += 1
        self.latencies.append(time.perf_counter() - t0)
        return action
