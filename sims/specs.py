"""Spec files: your own robot and its task families as one TOML file, and the documents that
make checkpoints and exports self-describing.

A spec file holds a ``[robot]`` table (the MJCF path relative to the file, torso, legs,
control rate, reward weights, limits) and any number of ``[[family]]`` tables (train and
held-out conditions in the condition syntax of ``sims.conditions.parse_condition``); a file
with families only names a registered robot in each of them. Every key is validated against
the model. This module builds robots and families from the tables, checked against the names
already registered (passed in); ``sims.registry`` registers them (``load_spec_file``), so
their names then work like the built-in ones. ``get_robot("my_robot.toml")`` and
``get_family("my_robot.toml#my-family")`` load a file; see docs/own-robot.md for a complete
example.

Checkpoints and exports store :func:`artifact_spec`: the robot's identity (MJCF sha256 and
control timestep) and, for a spec family, a document holding the parsed tables and the MJCF
text, from which ``sims.registry.register_document`` rebuilds the robot and the family in a
process that has never seen the spec file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from file_errors import DamagedFileError
from sims.conditions import Condition, parse_condition
from sims.families import TaskFamily
from sims.robots import FRAME_SKIP_MARK, Leg, LegError, Robot

DOCUMENT_FORMAT = "adaptive-control-spec"
DOCUMENT_VERSION = 1

FILE_KEYS = ("robot", "family")
ROBOT_KEYS = ("name", "mjcf", "torso", "n_substeps", "control_timestep", "decision_steps",
              "legs", "reward", "limits", "init_noise", "description")
REWARD_KEYS = ("ctrl_cost", "alive_bonus", "tilt_penalty", "tilt_threshold")
LIMIT_KEYS = ("max_slope_deg", "max_payload_kg")
LEG_KEYS = ("name", "actuators", "bodies")
FAMILY_KEYS = ("name", "robot", "description", "train", "test", "switch_time_s")


@dataclass(frozen=True)
class UniformChoice:
    """A spec family's training sampler: one of its train conditions, uniformly."""

    conditions: tuple[Condition, ...]

    def __call__(self, rng: np.random.Generator) -> Condition:
        return self.conditions[int(rng.integers(len(self.conditions)))]


@dataclass(frozen=True)
class OneOf:
    """A spec family's held-out test: the condition is one of its test conditions."""

    conditions: tuple[Condition, ...]

    def __call__(self, condition: Condition) -> bool:
        return condition in self.conditions


@dataclass(frozen=True)
class SpecFile:
    """A loaded spec file: its robot (None when it only adds families) and its families."""

    path: Path
    robot: Robot | None
    families: tuple[TaskFamily, ...]

    def robot_for(self, ref: str) -> Robot:
        if self.robot is None:
            raise ValueError(f"robot={ref!r}: {self.path} has no [robot] table; its families "
                             f"run on {', '.join(sorted({f.robot.name for f in self.families}))}")
        return self.robot

    def family(self, name: str | None = None) -> TaskFamily:
        """The family called ``name``, or the only one when ``name`` is None."""
        names = [f.name for f in self.families]
        if name is None:
            if len(self.families) != 1:
                raise ValueError(f"family={str(self.path)!r} holds {len(names)} families: "
                                 f"name one as {self.path}#NAME, allowed "
                                 f"{', '.join(names) or 'none (add a [[family]] table)'}")
            return self.families[0]
        for f in self.families:
            if f.name == name:
                return f
        raise ValueError(f"family={name!r} is not in {self.path}: allowed "
                         f"{', '.join(names) or 'none (add a [[family]] table)'}")


def read_spec_file(path: Path) -> dict[str, Any]:
    """The tables of the TOML spec file ``path``, its top-level keys checked."""
    if not path.is_file():
        raise ValueError(f"spec={str(path)!r}: no such file")
    expected = "TOML text with a [robot] or [[family]] table (docs/own-robot.md)"
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DamagedFileError("spec", path, "a spec file", expected, detail=f"TOML: {e}") from e
    if not data:  # empty, or comments only
        raise DamagedFileError("spec", path, "a spec file", expected)
    _check_keys(data, FILE_KEYS, str(path), "")
    return data


def spec_file_robot(data: dict[str, Any], path: Path,
                    robots: Mapping[str, Robot]) -> Robot | None:
    """The robot of the ``[robot]`` table of :func:`read_spec_file`'s ``data`` (its MJCF
    relative to ``path``), None without one; ``robots`` are the registered robots."""
    if "robot" not in data:
        return None
    where = str(path)
    table = _table(data["robot"], where, "robot")
    return build_robot(_resolve_mjcf(table, path.parent, where), where, robots=robots)


def spec_file_families(data: dict[str, Any], path: Path, robot: Robot | None,
                       robots: Mapping[str, Robot],
                       families: Mapping[str, TaskFamily]) -> tuple[TaskFamily, ...]:
    """The families of the ``[[family]]`` tables of :func:`read_spec_file`'s ``data``, over
    the file's ``robot`` or the registered ``robots`` they name; ``families`` are the
    registered families."""
    where = str(path)
    family_tables = data.get("family", [])
    if not isinstance(family_tables, list):
        raise ValueError(f"{where}: family={family_tables!r}: allowed [[family]] tables")
    if robot is None and not family_tables:
        raise ValueError(f"{where}: holds neither a [robot] table nor a [[family]] table")
    built = tuple(build_family(_table(t, where, f"family[{i}]"), robot, where, f"family[{i}]",
                               robots=robots, families=families)
                  for i, t in enumerate(family_tables))
    names = [f.name for f in built]
    for n in names:
        if names.count(n) > 1:
            raise ValueError(f"{where}: family.name={n!r} appears twice: names must be unique")
    return built


# ------------------------------------------------------------------------------ building
def build_robot(table: dict[str, Any], where: str, mjcf_text: str | None = None, *,
                robots: Mapping[str, Robot]) -> Robot:
    """A Robot from a ``[robot]`` table whose ``mjcf`` is already an absolute path; its name
    may not be one of the registered ``robots`` built in Python."""
    _check_keys(table, ROBOT_KEYS, where, "robot.")
    for key in ("name", "mjcf"):
        if key not in table:
            raise ValueError(f"{where}: robot.{key} is missing: a robot needs "
                             f"{', '.join(('name', 'mjcf'))}")
    name = _name(table["name"], where, "robot.name")
    if name in robots and not robots[name].source:
        raise ValueError(f"{where}: robot.name={name!r} is taken by a robot built in Python: "
                         "choose another name")
    mjcf = Path(_string(table["mjcf"], where, "robot.mjcf"))
    reward = _table(table.get("reward", {}), where, "robot.reward")
    _check_keys(reward, REWARD_KEYS, where, "robot.reward.")
    limits = _table(table.get("limits", {}), where, "robot.limits")
    _check_keys(limits, LIMIT_KEYS, where, "robot.limits.")
    numbers = {f"reward.{k}": v for k, v in reward.items()}
    numbers.update({f"limits.{k}": v for k, v in limits.items()})
    if "init_noise" in table:
        numbers["init_noise"] = table["init_noise"]
    fields = {key.split(".")[-1]: _number(v, where, f"robot.{key}") for key, v in numbers.items()}
    for key in ("limits.max_slope_deg", "limits.max_payload_kg", "init_noise"):
        if key in numbers and not fields[key.split(".")[-1]] >= 0:
            raise ValueError(f"{where}: robot.{key}={numbers[key]!r}: allowed a number >= 0")
    legs = []
    leg_tables = table.get("legs", [])
    if not isinstance(leg_tables, list):
        raise ValueError(f"{where}: robot.legs={leg_tables!r}: allowed [[robot.legs]] tables")
    for i, leg in enumerate(leg_tables):
        key = f"robot.legs[{i}]"
        leg = _table(leg, where, key)
        _check_keys(leg, LEG_KEYS, where, f"{key}.")
        for k in LEG_KEYS:
            if k not in leg:
                raise ValueError(f"{where}: {key}.{k} is missing: a leg has "
                                 f"{', '.join(LEG_KEYS)}")
        legs.append(Leg(_string(leg["name"], where, f"{key}.name"),
                        _strings(leg["actuators"], where, f"{key}.actuators"),
                        _strings(leg["bodies"], where, f"{key}.bodies")))
    leg_names = [leg.name for leg in legs]
    for n in leg_names:
        if leg_names.count(n) > 1:
            raise ValueError(f"{where}: robot.legs name={n!r} appears twice: names must be "
                             "unique")
    kwargs: dict[str, Any] = {}
    if "torso" in table:
        kwargs["torso"] = _string(table["torso"], where, "robot.torso")
    if "description" in table:
        if not isinstance(table["description"], str):
            raise ValueError(f"{where}: robot.description={table['description']!r}: allowed "
                             "a string")
        kwargs["description"] = table["description"]
    if "decision_steps" in table:
        k = table["decision_steps"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"{where}: robot.decision_steps={k!r}: allowed an integer >= 1 "
                             "(control steps per decision of a learned controller)")
        kwargs["decision_steps"] = k
    try:
        robot = Robot.from_mjcf(mjcf, name=name, legs=tuple(legs), mjcf_text=mjcf_text,
                                **kwargs, **fields)
    except LegError as e:  # keeps its type: a leg that does not fit the body tree
        raise LegError(f"{where}: robot: {e}") from e
    except DamagedFileError:
        raise  # names the MJCF file itself
    except ValueError as e:
        raise ValueError(f"{where}: robot: {e}") from e
    robot = _with_control_rate(robot, table, where)
    normalised = {
        "name": robot.name, "mjcf": str(mjcf), "torso": robot.torso,
        "n_substeps": robot.n_substeps, "decision_steps": robot.decision_steps,
        "description": robot.description,
        "legs": [{"name": leg.name, "actuators": list(leg.actuators), "bodies": list(leg.bodies)}
                 for leg in robot.legs],
        "reward": {k: getattr(robot, k) for k in REWARD_KEYS},
        "limits": {k: getattr(robot, k) for k in LIMIT_KEYS},
        "init_noise": robot.init_noise,
    }
    return _replace(robot, source=json.dumps(normalised, sort_keys=True))


def _with_control_rate(robot: Robot, table: dict[str, Any], where: str) -> Robot:
    if "n_substeps" in table and "control_timestep" in table:
        raise ValueError(f"{where}: robot.n_substeps and robot.control_timestep both given: "
                         "allowed one of them")
    if "n_substeps" in table:
        n = table["n_substeps"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{where}: robot.n_substeps={n!r}: allowed an integer >= 1")
        return _replace(robot, n_substeps=n)
    if "control_timestep" in table:
        dt = _number(table["control_timestep"], where, "robot.control_timestep")
        ts = robot.timestep
        n = round(dt / ts) if dt > 0 else 0
        if n < 1 or not math.isclose(n * ts, dt, rel_tol=1e-6):
            raise ValueError(f"{where}: robot.control_timestep={dt!r}: allowed a whole multiple "
                             f"of the MJCF timestep {ts:g} s (e.g. {ts:g}, {2 * ts:g})")
        return _replace(robot, n_substeps=n)
    return robot


def build_family(table: dict[str, Any], file_robot: Robot | None, where: str,
                 key: str = "family", *, robots: Mapping[str, Robot],
                 families: Mapping[str, TaskFamily]) -> TaskFamily:
    """A TaskFamily from a ``[[family]]`` table; its robot is the file's, or the one of the
    registered ``robots`` its ``robot`` key names; its name may not be one of the registered
    ``families`` built in Python."""
    _check_keys(table, FAMILY_KEYS, where, f"{key}.")
    for k in ("name", "train", "test"):
        if k not in table:
            raise ValueError(f"{where}: {key}.{k} is missing: a family needs name, train "
                             "(conditions to draw from) and test (held-out conditions)")
    name = _name(table["name"], where, f"{key}.name")
    if name in families and not families[name].source:
        raise ValueError(f"{where}: {key}.name={name!r} is taken by a family built in Python: "
                         "choose another name")
    if "robot" in table:
        robot_name = _string(table["robot"], where, f"{key}.robot")
        if file_robot is not None and robot_name == file_robot.name:
            robot = file_robot
        elif robot_name in robots:
            robot = robots[robot_name]
        else:
            allowed = [*robots] + ([file_robot.name] if file_robot is not None else [])
            raise ValueError(f"{where}: {key}.robot={robot_name!r} is unknown: allowed "
                             f"{', '.join(dict.fromkeys(allowed))}")
    elif file_robot is not None:
        robot = file_robot
    else:
        raise ValueError(f"{where}: {key}.robot is missing: a file without a [robot] table "
                         f"names the robot of each family (allowed {', '.join(robots)})")
    splits = {}
    for split in ("train", "test"):
        texts = _strings(table[split], where, f"{key}.{split}")
        if not texts:
            raise ValueError(f"{where}: {key}.{split}=[]: allowed a non-empty list of "
                             "conditions (e.g. \"disabled:hip\", \"payload:1.5\")")
        conds = []
        for i, text in enumerate(texts):
            try:
                conds.append(parse_condition(text, robot))
            except ValueError as e:
                raise ValueError(f"{where}: {key}.{split}[{i}]={text!r}: {e}") from e
        splits[split] = tuple(conds)
    both = [c.label for c in splits["train"] if c in splits["test"]]
    if both:
        raise ValueError(f"{where}: {key}: {', '.join(both)} is both a train and a test "
                         "condition: a held-out condition is never trained on")
    switch = _number(table.get("switch_time_s", 3.0), where, f"{key}.switch_time_s")
    if not switch > 0:
        raise ValueError(f"{where}: {key}.switch_time_s={switch!r}: allowed seconds > 0")
    description = (_string(table["description"], where, f"{key}.description")
                   if "description" in table else
                   f"train: {'; '.join(c.label for c in splits['train'])}; held out: "
                   f"{'; '.join(c.label for c in splits['test'])}")
    normalised = {"name": name, "robot": robot.name, "description": description,
                  "train": [str(t).strip() for t in table["train"]],
                  "test": [str(t).strip() for t in table["test"]], "switch_time_s": switch}
    return TaskFamily(name=name, robot=robot, description=description,
                      train_sampler=UniformChoice(splits["train"]),
                      test_conditions=splits["test"], is_held_out=OneOf(splits["test"]),
                      switch_time_s=switch, source=json.dumps(normalised, sort_keys=True))


# ------------------------------------------------------------------------------ artifacts
def robot_identity(robot: Robot) -> dict[str, Any]:
    """What a trained model is tied to: the robot's name, MJCF hash and control timestep."""
    return {"name": robot.name, "mjcf_sha256": robot.mjcf_sha256,
            "control_timestep": robot.control_timestep}


def check_robot_identity(stored: dict[str, Any], robot: Robot, what: str) -> None:
    """Refuse ``robot`` when ``stored`` (a :func:`robot_identity` from a checkpoint or export)
    names another model: another name, MJCF hash or control timestep."""
    have = robot_identity(robot)
    diff = [k for k in ("name", "mjcf_sha256") if stored.get(k) != have[k]]
    if not math.isclose(float(stored.get("control_timestep", math.nan)),
                        have["control_timestep"], rel_tol=1e-9):
        diff.append("control_timestep")
    if diff:
        def show(d: dict[str, Any]) -> str:
            return (f"robot {d.get('name')!r} (mjcf sha256 {str(d.get('mjcf_sha256'))[:12]}, "
                    f"control step {d.get('control_timestep')} s)")
        raise ValueError(f"{what} was made for {show(stored)}, not {show(have)}: they differ "
                         f"in {', '.join(diff)}")


def spec_document(family: TaskFamily) -> str:
    """The JSON document ``sims.registry.register_document`` rebuilds ``family`` from ("" for a
    built-in family): the family table, the robot table and the robot's MJCF text."""
    if not family.source:
        return ""
    robot = family.robot
    robot_doc = None
    if robot.source:
        text = (robot.mjcf_text if robot.mjcf_text is not None
                else robot.xml.read_text())
        robot_doc = {**json.loads(robot.source), "mjcf_sha256": robot.mjcf_sha256,
                     "mjcf_text": text}
    return json.dumps({"format": DOCUMENT_FORMAT, "version": DOCUMENT_VERSION,
                       "robot": robot_doc, "family": json.loads(family.source)},
                      sort_keys=True)


def artifact_spec(family: TaskFamily) -> dict[str, Any]:
    """What a checkpoint or export stores about its family and robot: ``spec`` (the
    :func:`spec_document`, "" for a built-in family) and ``robot_identity``."""
    return {"spec": spec_document(family), "robot_identity": robot_identity(family.robot)}


def read_document(text: str, where: str) -> dict[str, Any]:
    """The tables of a non-empty :func:`spec_document`, its format and version checked."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: spec is not valid JSON ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != DOCUMENT_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else doc
        raise ValueError(f"{where}: spec format={found!r}: allowed {DOCUMENT_FORMAT!r}")
    if doc.get("version") != DOCUMENT_VERSION:
        raise ValueError(f"{where}: spec version={doc.get('version')!r}: this version reads "
                         f"{DOCUMENT_VERSION}")
    return doc


def robot_table(robot: Robot) -> dict[str, Any]:
    """The robot's spec table without the MJCF's path (where the file is is not the model);
    empty for a robot built in Python."""
    table = json.loads(robot.source) if robot.source else {}
    table.pop("mjcf", None)
    return table


def document_robot(table: dict[str, Any], where: str, robots: Mapping[str, Robot]) -> Robot:
    """The robot of a :func:`read_document` robot table: the one of the registered ``robots``
    under its name when it is the same model (another model is refused, naming both), else
    built from the table (from the MJCF file when it is still there unchanged, so included
    meshes resolve, else from the stored text)."""
    table = dict(table)
    sha, text = table.pop("mjcf_sha256"), table.pop("mjcf_text")
    have = robots.get(table["name"])
    if have is not None:
        theirs = {k: v for k, v in table.items() if k != "mjcf"}
        if have.mjcf_sha256 == sha and robot_table(have) == theirs:
            return have
        stored = {"name": table["name"], "mjcf_sha256": sha,
                  "control_timestep": _table_timestep(table, text)}
        check_robot_identity(stored, have, where)
        raise ValueError(f"{where}: robot {table['name']!r} is not the registered robot of "
                         "that name: their spec tables differ (legs, reward or limits)")
    path = Path(table["mjcf"])
    same_file = path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha
    return build_robot(table, where, None if same_file else text, robots=robots)


def _table_timestep(table: dict[str, Any], text: str) -> float:
    return float(mujoco.MjSpec.from_string(text).compile().opt.timestep) * table["n_substeps"]


# ------------------------------------------------------------------------------ validation
def _resolve_mjcf(table: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    if "mjcf" not in table:
        raise ValueError(f"{where}: robot.mjcf is missing: the MJCF path, relative to the "
                         "spec file")
    mjcf = Path(_string(table["mjcf"], where, "robot.mjcf"))
    path = (mjcf if mjcf.is_absolute() else base / mjcf).resolve()
    if not path.is_file():
        raise ValueError(f"{where}: robot.mjcf={str(mjcf)!r}: no such file ({path})")
    return {**table, "mjcf": str(path)}


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str,
                prefix: str) -> None:
    for k in table:
        if k not in allowed:
            raise ValueError(f"{where}: {prefix}{k} is an unknown key: allowed "
                             f"{', '.join(prefix + a for a in allowed)}")


def _table(v: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"{where}: {key}={v!r}: allowed a table")
    return v


def _string(v: Any, where: str, key: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{where}: {key}={v!r}: allowed a non-empty string")
    return v.strip()


def _name(v: Any, where: str, key: str) -> str:
    """A robot or family name: a non-empty string without the frame-skip mark, which
    ``NAME@K`` references add (``spec.toml#walk@2``)."""
    name = _string(v, where, key)
    if FRAME_SKIP_MARK in name:
        raise ValueError(f"{where}: {key}={name!r}: {FRAME_SKIP_MARK!r} is reserved for frame "
                         f"skip (a reference NAME{FRAME_SKIP_MARK}K holds each action for K "
                         f"control steps): allowed a name without it")
    return name


def _strings(v: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ValueError(f"{where}: {key}={v!r}: allowed a list of non-empty strings")
    return tuple(x.strip() for x in v)


def _number(v: Any, where: str, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where}: {key}={v!r}: allowed a finite number")
    return float(v)


def _replace(robot: Robot, **changes: Any) -> Robot:
    return dataclasses.replace(robot, **changes)
