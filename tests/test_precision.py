"""Reduced-precision exports: which products are converted, how exactly, and what the
manifest says about the error against float32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from support import tiny_config, tiny_learner

from export.exporter import export_learner
from export.parity import ort_session, random_feed, read_metadata, run_session
from export.precision import convert, quantize_columns
from export.runtime import artifacts as C


def _graph() -> onnx.ModelProto:
    """y = relu(x @ W1 + b) @ W2 on the path from x; z = r @ W1 off it (like the adaptation,
    which reads the same weight); u = Gemm(x, W1ᵀ, transB) (left alone: not a plain product)."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 16)).astype(np.float32)
    w2 = (rng.standard_normal((16, 4)) * np.linspace(0.01, 3, 4)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b"], ["h"]),
             helper.make_node("Relu", ["h"], ["hr"]),
             helper.make_node("MatMul", ["hr", "w2"], ["y"]),
             helper.make_node("MatMul", ["r", "w1"], ["z"]),
             helper.make_node("Gemm", ["x", "w1t"], ["u"], transB=1)]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(w1.T.copy(), "w1t"),
             numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                      [5, 8]),
                                       helper.make_tensor_value_info("r", TensorProto.FLOAT,
                                                                     [3, 8])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
                           for n, shape in (("y", [5, 4]), ("z", [3, 16]), ("u", [5, 16]))],
                          inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


def _run(model: onnx.ModelProto, feed: dict) -> dict:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))


@pytest.fixture
def feed() -> dict:
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((5, 8)).astype(np.float32),
            "r": rng.standard_normal((3, 8)).astype(np.float32)}


def test_per_column_int8_is_within_half_a_step_of_every_weight():
    w = np.random.default_rng(0).standard_normal((32, 6)).astype(np.float32)
    w[:, 2] *= 100  # a column of another scale keeps its own step
    w[:, 5] = 0  # an all-zero column quantises to zeros (no division by zero)
    q, scale = quantize_columns(w)
    assert q.dtype == np.int8 and np.abs(q).max() <= 127
    assert np.all(np.abs(q * scale - w) <= scale / 2 + 1e-6)
    assert np.all(q[:, 5] == 0) and np.isfinite(scale).all()


def test_int8_converts_only_the_products_on_the_path_and_keeps_the_rest(feed):
    model = _graph()
    ref = _run(model, feed)
    conv = convert(model, "int8", ["x"])
    ops = [n.op_type for n in model.graph.node]
    assert conv.nodes == 2 and ops.count("DynamicQuantizeMatMul") == 2
    assert ops.count("MatMul") == 1 and ops.count("Gemm") == 1  # z = r @ W1 and the transB
    inits = {t.name: t for t in model.graph.initializer}
    assert inits["w1"].data_type == TensorProto.FLOAT  # still there for z
    assert "w2" not in inits  # its only user was converted
    # int8 values plus a float scale and an int8 zero point per column
    assert (conv.weight_bytes_fp32, conv.weight_bytes) == (4 * (8 * 16 + 16 * 4),
                                                          8 * 16 + 16 * 4 + 5 * (16 + 4))
    got = _run(model, feed)
    np.testing.assert_array_equal(got["z"], ref["z"])
    np.testing.assert_array_equal(got["u"], ref["u"])
    rel = np.abs(got["y"] - ref["y"]).mean() / np.abs(ref["y"]).mean()
    assert 0 < rel < 0.05


def test_bf16_rounds_the_weights_like_torch_and_computes_in_float32(feed):
    model = _graph()
    conv = convert(model, "bf16", ["x"])
    assert conv.nodes == 2 and conv.weight_bytes * 2 == conv.weight_bytes_fp32
    onnx.checker.check_model(model)
    got = _run(model, feed)
    w1 = numpy_helper.to_array(next(t for t in _graph().graph.initializer if t.name == "w1"))
    b = numpy_helper.to_array(next(t for t in _graph().graph.initializer if t.name == "b"))
    w1_bf16 = torch.tensor(w1).to(torch.bfloat16).float().numpy()
    h = np.maximum(feed["x"] @ w1_bf16 + b, 0)
    w2 = numpy_helper.to_array(next(t for t in _graph().graph.initializer if t.name == "w2"))
    want = h @ torch.tensor(w2).to(torch.bfloat16).float().numpy()
    np.testing.assert_allclose(got["y"], want, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(w1_bf16, w1)


def test_unknown_precision_is_refused_before_any_work(tmp_path: Path):
    cfg = tiny_config()
    with pytest.raises(ValueError, match=r"precision='int4'.*fp32, int8, bf16"):
        export_learner(tiny_learner(cfg), cfg, tmp_path / "x", precision="int4")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("learner,kw", [("grbal", {}), ("grbal", {"action_gains": True}),
                                        ("mb", {})])
def test_int8_export_quantises_the_planning_path_and_reports_its_error(tmp_path: Path,
                                                                       learner, kw):
    cfg = tiny_config(learner=learner, planner="mppi", hidden=(64, 64), candidates=32,
                      horizon=4, **kw)
    out = tmp_path / "onnx"
    res = export_learner(tiny_learner(cfg), cfg, out, record_steps=8, precision="int8",
                         latency_seconds=0.05)
    info = json.loads((out / C.MANIFEST_FILE).read_text())["precision"]
    assert info["name"] == "int8"
    assert set(info["graphs"]) == {"dynamics", "controller"}
    ctrl = onnx.load(str(out / C.CONTROLLER_FILE))
    quantised = [n for n in ctrl.graph.node if n.op_type == "DynamicQuantizeMatMul"]
    assert len(quantised) == info["graphs"]["controller"]["nodes"] > 0
    # The adaptation step stays float32: its graph is untouched, and inside the controller
    # the float32 weights still feed the window's forward and backward pass.
    if learner == "grbal":
        step = onnx.load(str(out / C.ADAPT_STEP_FILE))
        assert not any(n.op_type == "DynamicQuantizeMatMul" for n in step.graph.node)
        fp32_weights = {t.name for t in ctrl.graph.initializer
                        if t.data_type == TensorProto.FLOAT and len(t.dims) == 2}
        assert fp32_weights & {i for n in ctrl.graph.node for i in n.input}
    err = info["error_vs_fp32"]
    assert 0 < err["dynamics"]["relative_change_error"] < 0.1
    assert 0 <= err["controller"]["action_mean_abs"] < 0.5
    assert read_metadata(out / C.CONTROLLER_FILE)["precision"]["name"] == "int8"
    # The graph runs in ONNX Runtime and its action is within the bounds.
    meta = read_metadata(out / C.CONTROLLER_FILE)
    action = run_session(ort_session(out / C.CONTROLLER_FILE),
                         random_feed(meta, np.random.default_rng(0)))[C.ACTION]
    assert np.all(action >= np.asarray(meta["action_low"]) - 1e-6)
    assert np.all(action <= np.asarray(meta["action_high"]) + 1e-6)
    lat = res.latency
    assert lat is not None and 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["deadline_ms"] == pytest.approx(9.0)


def test_cli_export_warns_when_the_step_misses_the_deadline(tmp_path: Path, capsys):
    from adapt_cli import main

    run = tmp_path / "run"
    assert main(["train", "tiny", "--out", str(run), "--set", "learner=mb", "--set",
                 "decision_steps=1", "--quiet"]) == 0
    # 4096 candidates x horizon 40 of the tiny model cannot plan in 9 ms on one thread.
    assert main(["export", str(run), "--out", str(tmp_path / "slow"), "--planner", "mppi",
                 "--candidates", "4096", "--horizon", "40", "--verify-steps", "0",
                 "--no-verify"]) == 0
    captured = capsys.readouterr()
    assert "controller step on this machine" in captured.out
    assert "exceeds the deadline" in captured.err
    manifest = json.loads((tmp_path / "slow" / C.MANIFEST_FILE).read_text())
    assert manifest["latency_at_export"]["p99_ms"] > manifest["latency_at_export"][
        "deadline_ms"]


def test_deploy_preset_bakes_in_the_measured_planner_and_sizes_can_override(tmp_path: Path):
    from export.presets import DEPLOY_PRESETS

    cfg = tiny_config(planner="cem")
    learner = tiny_learner(cfg)
    preset = DEPLOY_PRESETS[("cheetah", "int8")]
    res = export_learner(learner, cfg, tmp_path / "a", record_steps=0, verify=False,
                         precision="int8", deploy_preset=True, latency_seconds=0)
    p = res.manifest["planner"]
    assert (p["name"], p["num_candidates"], p["horizon"]) == (
        preset.planner, preset.num_candidates, preset.horizon)
    assert res.manifest["deploy_preset"] == preset.measured
    res = export_learner(learner, cfg, tmp_path / "b", record_steps=0, verify=False,
                         deploy_preset=True, horizon=5, latency_seconds=0)
    fp32 = DEPLOY_PRESETS[("cheetah", "fp32")]
    assert (res.manifest["planner"]["num_candidates"], res.manifest["planner"]["horizon"]) == (
        fp32.num_candidates, 5)


def test_deploy_preset_is_refused_where_none_was_measured_or_with_a_planner(tmp_path: Path):
    cfg = tiny_config(family="cheetah-cripple@2")
    with pytest.raises(ValueError, match=r"no preset measured for robot 'cheetah@2'.*cheetah"):
        export_learner(tiny_learner(cfg), cfg, tmp_path / "x", deploy_preset=True)
    cfg = tiny_config()
    with pytest.raises(ValueError, match="planner='mppi' with the deploy preset"):
        export_learner(tiny_learner(cfg), cfg, tmp_path / "y", deploy_preset=True,
                       planner="mppi")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
