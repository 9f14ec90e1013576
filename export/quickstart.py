"""``adapt quickstart``: meta-train a small GrBAL and MB, compare them on the held-out back thigh,
then export the GrBAL controller, run it through ONNX Runtime and compare.

For that last step the exported controller (no torch at run time) and the torch
``AdaptiveController`` each drive the simulated cheetah with its held-out back thigh disabled,
from the same initial states; the returns are compared seed by seed. The torch controller plans
with the runtime's noise stream (``RuntimeNoisePlanner``), so on the same seed both see the same
candidates and should act alike up to float rounding.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


class RuntimeNoisePlanner:
    """The library's planner (random shooting, CEM or MPPI) fed the ONNX runtime's noise.

    ``ControllerSession`` draws one noise tensor per step (``rng.random`` for random shooting,
    ``rng.standard_normal`` otherwise, in the controller graph's noise shape) from
    ``numpy.random.default_rng(seed)``, restarted at every reset, and feeds warm-started
    planners the previous plan (the bounds' midpoint at reset). This planner does the same
    with :func:`export.parity.plan_with_noise`, so the torch controller and the exported
    one can be compared action for action on the same seed instead of only in distribution.
    """

    def __init__(self, spec, low, high, seed: int) -> None:
        import torch

        self.spec = spec
        self.low = torch.as_tensor(low, dtype=torch.float32)
        self.high = torch.as_tensor(high, dtype=torch.float32)
        self.shape = spec.noise_shape(len(low))
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        mid = (self.low + self.high) / 2
        self.last_plan = mid.expand(self.spec.horizon, len(mid)).clone()

    def plan(self, obs, predictor, reward_fn, generator=None):
        import torch

        from export.parity import plan_with_noise

        draw = (self.rng.random if self.spec.noise_distribution == "uniform"
                else self.rng.standard_normal)
        noise = torch.from_numpy(draw(self.shape, dtype=np.float32))
        with torch.no_grad():
            self.last_plan = plan_with_noise(self.spec, predictor, reward_fn, obs, noise,
                                             self.low, self.high, self.last_plan)
        return self.last_plan[0]


def torch_returns(checkpoint: str | Path, condition: str, seeds: list[int], steps: int,
                  runtime_noise: bool = False, export_dir: str | Path | None = None
                  ) -> list[float]:
    """Return per seed of the torch ``AdaptiveController`` on the simulated robot.

    ``runtime_noise=True`` plans with the ONNX runtime's noise stream for the seed (and the
    planner baked into ``export_dir``'s controller when given, else the checkpoint's), so
    both controllers see identical candidates.
    """
    import torch

    from adaptive_control.builders import build_controller, learner_from_checkpoint
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.control import AdaptiveController
    from export.exporter import export_planner
    from sims.registry import get_family
    from sims.rewards import task_reward

    learner, cfg = learner_from_checkpoint(load_checkpoint(checkpoint))
    family = get_family(cfg.family)
    spec = cfg.planner
    if export_dir is not None:
        import json

        from export.runtime import artifacts as C

        manifest = json.loads((Path(export_dir) / C.MANIFEST_FILE).read_text())
        p = manifest["planner"]
        spec = export_planner(cfg.planner, p["name"],
                              overrides={k: v for k, v in p.items() if k != "name"})
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        if runtime_noise:
            lo, hi = family.robot.action_bounds
            ctrl = AdaptiveController(learner, RuntimeNoisePlanner(spec, lo, hi, seed),
                                      task_reward(family.robot), m=cfg.m)
        else:
            ctrl = build_controller(learner, cfg, family, seed=seed)
        out.append(_episode(family.robot.name, condition, seed, ctrl, steps))
    return out


def onnx_returns(export_dir: str | Path, robot: str, condition: str, seeds: list[int],
                 steps: int) -> list[float]:
    """Return per seed of the exported controller in ONNX Runtime (torch-free path)."""
    from export.runtime.session import ControllerSession

    out = []
    for seed in seeds:
        session = ControllerSession(export_dir, robot=robot, threads=1, seed=seed)
        out.append(_episode(robot, condition, seed, session.step, steps))
        session.close()
    return out


def _episode(robot: str, condition: str, seed: int, act, steps: int) -> float:
    """Return of one ``steps``-step episode of ``act`` (reset first when it has ``reset``)."""
    from sims.conditions import parse_condition
    from sims.env import AdaptEnv
    from sims.episode import run_episode
    from sims.registry import get_robot

    r = get_robot(robot)
    env = AdaptEnv(r, parse_condition(condition, r), episode_steps=steps, seed=seed)
    return run_episode(env, act).ret


def export_and_check(checkpoint: str | Path, out: str | Path, seeds: int = 3,
                     steps: int = 500) -> str:
    """Export ``checkpoint`` into ``out`` (with parity checks) and compare returns."""
    from export.exporter import export_checkpoint

    print("\n== export to ONNX and run through ONNX Runtime ==", flush=True)
    result = export_checkpoint(checkpoint, out, verify=True, overwrite=True)
    cond, seed_list = "disabled:bthigh", list(range(seeds))
    res = {"onnx": onnx_returns(out, result.manifest["robot"], cond, seed_list, steps),
           "torch": torch_returns(checkpoint, cond, seed_list, steps, runtime_noise=True,
                                  export_dir=out)}
    onnx_m, torch_m = float(np.mean(res["onnx"])), float(np.mean(res["torch"]))
    (Path(out) / "returns.json").write_text(
        __import__("json").dumps({"condition": "disabled:bthigh", "steps": steps, **res},
                                 indent=2))
    return (f"ONNX export: parity max abs error {result.max_error:.1e}; held-out return over "
            f"{seeds} seeds: ONNX Runtime {onnx_m:.1f} vs torch {torch_m:.1f} "
            f"({out}/returns.json)")


def quickstart(out: Path, preset: str = "small", seeds: int = 2, duration_s: float = 10.0,
               workers: int | None = None) -> Path:
    """Meta-train GrBAL and MB on cheetah-cripple (``preset``), compare their model error and
    control on the held-out back thigh (fixed, and failing at 3 s) with the random floor and
    the oracle (GrBAL's planner on the true simulator: the normalised score's ceiling), export
    the GrBAL controller and run it through ONNX Runtime; report into ``out``."""
    from adaptive_control.builders import learner_from_checkpoint
    from adaptive_control.checkpoint import load_checkpoint
    from adaptive_control.evaluation.episodes import (
        LearnerMethod,
        MethodSpec,
        RandomMethod,
        default_workers,
        evaluate,
        scenarios_for,
    )
    from adaptive_control.evaluation.model_eval import (
        heldout_data,
        prediction_errors,
        reference_scale,
    )
    from adaptive_control.evaluation.oracle import OracleMethod
    from adaptive_control.evaluation.report import report_meta, write_report
    from adaptive_control.training.config import load_config
    from adaptive_control.training.sweep import run_sweep
    from sims.episode import episode_steps_of
    from sims.registry import get_family

    t0 = time.perf_counter()
    cfg = load_config(preset=preset)
    # Both learners at once, a process and a core each: the same runs as one after another.
    print(f"\n== meta-training grbal and mb ({preset} preset, {cfg.family}, "
          f"{cfg.iterations} iterations each, in parallel) ==", flush=True)
    learners = ("grbal", "mb")
    results = run_sweep(preset, out / "runs", sets=[f"learner={','.join(learners)}"],
                        workers=min(2, workers or default_workers()))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise RuntimeError(f"meta-training failed: {failed[0].name}: {failed[0].error}")
    # the sweep's results come in grid order: one per learner
    runs = {learner: out / "runs" / r.name / "checkpoint.pt"
            for learner, r in zip(learners, results, strict=True)}
    for r in results:
        print(f"  {r.name}: validation loss {r.val_loss:.4f}, {r.seconds / 60:.1f} min")
    # the family the runs plan in: cheetah-cripple at the cheetah's decision step
    family = get_family(cfg.family)
    episode_steps = episode_steps_of(duration_s, family.robot.control_timestep)

    print("\n== prediction error on the held-out back thigh ==", flush=True)
    data = heldout_data(family, "test", 3, 300 if preset == "small" else 60, seed=1234)
    scale = reference_scale(family)
    model_rows = {}
    for name, path in runs.items():
        learner, cfg = learner_from_checkpoint(load_checkpoint(path))
        prior = prediction_errors(learner, data, cfg.m, (1, 10), 5, False, scale)
        adapted = prediction_errors(learner, data, cfg.m, (1, 10), 5, True, scale)
        model_rows[name] = (prior, adapted)

    print("\n== control on the held-out back thigh ==", flush=True)
    methods = [MethodSpec("grbal", LearnerMethod(str(runs["grbal"]))),
               MethodSpec("mb", LearnerMethod(str(runs["mb"]))),
               MethodSpec("random", RandomMethod()),
               MethodSpec("oracle", OracleMethod(str(runs["grbal"])))]
    scenarios = scenarios_for(family, ["fixed", "switch"])
    seed_list = list(range(seeds))
    episodes = evaluate(methods, family, scenarios, seed_list, episode_steps,
                        workers or default_workers(), video_episodes=1)
    meta = report_meta(family, methods, scenarios, seed_list, episode_steps, 10)
    write_report(out, episodes, meta, family.robot.control_timestep, video=True,
                 robot=family.robot.name)
    lines = ["", "## Model prediction error on held-out data (MSE, training-data std units)", "",
             "| model | 1-step prior | 1-step adapted | 10-step prior | 10-step adapted |",
             "|---|---|---|---|---|"]
    for name, (p, a) in model_rows.items():
        lines.append(f"| {name} | {p[1].mean:.4f} | {a[1].mean:.4f} | {p[10].mean:.4f} | "
                     f"{a[10].mean:.4f} |")
    with open(out / "summary.md", "a") as f:
        f.write("\n".join(lines) + "\n")
    export_line = export_and_check(runs["grbal"], out / "export",
                                   steps=episode_steps if preset == "small" else 50)
    elapsed = time.perf_counter() - t0
    print("\n" + "=" * 78)
    print(f"adapt quickstart: done in {elapsed / 60:.1f} min; report in {out}/")
    print((out / "summary.md").read_text().split("\n\n![")[0].split("\n", 2)[2])
    print("\n".join(lines[1:]))
    print(export_line)
    print(f"plots: {out}/return_by_method.png, speed_over_time.png, pred_error_over_time.png")
    print("=" * 78)
    return out
