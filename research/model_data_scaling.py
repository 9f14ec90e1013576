"""Is a robot's one-step dynamics model short of data? A plain MLP fitted on more and more
random-action rollouts, scored on the same held-out rollouts.

For each size in ``--rollouts`` it fits a 2 x 256 ReLU MLP (the learners' width) from the
normalised observation and action to the normalised state change, on that many random-action
rollouts of ``--seconds`` in the family's training conditions (a trajectory ended once the
robot has lain upside down for 0.2 s, for a robot that resets falls by default; unlike
training, short trajectories are kept), until early stopping on 10 % of the training
trajectories, and reports the share of each observation part's change it leaves unexplained
on ``--test-rollouts`` further rollouts (mean squared error over the test change's variance:
0 is perfect, 1 is predicting the mean). Falling with more data means the model is short of
data, flat means it is short of something else (inputs, capacity, the condition it cannot
see).

    python research/model_data_scaling.py --family quadruped-leg-failure@2 --rollouts 60,200,600
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from adaptive_control.training.data import split_trajectories
from sims.collect import FallReset, collect_open_loop
from sims.dataset import Dataset
from sims.registry import get_family


def transitions(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(observation and action, state change) of every transition, float32."""
    obs, act, nxt = data.transitions()
    x = np.concatenate([obs, act], axis=1).astype(np.float32)
    return x, (nxt - obs).astype(np.float32)


def fit_mlp(x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, seed: int,
            patience: int = 5, max_epochs: int = 300, batch: int = 256
            ) -> tuple[torch.nn.Module, int]:
    """A 2 x 256 MLP on normalised (x, y), early-stopped on the validation set; the best
    weights and their epoch."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    vx, vy = torch.from_numpy(val_x), torch.from_numpy(val_y)
    best, best_state, best_epoch, bad = float("inf"), None, 0, 0
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(1, max_epochs + 1):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = ((net(xt[idx]) - yt[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = float(((net(vx) - vy) ** 2).mean())
        if val < best:
            best, best_state, best_epoch, bad = val, {k: v.clone() for k, v in
                                                      net.state_dict().items()}, epoch, 0
        else:
            bad += 1
            if bad >= patience:
                break
    net.load_state_dict(best_state)
    return net, best_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="quadruped-leg-failure@2")
    ap.add_argument("--rollouts", default="60,200,600", help="comma-separated training sizes")
    ap.add_argument("--test-rollouts", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    family = get_family(args.family)
    robot = family.robot
    sizes = sorted(int(s) for s in args.rollouts.split(","))
    steps = max(1, round(args.seconds / robot.control_timestep))
    rule = FallReset() if robot.fall_reset else None

    def collect(n: int, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        conds = [family.sample(rng, "train") for _ in range(n)]
        return collect_open_loop(robot, conds, steps, rng, progress=False, family=family.name,
                                 fall_reset=rule)

    test_x, test_y = transitions(collect(args.test_rollouts, args.seed + 10_000))
    pool = collect(max(sizes), args.seed)
    parts = robot.obs_parts
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        # the leading trajectories holding about n rollouts of transitions (a rollout's
        # trajectories are consecutive; fall resets split it)
        data = pool.subset(np.arange(pool.n_trajectories)[: _trajectories_of(pool, n, steps)])
        train_idx, val_idx = split_trajectories(data, 0.1, np.random.default_rng(args.seed))
        train_x, train_y = transitions(data.subset(train_idx))
        val_x, val_y = transitions(data.subset(val_idx))
        mx, sx = train_x.mean(0), train_x.std(0) + 1e-6
        my, sy = train_y.mean(0), train_y.std(0) + 1e-6

        def norm(x, y, mx=mx, sx=sx, my=my, sy=sy):
            return (x - mx) / sx, (y - my) / sy

        net, epoch = fit_mlp(*norm(train_x, train_y), *norm(val_x, val_y), seed=args.seed)
        with torch.no_grad():
            pred = net(torch.from_numpy((test_x - mx) / sx)).numpy() * sy + my
        unexplained = ((pred - test_y) ** 2).mean(0) / test_y.var(0)
        by_part = {p.name: float(unexplained[p.start:p.start + p.size].mean()) for p in parts}
        row = {"rollouts": n, "transitions": int(len(train_x)), "best_epoch": epoch,
               "unexplained_mean": float(unexplained.mean()), "by_part": by_part,
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        worst = sorted(by_part.items(), key=lambda kv: -kv[1])[:4]
        print(f"{n:5d} rollouts, {len(train_x):7d} transitions: unexplained "
              f"{row['unexplained_mean']:.3f} (worst: "
              + ", ".join(f"{k} {v:.2f}" for k, v in worst) + f"), epoch {epoch}", flush=True)
    result = {"family": family.name, "seconds": args.seconds, "seed": args.seed,
              "test_transitions": int(len(test_x)), "sizes": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps({"family": family.name, "unexplained": {r["rollouts"]: round(
        r["unexplained_mean"], 4) for r in rows}}))


def _trajectories_of(data: Dataset, rollouts: int, steps: int) -> int:
    """How many of ``data``'s leading trajectories make up its first ``rollouts`` rollouts
    (a rollout's trajectories are consecutive and their lengths sum to ``steps``)."""
    spent = np.cumsum(data.lengths)
    return int(np.searchsorted(spent, rollouts * steps, side="left") + 1)


if __name__ == "__main__":
    main()
