"""The online adaptation loop: adapt on the last M transitions, plan, act.

At each control step the controller appends the transition it just saw, adapts the learner
on the most recent M transitions (GrBAL: n gradient steps from θ*; MB+DE: continues its SGD;
ReBAL: re-encodes the window into the hidden state; MB: nothing), plans with the adapted
predictor and returns the plan's first action. Before M transitions exist it plans with the
unadapted prior, as the paper does.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch

from adaptive_control.learners import Learner
from adaptive_control.planners import Planner
from adaptive_control.types import Predictor, RewardFn, Transitions


class AdaptiveController:
    """Callable ``obs -> action`` with ``reset()``: drives ``sims.collect`` and ``AdaptEnv``.

    Args:
      learner: a trained learner (MB, MB+DE, GrBAL or ReBAL).
      planner: an MPC planner (random shooting, CEM, MPPI).
      reward_fn: the task reward in torch, on (obs, act, next_obs).
      m: how many recent transitions adaptation looks at.
      adapt_every: adapt every this many control steps (1 = every step, the paper's cadence).
      seed: seed of the planner's noise generator.
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
        self._obs: deque[np.ndarray] = deque(maxlen=self.m + 1)
        self._act: deque[np.ndarray] = deque(maxlen=self.m)
        self._steps = 0
        self._predictor: Predictor | None = None
        self._adapted_at: int | None = None
        self.learner.reset()
        self.planner.reset()

    @property
    def n_transitions(self) -> int:
        return len(self._act)

    def recent(self) -> Transitions | None:
        """The last M transitions, or None before M exist."""
        if len(self._act) < self.m:
            return None
        obs = np.asarray(self._obs, dtype=np.float32)
        return Transitions(torch.from_numpy(obs[:-1]),
                           torch.from_numpy(np.asarray(self._act, dtype=np.float32)),
                           torch.from_numpy(obs[1:]))

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

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        obs = np.asarray(obs, dtype=np.float32)
        self._obs.append(obs)
        predictor = self.predictor()
        with torch.no_grad():
            action = self.planner.plan(torch.from_numpy(obs), predictor, self.reward_fn,
                                       self.generator)
        action = action.detach().cpu().numpy().astype(np.float64)
        self._act.append(action.astype(np.float32))
        self._steps += 1
        self.latencies.append(time.perf_counter() - t0)
        return action
