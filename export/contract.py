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

#: Graph role (``metadata_props["graph"]``) -> file name.
GRAPH_FILES = {
    "controller": CONTROLLER_FILE,
    "dynamics": DYNAMICS_FILE,
    "adapt_step": ADAPT_STEP_FILE,
    "encode": ENCODE_FILE,
}

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

PLANNER_NAMES = ("random_shooting", "cem", "mppi")
