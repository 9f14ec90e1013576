"""The quickstart's last step: export the controller, run it through ONNX Runtime, compare.

The exported controller (no torch at run time) and the torch ``AdaptiveController`` each drive
the simulated cheetah with its held-out back thigh disabled, from the same initial states; the
returns are compared seed by seed. The two planners draw their noise from different generators
(numpy in the runtime, torch in the library), so episodes differ as two seeds of one controller
do; the mean over seeds is the fair comparison.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def torch_returns(checkpoint: str | Path, condition: str, seeds: list[int],
                  steps: int) -> list[float]:
    """Return per seed of the torch ``AdaptiveController`` on the simulated robot."""
    import torch

    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.training import build_controller, learner_from_checkpoint
    from export.sim_robot import SimRobot
    from sims.families import get_family

    learner, cfg = learner_from_checkpoint(load_checkpoint(checkpoint))
    family = get_family(cfg.family)
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        ctrl = build_controller(learner, cfg, family, seed=seed)
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
           "torch": torch_returns(checkpoint, cond, seed_list, steps)}
    onnx_m, torch_m = float(np.mean(res["onnx"])), float(np.mean(res["torch"]))
    (Path(out) / "returns.json").write_text(
        __import__("json").dumps({"condition": "disabled:bthigh", "steps": steps, **res},
                                 indent=2))
    return (f"ONNX export: parity max abs error {result.max_error:.1e}; held-out return over "
            f"{seeds} seeds: ONNX Runtime {onnx_m:.1f} vs torch {torch_m:.1f} "
            f"({out}/returns.json)")
