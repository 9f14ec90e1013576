"""Export a trained policy to ONNX: one control step, the hidden state as input and output.

Graph: ``(obs [1, obs_dim], prev_action [1, act_dim], prev_reward [1, 1], hidden [1, H])
-> (action [1, act_dim], hidden_out [1, H])``, float32. The observation and reward normalisers
and the action bounds are baked in; the action is the deterministic (tanh-squashed) mean.
``metadata_props`` record the robot, family, sizes, hidden size and control timestep, so a
runtime can check it drives the right robot at the right rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptive_control.checkpoint import load_checkpoint
from policies.training import policy_from_checkpoint
from sims.families import get_family

INPUTS = ("obs", "prev_action", "prev_reward", "hidden")
OUTPUTS = ("action", "hidden_out")


def export_policy(checkpoint: str | Path | dict[str, Any], out: str | Path) -> Path:
    """Write ``out`` (.onnx) from an `adapt train-policy` checkpoint; returns the path."""
    import onnx

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(
        Path(checkpoint) / "checkpoint.pt" if Path(checkpoint).is_dir() else checkpoint)
    policy, cfg = policy_from_checkpoint(ckpt)
    robot = get_family(cfg.family).robot
    args = (torch.zeros(1, policy.obs_dim), torch.zeros(1, policy.act_dim), torch.zeros(1, 1),
            policy.initial_hidden(1))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.onnx.export(policy, args, dynamo=True, input_names=list(INPUTS),
                                    output_names=list(OUTPUTS), external_data=False)
    model = program.model_proto
    meta = {"robot": robot.name, "family": cfg.family, "method": cfg.method,
            "arch": cfg.net.arch, "obs_dim": policy.obs_dim, "act_dim": policy.act_dim,
            "hidden_size": policy.hidden_dim, "control_timestep": robot.control_timestep,
            "action_low": policy.act_low.tolist(), "action_high": policy.act_high.tolist()}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    tmp = out.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


class OnnxPolicy:
    """Runs an exported policy in ONNX Runtime, one step at a time."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.hidden_size = int(self.metadata["hidden_size"])

    def initial_hidden(self) -> np.ndarray:
        return np.zeros((1, self.hidden_size), np.float32)

    def step(self, obs: np.ndarray, prev_action: np.ndarray, prev_reward: float,
             hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {"obs": np.asarray(obs, np.float32).reshape(1, -1),
                 "prev_action": np.asarray(prev_action, np.float32).reshape(1, -1),
                 "prev_reward": np.array([[prev_reward]], np.float32),
                 "hidden": hidden}
        action, hidden = self.session.run(list(OUTPUTS), feeds)
        return action[0], hidden
