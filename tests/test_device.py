"""The device setting: parsing and refusals run everywhere; CUDA is checked against the CPU
(same seed, same numbers within float tolerance) only where CUDA exists, and skipped elsewhere."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from support import tiny_config, tiny_learner

from adapt_cli import main
from adaptive_control.builders import build_controller, learner_from_checkpoint
from adaptive_control.checkpoint import load_checkpoint, to_cpu
from adaptive_control.devices import check_device, module_device, resolve_device
from adaptive_control.evaluation.episodes import (
    LearnerMethod,
    MethodSpec,
    method_episode,
    scenarios_for,
)
from adaptive_control.evaluation.model_eval import compare_models, load_models
from adaptive_control.training.config import TrainConfig, load_config
from adaptive_control.training.loop import train
from sims.collect import collect_open_loop
from sims.registry import get_family

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
without_cuda = pytest.mark.skipif(HAS_CUDA, reason="checks the refusal where CUDA is absent")


def tiny(*overrides: str) -> TrainConfig:
    return load_config(preset="tiny", overrides=["iterations=1", *overrides])


def metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def tensors(value, prefix: str = ""):
    """(path, tensor) for every tensor in nested dicts and lists."""
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from tensors(v, f"{prefix}/{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from tensors(v, f"{prefix}[{i}]")


# ------------------------------------------------------------------ the setting, everywhere
@pytest.mark.parametrize("text", ["cpu", "cuda", "cuda:0", "cuda:12", "auto"])
def test_every_allowed_setting_parses(text):
    assert check_device(text) == text


def test_cpu_and_auto_resolve_on_any_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")


@pytest.mark.parametrize("text", ["gpu", "CPU", "cuda:", "cuda:-1", "cuda:x", "cuda0", " cpu",
                                  "", "mps", "cpu:0", "auto:0"])
def test_other_settings_are_refused_naming_flag_value_and_allowed(text):
    with pytest.raises(ValueError) as e:
        resolve_device(text, "--device")
    msg = str(e.value)
    assert f"--device={text!r}" in msg
    assert "allowed cpu, cuda, cuda:N" in msg and "auto" in msg


@without_cuda
@pytest.mark.parametrize("text", ["cuda", "cuda:0"])
def test_cuda_is_refused_where_it_is_absent(text):
    with pytest.raises(ValueError) as e:
        resolve_device(text, "--device")
    msg = str(e.value)
    assert f"--device={text!r}" in msg
    assert "CUDA is not available" in msg and "allowed cpu or auto" in msg


@needs_cuda
def test_a_gpu_index_this_machine_lacks_is_refused():
    n = torch.cuda.device_count()
    with pytest.raises(ValueError, match=f"has {n} GPU"):
        resolve_device(f"cuda:{n}")


def test_train_config_device_is_a_checked_field():
    assert TrainConfig().device == "cpu"
    # Syntax only: a run's config naming cuda still loads on a machine without one.
    assert tiny("device='cuda:1'").device == "cuda:1"
    with pytest.raises(ValueError, match=r"device='gpu' is not a device: allowed cpu, cuda"):
        tiny("device='gpu'")


@without_cuda
def test_training_on_cuda_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"device='cuda': CUDA is not available"):
        train(tiny("device='cuda'"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [
    ["eval", "--family", "cheetah-cripple", "--method", "random", "--out", "{out}"],
    ["eval-model", "{ckpt}", "--out", "{out}"],
])
def test_the_cli_refuses_a_bad_device_before_any_work(tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = [a.format(out=out, ckpt=tmp_path / "missing.pt") for a in command]
    assert main([*argv, "--device", "tpu"]) == 2
    assert "--device='tpu' is not a device: allowed cpu, cuda" in capsys.readouterr().err
    assert not out.exists()


def test_checkpoints_hold_cpu_tensors_and_load_onto_the_device_asked_for(tmp_path):
    path = train(tiny(), tmp_path / "run", progress=False)
    raw = torch.load(path, weights_only=True)  # no map_location: tensors as they were saved
    found = dict(tensors(raw))
    assert any(k.startswith("/learner/") for k in found)
    assert any(k.startswith("/optimizer/state/") for k in found)
    assert {t.device.type for t in found.values()} == {"cpu"}
    device = resolve_device("auto")
    learner, _ = learner_from_checkpoint(load_checkpoint(path), device)
    assert {p.device for p in learner.state_dict().values()} == {module_device(learner)}
    assert module_device(learner).type == device.type


def test_to_cpu_returns_cpu_payloads_as_they_are():
    state = tiny_learner(tiny_config("grbal")).state_dict()
    payload = {"learner": state, "rows": [1, (2.0, "x")], "rng": torch.get_rng_state()}
    assert to_cpu(payload) is payload


def test_a_run_resumes_on_another_device_setting(tmp_path):
    train(tiny("iterations=2"), tmp_path / "run", progress=False, stop_after=1)
    assert len(metrics(tmp_path / "run")) == 1
    # The same run, resumed with another device setting (auto: cuda where there is one).
    train(tiny("iterations=2", "device='auto'"), tmp_path / "run", resume=True, progress=False)
    assert [r["iteration"] for r in metrics(tmp_path / "run")] == ["0", "1"]
    with pytest.raises(ValueError, match="config differs"):  # the rest must still match
        train(tiny("iterations=2", "seed=4"), tmp_path / "run", resume=True, progress=False)


# ------------------------------------------------------------------ CUDA against the CPU
@needs_cuda
@pytest.mark.parametrize("learner", ["grbal", "rebal", "mb"])
def test_training_on_cuda_gives_the_cpu_losses(tmp_path, learner):
    # Two iterations: the second collects on-policy with the controller planning on cuda.
    over = [f"learner='{learner}'", "iterations=2"]
    train(tiny(*over), tmp_path / "cpu", progress=False)
    gpu = train(tiny(*over, "device='cuda'"), tmp_path / "gpu", progress=False)
    first_cpu, first_gpu = metrics(tmp_path / "cpu")[0], metrics(tmp_path / "gpu")[0]
    for key in ("train_loss", "val_loss"):
        np.testing.assert_allclose(float(first_gpu[key]), float(first_cpu[key]), rtol=1e-4)
    assert len(metrics(tmp_path / "gpu")) == 2
    raw = torch.load(gpu, weights_only=True)
    assert {t.device.type for _, t in tensors(raw)} == {"cpu"}


@needs_cuda
@pytest.mark.parametrize(("learner", "planner", "fields"), [
    ("grbal", "random_shooting", {}),
    ("grbal", "mppi", {"action_gains": True}),
    ("mbde", "cem", {}),
    ("rebal", "mppi", {}),
    ("rebal", "random_shooting", {"action_gains": True}),
])
def test_the_controller_on_cuda_acts_as_on_the_cpu(learner, planner, fields):
    cfg = tiny_config(learner, planner, **fields)
    family = get_family(cfg.family)
    data = collect_open_loop(family.robot, [family.test_conditions[0]], 12,
                             np.random.default_rng(0))
    on_cpu = tiny_learner(cfg)
    on_gpu = copy.deepcopy(on_cpu).to("cuda")
    cpu = build_controller(on_cpu, cfg, family, seed=3)
    gpu = build_controller(on_gpu, cfg, family, seed=3)
    assert gpu.device.type == "cuda" and gpu.generator.device.type == "cpu"
    for obs in data.obs[0]:  # the same observations (past the window M = 4): adapt and plan
        a_cpu, a_gpu = cpu(obs), gpu(obs)
        assert isinstance(a_gpu, np.ndarray) and a_gpu.dtype == np.float64
        np.testing.assert_allclose(a_gpu, a_cpu, rtol=1e-4, atol=1e-4)
        # The noise came from the CPU generator: both have drawn the same numbers.
        assert torch.equal(gpu.generator.get_state(), cpu.generator.get_state())


@needs_cuda
@pytest.mark.parametrize(("learner", "method"), [("grbal", "grbal"), ("mb", "mbde"),
                                                 ("rebal", "rebal")])
def test_evaluation_on_cuda_gives_the_cpu_returns(tmp_path, learner, method):
    # MPPI: its action is a smooth function of the predicted returns (no argmax to flip).
    path = train(tiny(f"learner='{learner}'", "planner.name='mppi'"), tmp_path / "run",
                 progress=False)
    family = get_family("cheetah-cripple")
    scenario = scenarios_for(family, ["fixed"])[0]
    eps = {device: method_episode(
        MethodSpec(method, LearnerMethod(str(path), mbde=method == "mbde", device=device)),
        family.name, scenario, seed=0, episode_steps=30, pred_k=3, pred_stride=5)
        for device in ("cpu", "cuda")}
    np.testing.assert_allclose(eps["cuda"].ret, eps["cpu"].ret, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(eps["cuda"].pred_error, eps["cpu"].pred_error, rtol=1e-3,
                               atol=1e-5)
    assert len(eps["cuda"].pred_error) > 0


@needs_cuda
def test_model_error_on_cuda_matches_the_cpu(tmp_path):
    path = train(tiny("learner='mb'"), tmp_path / "run", progress=False)
    res = {device: compare_models(load_models([str(path)], device), trajectories=1, steps=40,
                                  horizons=(1, 5)) for device in ("cpu", "cuda")}
    for m_cpu, m_gpu in zip(res["cpu"].models, res["cuda"].models, strict=True):
        assert m_cpu.name == m_gpu.name  # mb, and mbde from its weights
        for k in (1, 5):
            np.testing.assert_allclose(m_gpu.adapted[k].mean, m_cpu.adapted[k].mean, rtol=1e-3)
            np.testing.assert_allclose(m_gpu.prior[k].mean, m_cpu.prior[k].mean, rtol=1e-3)


@needs_cuda
def test_export_traces_a_cpu_copy_of_a_cuda_learner():
    from export.exporter import on_cpu

    learner = tiny_learner(tiny_config("mbde")).to("cuda")
    moved = on_cpu(learner)
    assert module_device(moved).type == "cpu" and module_device(learner).type == "cuda"
    for (k, a), (_, b) in zip(moved.state_dict().items(), learner.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b.cpu()), k


def test_adapt_train_device_flag_sets_the_config_field(tmp_path, capsys):
    """``adapt train --device X`` is ``--set device=X``: refused before any work when bad."""
    from adapt_cli import build_parser, main

    args = build_parser().parse_args(["train", "tiny", "--out", "x", "--set", "m=4",
                                      "--device", "auto"])
    assert args.overrides == ["m=4", "device='auto'"]
    assert main(["train", "tiny", "--out", str(tmp_path / "run"), "--device", "gpu"]) == 2
    assert "device='gpu' is not a device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
