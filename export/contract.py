"""The artifact contract shared by the exporter and the runtime: file names, tensor names,
metadata keys.

Pure Python (no numpy, torch or onnxruntime), so both sides and a C++ reimplementation can
take the names from one place. docs/export.md describes the same contract in prose.

Every value in an exported model's ``metadata_props`` is a JSON text (a string value is
therefore quoted: ``"cheetah"``), so a reader applies ``json.loads`` to every value.
"""

from __future__ import annotations

#: ``metadata_props["format"]`` of every exported graph.
FORMAT = "adaptive-control-onnx"
#: Bumped whenever a name, shape or meaning below changes incompatibly.
FORMAT_VERSION = 1

# ---------------------------------------------------------------------------- files
CONTROLLER_FILE = "controller.onnx"
DYNAMICS_FILE = "dynamics.onnx"
ADAPT_STEP_FILE = "adapt_step.onnx"  # GrBAL and MB+DE
ENCODE_FILE = "encode.onnx"  # ReBAL
MANIFEST_FILE = "manifest.json"
POLICY_FILE = "policy.onnx"  # `adapt export-policy`: one step of a recurrent policy
REWARD_FILE = "reward.onnx"  # `adapt export-policy`: the task reward the policy reads

#: Graph role (``metadata_props["graph"]``) -> file name.
GRAPH_FILES = {
    "controller": CONTROLLER_FILE,
    "dynamics": DYNAMICS_FILE,
    "adapt_step": ADAPT_STEP_FILE,
    "encode": ENCODE_FILE,
}
#: Graph role -> file name in a policy deploy folder.
POLICY_GRAPH_FILES = {
    "policy": POLICY_FILE,
    "reward": REWARD_FILE,
}

# ---------------------------------------------------------------------------- deploy folders
#: ``manifest.json["kind"]``: what a deploy folder holds, so ``adapt deploy`` knows which
#: session runs it. A manifest without the key is a controller (exports that predate it).
KIND = "kind"
KIND_CONTROLLER = "controller"  # written by `adapt export`
KIND_POLICY = "policy"  # written by `adapt export-policy`
KINDS = (KIND_CONTROLLER, KIND_POLICY)

# ---------------------------------------------------------------------------- tensor names
RECENT_OBS = "recent_obs"
RECENT_ACT = "recent_act"
RECENT_NEXT_OBS = "recent_next_obs"
RECENT_MASK = "recent_mask"
RECENT_INPUTS = (RECENT_OBS, RECENT_ACT, RECENT_NEXT_OBS, RECENT_MASK)
OBS = "obs"
ACT = "act"
NOISE = "noise"
PREV_PLAN = "prev_plan"
ACTION = "action"
PLAN = "plan"
NEXT_OBS = "next_obs"
PREV_DELTA = "prev_delta"
HIDDEN = "hidden"  # ReBAL step graph: RNN hidden state h
CELL = "cell"  # ReBAL step graph, LSTM only: cell state c
NEXT_HIDDEN = "next_hidden"
NEXT_CELL = "next_cell"
CONTEXT_HIDDEN = "context_hidden"  # ReBAL encode graph outputs
CONTEXT_CELL = "context_cell"
LAST_DELTA = "last_delta"
PREV_ACTION = "prev_action"  # policy graph: the action executed at the previous step
PREV_REWARD = "prev_reward"  # policy graph: the reward of the previous transition
HIDDEN_OUT = "hidden_out"  # policy graph: feed back as ``hidden`` next step
REWARD = "reward"  # reward graph output
POLICY_INPUTS = (OBS, PREV_ACTION, PREV_REWARD, HIDDEN)
POLICY_OUTPUTS = (ACTION, HIDDEN_OUT)
REWARD_INPUTS = (OBS, ACT, NEXT_OBS)
REWARD_OUTPUTS = (REWARD,)
ACTION_GAINS = "action_gains"  # ReBAL with action gains: encode output, dynamics input
#: Prefix of the adapt_step outputs: one per weight tensor, named after the state_dict key.
ADAPTED_PREFIX = "adapted."
#: Recurrent state of a graph: every input ``state_in.X`` has an output ``state_out.X``; the
#: caller starts from zeros and feeds each ``state_out.X`` back as the next ``state_in.X``.
STATE_IN_PREFIX = "state_in."
STATE_OUT_PREFIX = "state_out."

# ---------------------------------------------------------------------------- metadata
#: Keys present in every exported graph's metadata_props.
COMMON_KEYS = (
    "format", "format_version", "graph", "robot", "family", "learner", "package_version",
    "obs_dim", "act_dim", "obs_layout", "action_low", "action_high", "control_timestep",
    "m", "normalizer", "reward", "adaptation", "planner", "inputs", "outputs", "state",
    "exporter",
)
#: Extra keys of controller.onnx.
CONTROLLER_KEYS = ("noise", "initial_plan", "window")
#: Optional policy manifest key: standard deviation, in action half-ranges, of the Gaussian
#: noise added to the policy's action (absent or 0: the mean action).
ACTION_STD = "action_std"
#: Keys of a policy folder's manifest.json that the runtime reads (and ACTION_STD if present).
POLICY_MANIFEST_KEYS = (
    "format", "format_version", KIND, "robot", "obs_dim", "act_dim", "hidden_size",
    "obs_layout", "action_low", "action_high", "control_timestep", "files", "graphs",
)

PLANNER_NAMES = ("random_shooting", "cem", "mppi")
