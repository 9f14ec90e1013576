"""The graph modules: their ``forward`` takes the graph inputs positionally in the order of
``input_names``, in plain tensor operations (MatMul, elementwise, Where, TopK...), so
``torch.onnx.export`` sees no autograd and no recurrent-layer modules.

Mask semantics (all graphs taking ``recent_mask``): rows with mask 0 are ignored — replaced by
zeros before any arithmetic (so they may hold garbage, even NaN), excluded from the masked-mean
inner loss, and skipped by the recurrent encoder. With an all-zero mask the inner gradient is
exactly 0, so adaptation returns the prior θ* (GrBAL), the carried online weights (MB+DE) or
ReBAL's prior context (zero hidden state, dataset-mean previous Δ).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from adaptive_control.planning import PlannerConfig, make_objective, optimize, warm_start_prior
from export.graphs.cores import GainEncoderCore, MLPCore, RecurrentCore
from export.runtime import artifacts as C


class DynamicsGraph(nn.Module):
    """(obs [N, do], act [N, da]) -> next_obs [N, do] with θ* and the normaliser baked in."""

    def __init__(self, core: MLPCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        return self.core.predict(self.core.theta(), obs, act)


class EnsembleDynamicsGraph(nn.Module):
    """(obs [N, do], act [N, da]) -> next_obs [K, N, do]: every member's prediction for the
    same rows, each with its θ* and the shared normaliser baked in."""

    def __init__(self, cores: list[MLPCore]) -> None:
        super().__init__()
        self.cores = nn.ModuleList(cores)

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        return torch.stack([c.predict(c.theta(), obs, act) for c in self.cores])


class GainDynamicsGraph(nn.Module):
    """(obs [N, do], act [N, da], action_gains [da]) -> next_obs [N, do] (ReBAL gains)."""

    def __init__(self, core: MLPCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, obs: Tensor, act: Tensor, gains: Tensor) -> Tensor:
        return self.core.predict(self.core.fold_gain(self.core.raw_theta(), gains), obs, act)


class EncodeGainsGraph(nn.Module):
    """ReBAL with action gains: recent window -> action_gains [da]."""

    def __init__(self, encoder: GainEncoderCore) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, r_obs: Tensor, r_act: Tensor, r_next: Tensor, mask: Tensor) -> Tensor:
        return self.encoder.encode(r_obs, r_act, r_next, mask)


class RecurrentStepGraph(nn.Module):
    """ReBAL step: (obs, act, prev_delta, hidden[, cell]) -> (next_obs, next_hidden[, cell])."""

    def __init__(self, core: RecurrentCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, obs: Tensor, act: Tensor, prev_delta: Tensor, hidden: Tensor,
                *cell: Tensor) -> tuple[Tensor, ...]:
        nxt, h, c = self.core.step(obs, act, prev_delta, hidden, cell[0] if cell else None)
        return (nxt, h) if c is None else (nxt, h, c)


class AdaptStepGraph(nn.Module):
    """Recent window [+ state_in.*] -> adapted.* (state_dict layout) [+ state_out.*]."""

    def __init__(self, adapter: Any) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        recent, state = args[:4], args[4:]
        params = self.adapter.adapted_params(recent, state)
        flat = self.adapter.core.to_state_dict_layout(params)
        if self.adapter.mode != "online":
            return tuple(flat)
        theta = self.adapter.core.to_state_dict_layout(self.adapter.core.theta())
        return (*flat, *(p - t for p, t in zip(flat, theta, strict=True)))


class EnsembleAdaptStepGraph(nn.Module):
    """Recent window [+ state_in.* [K, ...]] -> adapted.* [K, ...] [+ state_out.* [K, ...]]:
    :class:`AdaptStepGraph` of every member on the same window, stacked member-first."""

    def __init__(self, adapter: Any) -> None:
        super().__init__()
        self.adapter = adapter
        self.steps = nn.ModuleList(AdaptStepGraph(m) for m in adapter.members)

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        recent, state = args[:4], args[4:]
        outs = [step(*recent, *self.adapter.member_state(state, i))
                for i, step in enumerate(self.steps)]
        return tuple(torch.stack(list(t)) for t in zip(*outs, strict=True))


class EncodeGraph(nn.Module):
    """ReBAL: recent window -> context_hidden [H] (, context_cell [H]), last_delta [do]."""

    def __init__(self, core: RecurrentCore) -> None:
        super().__init__()
        self.core = core

    def forward(self, r_obs: Tensor, r_act: Tensor, r_next: Tensor,
                mask: Tensor) -> tuple[Tensor, ...]:
        h, c, last = self.core.encode(r_obs, r_act, r_next, mask)
        return (h, last) if c is None else (h, c, last)


class RewardGraph(nn.Module):
    """(obs, act, next_obs) -> reward: the task reward alone, for runtimes that need it
    outside a controller (a recurrent policy reads the previous step's reward).

    ``reward`` is the :class:`sims.rewards.TaskReward` the environment and the planners use,
    traced as it is, so the graph cannot drift from the simulator's arithmetic.
    """

    def __init__(self, reward: Any) -> None:
        super().__init__()
        self.reward = reward

    def forward(self, obs: Tensor, act: Tensor, next_obs: Tensor) -> Tensor:
        return self.reward(obs, act, next_obs)


class StepWrapper(nn.Module):
    """Fixed-arity forward for the recurrent step (dynamic shapes need named arguments)."""

    def __init__(self, graph: RecurrentStepGraph, lstm: bool) -> None:
        super().__init__()
        # not `self.graph`: that name clashes with torch.fx.GraphModule.graph
        self.step, self.lstm = graph, lstm

    def forward(self, obs: Tensor, act: Tensor, prev_delta: Tensor, hidden: Tensor,
                cell: Tensor | None = None) -> tuple[Tensor, ...]:
        if cell is None:
            return self.step(obs, act, prev_delta, hidden)
        return self.step(obs, act, prev_delta, hidden, cell)


class ControllerGraph(nn.Module):
    """The whole adapt-and-plan step.

    Inputs: recent_obs, recent_act, recent_next_obs, recent_mask, obs, noise, [prev_plan],
    [state_in.*]. Outputs: action [da], plan [H, da], [state_out.*]. ``prev_plan`` is the
    ``plan`` output of the previous call; the graph shifts it by one step itself (the
    ``warm_start_fill`` rule), as the torch planners do with their ``last_plan``.
    """

    def __init__(self, adapter: Any, planner: PlannerConfig, reward: Any,
                 low: Tensor, high: Tensor) -> None:
        super().__init__()
        self.adapter, self.planner, self.reward = adapter, planner, reward
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32).clone())
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32).clone())
        self.n_state = len(adapter.state_specs())

    @property
    def has_prev_plan(self) -> bool:
        return self.planner.warm_start

    def input_names(self) -> list[str]:
        names = [*C.RECENT_INPUTS, C.OBS, C.NOISE]
        if self.has_prev_plan:
            names.append(C.PREV_PLAN)
        return names + [s.name for s in self.adapter.state_specs()]

    def output_names(self) -> list[str]:
        return [C.ACTION, C.PLAN] + [C.STATE_OUT_PREFIX + s.name[len(C.STATE_IN_PREFIX):]
                                     for s in self.adapter.state_specs()]

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        recent, obs, noise = args[:4], args[4], args[5]
        rest = args[6:]
        prev_plan = rest[0] if self.has_prev_plan else None
        state = rest[1:] if self.has_prev_plan else rest
        predictor, new_state = self.adapter.adapt(recent, state)
        prior = warm_start_prior(self.planner, prev_plan, self.low, self.high)
        objective = make_objective(self.planner, predictor, self.reward, obs)
        plan = optimize(self.planner, objective, noise, self.low, self.high, prior)
        return (plan[0], plan, *new_state)


