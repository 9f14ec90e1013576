"""The artifact contract and its checks: file, tensor and metadata names shared by the
exporter and the runtime, the runtime's errors, and the validation of manifests and graphs.

The names are pure Python, so both sides and a C++ reimplementation can take them from one
place; the checks use numpy and onnxruntime only. docs/export.md describes the same contract
in prose.

Every value in an exported model's ``metadata_props`` is a JSON text (a string value is
therefore quoted: ``"cheetah"``), so a reader applies ``json.loads`` to every value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from file_errors import DamagedFileError, missing

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


class ArtifactError(ValueError):
    """An export folder or graph that cannot be used as it is; the message says why."""


class DamagedArtifactError(DamagedFileError, ArtifactError):
    """A damaged export file (manifest, graph or its metadata), in the message shape of every
    damaged file; an :class:`ArtifactError` too, so that callers catching one catch both."""


def damaged(path: Path, kind: str, expected: str, found: str | None = None
            ) -> DamagedArtifactError:
    """The refusal of ``path``, a file of an export folder, as damaged or not ``kind``."""
    return DamagedArtifactError("export", path, kind, expected, found)


#: What each kind of export file is, for :func:`damaged`.
MANIFEST_KIND = ("a deploy manifest", "a JSON object of manifest fields written by `adapt export` "
                 "or `adapt export-policy`")
GRAPH_KIND = ("an ONNX graph", "an ONNX model written by `adapt export` or `adapt export-policy`")


class ObservationError(ValueError):
    """A robot whose observations do not fit the controller (refused before the first step)."""


# --------------------------------------------------------------------------------------------
# Metadata and validation
# --------------------------------------------------------------------------------------------


def load_metadata(session: ort.InferenceSession, path: Path) -> dict[str, Any]:
    """The model's metadata_props, every value JSON-decoded."""
    raw = session.get_modelmeta().custom_metadata_map
    meta: dict[str, Any] = {}
    for key, text in raw.items():
        try:
            meta[key] = json.loads(text)
        except json.JSONDecodeError as e:
            raise damaged(path, GRAPH_KIND[0], "JSON text in every metadata value",
                          f"metadata {key}={text[:40]!r}") from e
    return meta


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """``folder/manifest.json`` as a dict; :class:`ArtifactError` if missing or garbled."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"export folder {str(folder)!r}: no such folder")
    path = artifact_file(folder, MANIFEST_FILE)
    try:
        manifest = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise damaged(path, *MANIFEST_KIND) from e
    if not isinstance(manifest, dict):
        raise damaged(path, *MANIFEST_KIND, f"a JSON {type(manifest).__name__}")
    return manifest


def deploy_kind(export_dir: str | Path) -> str:
    """What a deploy folder holds, from its manifest's ``kind``: ``"controller"`` or
    ``"policy"``.

    A manifest without ``kind`` is a controller (exports that predate the field), and so is a
    folder with ``controller.onnx`` but no manifest: the controller runtime reads only the
    graph's own metadata. Anything else is an :class:`ArtifactError` naming what was found.
    """
    folder = Path(export_dir)
    if not folder.is_dir():
        raise ArtifactError(f"export folder {str(folder)!r}: no such folder")
    if not (folder / MANIFEST_FILE).exists() and (folder / CONTROLLER_FILE).is_file():
        return KIND_CONTROLLER
    manifest = read_manifest(folder)
    kind = manifest.get(KIND, KIND_CONTROLLER)
    if kind not in KINDS:
        raise ArtifactError(f"{folder / MANIFEST_FILE}: {KIND}={kind!r}: allowed "
                            f"{KIND_CONTROLLER!r} (written by `adapt export`) or "
                            f"{KIND_POLICY!r} (written by `adapt export-policy`)")
    return kind


def _shape_of(arg: Any) -> list[int | str]:
    return [d if isinstance(d, int) else str(d) for d in (arg.shape or [])]


def check_io(path: Path, kind: str, declared: Sequence[Mapping[str, Any]],
              actual: Sequence[Any]) -> None:
    """Declared (metadata) inputs/outputs must match the graph's: names, float32, shapes."""
    have = {a.name: a for a in actual}
    want = [d["name"] for d in declared]
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    if missing or extra:
        raise ArtifactError(
            f"{path}: graph {kind}s {sorted(have)} do not match the metadata's {want} "
            f"(missing from the graph: {missing}, not in the metadata: {extra})")
    for d in declared:
        a = have[d["name"]]
        if a.type != "tensor(float)":
            raise ArtifactError(f"{path}: {kind} {a.name!r} has type {a.type}, expected "
                                "tensor(float) (float32)")
        got, exp = _shape_of(a), list(d["shape"])
        ok = len(got) == len(exp) and all(
            isinstance(e, str) or g == e for g, e in zip(got, exp, strict=True))
        if not ok:
            raise ArtifactError(f"{path}: {kind} {a.name!r} has shape {got}, the metadata "
                                f"declares {exp}")


def require(path: Path, cond: bool, what: str) -> None:
    if not cond:
        raise ArtifactError(f"{path}: {what}")


def artifact_file(export_dir: str | Path, name: str) -> Path:
    """``export_dir/name``, or an :class:`ArtifactError` saying what the folder holds."""
    folder = Path(export_dir)
    if not folder.is_dir():
        raise ArtifactError(f"export folder {str(folder)!r}: no such folder")
    path = folder / name
    if not path.is_file():
        present = [p.name for p in folder.iterdir()]
        raise DamagedArtifactError(
            "export", folder, "a deploy folder", f"{name}, as `adapt export` or `adapt "
            "export-policy` writes it", missing("file", [name], present))
    return path


def check_bounds(path: Path, low: Any, high: Any, act_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated action bounds (float32): ``act_dim`` finite values each, low < high."""
    for key, v in (("action_low", low), ("action_high", high)):
        require(path, isinstance(v, list) and len(v) == act_dim
                 and all(isinstance(x, (int, float)) for x in v),
                 f"metadata {key} has {len(v) if isinstance(v, list) else v!r} values, "
                 f"expected act_dim={act_dim}")
    lo, hi = np.array(low, float), np.array(high, float)
    require(path, bool(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)),
             f"metadata action bounds must be finite with low < high: low={lo.tolist()}, "
             f"high={hi.tolist()}")
    return lo.astype(np.float32), hi.astype(np.float32)


def validate_controller(path: Path, meta: Mapping[str, Any], sess: ort.InferenceSession,
                         robot: str | None) -> None:
    lacking = [k for k in (*COMMON_KEYS, *CONTROLLER_KEYS) if k not in meta]
    if lacking:
        raise damaged(path, "a controller graph",
                      f"the metadata keys of `adapt export` ({FORMAT} version {FORMAT_VERSION})",
                      missing("metadata key", lacking, meta))
    require(path, meta["format"] == FORMAT,
             f"metadata format={meta['format']!r}, expected {FORMAT!r}")
    require(path, meta["format_version"] == FORMAT_VERSION,
             f"metadata format_version={meta['format_version']!r}; this runtime reads "
             f"version {FORMAT_VERSION}: re-export with this package version")
    require(path, meta["graph"] == "controller",
             f"metadata graph={meta['graph']!r}: {CONTROLLER_FILE} must hold the controller "
             "graph")
    if robot is not None and meta["robot"] != robot:
        raise ArtifactError(f"{path} was exported for robot {meta['robot']!r}, not {robot!r}: "
                            "export a controller trained for this robot")
    do, da, m = meta["obs_dim"], meta["act_dim"], meta["m"]
    for key, v in (("obs_dim", do), ("act_dim", da), ("m", m)):
        require(path, isinstance(v, int) and v >= 1, f"metadata {key}={v!r} must be an int >= 1")
    check_bounds(path, meta["action_low"], meta["action_high"], da)
    check_io(path, "input", meta["inputs"], sess.get_inputs())
    check_io(path, "output", meta["outputs"], sess.get_outputs())
    shapes = {d["name"]: list(d["shape"]) for d in meta["inputs"]}
    shapes.update({d["name"]: list(d["shape"]) for d in meta["outputs"]})
    expect = {RECENT_OBS: [m, do], RECENT_ACT: [m, da], RECENT_NEXT_OBS: [m, do],
              RECENT_MASK: [m], OBS: [do], ACTION: [da]}
    for name, shape in expect.items():
        require(path, shapes.get(name) == shape,
                 f"{name} has shape {shapes.get(name)}, expected {shape} for obs_dim={do}, "
                 f"act_dim={da}, m={m}")
    plan = shapes.get(PLAN)
    require(path, plan is not None and len(plan) == 2 and plan[1] == da,
             f"{PLAN} has shape {plan}, expected [H, {da}]")
    noise = meta["noise"]
    require(path, all(isinstance(d, int) for d in shapes.get(NOISE, [None])),
             f"{NOISE} has shape {shapes.get(NOISE)}: the runtime needs a fixed number of "
             "candidates (export with --candidates N)")
    require(path, isinstance(noise, dict) and noise.get("shape") == shapes.get(NOISE)
             and noise.get("distribution") in ("uniform", "normal"),
             f"metadata noise={noise!r} must name distribution uniform|normal and the shape of "
             f"input {NOISE!r} {shapes.get(NOISE)}")
    if PREV_PLAN in shapes:
        require(path, shapes[PREV_PLAN] == plan,
                 f"{PREV_PLAN} has shape {shapes[PREV_PLAN]}, expected the plan shape {plan}")
        init = np.asarray(meta["initial_plan"], dtype=float)
        require(path, list(init.shape) == plan,
                 f"metadata initial_plan has shape {list(init.shape)}, expected {plan}")
    for name in shapes:
        if name.startswith(STATE_IN_PREFIX):
            out = STATE_OUT_PREFIX + name[len(STATE_IN_PREFIX):]
            require(path, shapes.get(out) == shapes[name],
                     f"state input {name!r} {shapes[name]} needs output {out!r} of the same "
                     f"shape, found {shapes.get(out)}")
