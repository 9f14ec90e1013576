"""How much of a model's held-out error is the condition itself? (a ceiling for adaptation)

Fine-tunes a trained MB checkpoint on plenty of random-action data *from the held-out
condition* (an oracle no adaptation from a few transitions can beat) and reports 1- and
10-step open-loop errors on the same held-out windows and scale as ``adapt eval-model``
(3 trajectories x 300 steps, seed 1234; training-condition std units).

    python research/heldout_oracle.py MB_RUN [--trajectories 20] [--steps 3000]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from adaptive_control.builders import learner_from_checkpoint
from adaptive_control.checkpoint import load_checkpoint
from adaptive_control.evaluation.model_eval import heldout_data, reference_scale
from sims.registry import get_family


def errors(model, params, data, scale) -> tuple[float, float]:
    e1, e10 = [], []
    for i in range(data.n_trajectories):
        obs, act = torch.from_numpy(data.obs[i]), torch.from_numpy(data.act[i])
        for t in range(16, obs.shape[0] - 11, 5):
            o = obs[t][None]
            with torch.no_grad():
                for j in range(10):
                    o = model.functional_forward(params, o, act[t + j][None])
                    if j == 0:
                        e1.append(float((((o[0] - obs[t + 1]) / scale) ** 2).mean()))
            e10.append(float((((o[0] - obs[t + 10]) / scale) ** 2).mean()))
    return float(np.mean(e1)), float(np.mean(e10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="an MB run folder or checkpoint")
    ap.add_argument("--trajectories", type=int, default=20, help="held-out fine-tuning data")
    ap.add_argument("--steps", type=int, default=3000, help="Adam steps of 512 transitions")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = args.run if args.run.endswith(".pt") else f"{args.run}/checkpoint.pt"
    learner, cfg = learner_from_checkpoint(load_checkpoint(path))
    family = get_family(cfg.family)
    scale = torch.as_tensor(reference_scale(family))
    evaluation = heldout_data(family, "test", 3, 300, 1234)
    model = learner.model
    e1, e10 = errors(model, model.params(), evaluation, scale)
    print(f"{family.name}: MB as trained           1-step {e1:.4f}  10-step {e10:.4f}")
    tune = heldout_data(family, "test", args.trajectories, 500, 78)  # disjoint seed
    flat = lambda x: torch.from_numpy(x).reshape(-1, x.shape[-1])  # noqa: E731
    o, a, o2 = flat(tune.obs[:, :-1]), flat(tune.act), flat(tune.obs[:, 1:])
    params = {k: v.detach().clone().requires_grad_(True) for k, v in model.params().items()}
    opt = torch.optim.Adam(params.values(), lr=3e-4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        idx = torch.randint(0, o.shape[0], (512,), generator=gen)
        loss = (((model.functional_forward(params, o[idx], a[idx]) - o2[idx]) / scale) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    e1, e10 = errors(model, {k: v.detach() for k, v in params.items()}, evaluation, scale)
    print(f"{family.name}: MB + {o.shape[0]} held-out transitions (oracle) "
          f"1-step {e1:.4f}  10-step {e10:.4f}")


if __name__ == "__main__":
    main()
