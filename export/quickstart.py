"""The quickstart's last step: export the controller, run it through ONNX Runtime, compare.

The exported controller (no torch at run time) and the torch ``AdaptiveController`` each drive
the simulated cheetah with its held-out back thigh disabled, from the same initial states; the
returns are compared seed by seed. The torch controller plans with the runtime's noise stream
(``RuntimeNoiseRandomShooting``), so on the same seed both see the same candidates and should
act alike up to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class RuntimeNoiseRandomShooting:
    """The library's random-shooting planner fed the ONNX runtime's noise stream.

    ``ControllerSession`` draws one ``rng.random([N, H, da], float32)`` per step from
    ``numpy.random.default_rng(seed)``, restarted at every reset; this planner draws the
    same, so the torch controller and the exported one can be compared action for action on
    the same seed instead of only in distribution.
    """

    def __init__(self, num_candidates: int, horizon: int, low, high, seed: int) -> None:
        import torch

        self.shape = (num_candidates, horizon, len(low))
        self.low = torch.as_tensor(low, dtype=torch.float32)
        self.high = torch.as_tensor(high, dtype=torch.float32)
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.last_plan = None

    def plan(self, obs, predictor, reward_fn, generator=None):
        import torch

        from adaptive_control.planners import random_shooting

        noise = torch.from_numpy(self.rng.random(self.shape, dtype=np.float32))
        with torch.no_grad():
            seq, _ = random_shooting(predictor, reward_fn, obs, noise, self.low, self.high)
        self.last_plan = seq
        return seq[0]


def torch_returns(checkpoint: str | Path, condition: str, seeds: list[int], steps: int,
                  runtime_noise: bool = False) -> list[float]:
    """Return per seed of the torch ``AdaptiveController`` on the simulated robot.

    ``runtime_noise=True`` (random shooting only) plans with the ONNX runtime's noise stream
    for the seed, so both controllers see identical candidates.
    """
    import torch

    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.controller import AdaptiveController
    from adaptive_control.training import build_controller, learner_from_checkpoint
    from export.sim_robot import SimRobot
    from sims.families import get_family
    from sims.rewards import task_reward

    learner, cfg = learner_from_checkpoint(load_checkpoint(checkpoint))
    family = get_family(cfg.family)
    if runtime_noise and cfg.planner.name != "random_shooting":
        raise ValueError(f"runtime_noise: only for random shooting, not {cfg.planner.name!r}")
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        if runtime_noise:
            lo, hi = family.robot.action_bounds
            planner = RuntimeNoiseRandomShooting(cfg.planner.num_candidates,
                                                 cfg.planner.horizon, lo, hi, seed)
            ctrl = AdaptiveController(learner, planner, task_reward(family.robot), m=cfg.m)
        else:
            ctrl = build_controller(learner, cfg, family, seed=seed)
        ctrl.reset()
        out.append(_episode(SimRobot(family.robot.name, condition, seed=seed), ctrl, steps))
    return out


def onnx_returns(export_dir: str | Path, robot: str, condition: str, seeds: list[int],
                 steps: int) -> list[float]:
    """Return per seed of the exported controller in ONNX Runtime (torch-free path)."""
    from export.runtime import ControllerSession
    from export.sim_robot import SimRobot

    out = []
    for seed in seeds:
        session = ControllerSession(export_dir, robot=robot, threads=1, seed=seed)
        out.append(_episode(SimRobot(robot, condition, seed=seed), session.step, steps))
        session.close()
    return out


def _episode(robot, act, steps: int) -> float:
    obs = robot.reset()
    for _ in range(steps):
        robot.act(np.asarray(act(obs)))
        obs = robot.observe()
    return float(robot.metrics()["return"])


def export_and_check(checkpoint: str | Path, out: str | Path, seeds: int = 3,
                     steps: int = 500) -> str:
    """Export ``checkpoint`` into ``out`` (with parity checks) and compare returns."""
    from export.onnx_export import export_checkpoint

    print("\n== export to ONNX and run through ONNX Runtime ==", flush=True)
    result = export_checkpoint(checkpoint, out, verify=True, overwrite=True)
    cond, seed_list = "disabled:bthigh", list(range(seeds))
    res = {"onnx": onnx_returns(out, result.manifest["robot"], cond, seed_list, steps),
           "torch": torch_returns(checkpoint, cond, seed_list, steps, runtime_noise=True)}
    onnx_m, torch_m = float(np.mean(res["onnx"])), float(np.mean(res["torch"]))
    (Path(out) / "returns.json").write_text(
        __import__("json").dumps({"condition": "disabled:bthigh", "steps": steps, **res},
                                 indent=2))
    return (f"ONNX export: parity max abs error {result.max_error:.1e}; held-out return over "
            f"{seeds} seeds: ONNX Runtime {onnx_m:.1f} vs torch {torch_m:.1f} "
            f"({out}/returns.json)")
