"""The names of robots and task families, and what they resolve to.

Every command takes a robot or a family by name; :func:`get_robot` and :func:`get_family`
resolve one, through one routine for both:

- a registered name: the built-in robots and families, those registered from Python
  (:func:`register_robot`, :func:`register_family`) and those of the spec files and stored
  documents loaded in this process (:func:`load_spec_file`, :func:`register_document`);
- a file: a spec file (``PATH.toml``; for a family ``PATH.toml#FAMILY``, the ``#`` part left
  out when the file holds one family) or, for a robot, a bare MJCF file (``PATH.xml``);
- either followed by ``@K`` (:data:`~sims.robots.FRAME_SKIP_MARK`): the same with each action
  held for K control steps, registered on first use when its base is, so the name works like
  any other.

This module sits above ``sims.robots``, ``sims.families`` and ``sims.specs``, which build the
objects; none of them imports it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from sims.families import BUILT_IN_FAMILIES, TaskFamily
from sims.robots import BUILT_IN_ROBOTS, FRAME_SKIP_MARK, Robot
from sims.specs import (
    SpecFile,
    build_family,
    document_robot,
    read_document,
    read_spec_file,
    robot_table,
    spec_file_families,
    spec_file_robot,
)

# ---------------------------------------------------------------- registered names
#: The robots every command knows by name: the built-in ones and those registered (by
#: :func:`register_robot` or by loading a spec file).
ROBOTS: dict[str, Robot] = {r.name: r for r in BUILT_IN_ROBOTS}

#: The families every command knows by name: the built-in ones and those registered (by
#: :func:`register_family` or by loading a spec file).
FAMILIES: dict[str, TaskFamily] = {f.name: f for f in BUILT_IN_FAMILIES}


def check_registered_name(name: str, frame_skip: int, what: str) -> None:
    """Refuse a name holding ``@`` unless it is ``BASE@K`` with ``K`` the object's frame skip
    (what :meth:`Robot.with_frame_skip` and ``TaskFamily.with_frame_skip`` name)."""
    head, mark, tail = name.rpartition(FRAME_SKIP_MARK)
    derived = (frame_skip > 1 and mark and FRAME_SKIP_MARK not in head and head
               and tail == str(frame_skip))
    if FRAME_SKIP_MARK in name and not derived:
        raise ValueError(f"{what} name={name!r}: {FRAME_SKIP_MARK!r} is reserved for frame "
                         f"skip (NAME{FRAME_SKIP_MARK}K names NAME with each action held for "
                         "K control steps): allowed a name without it")


def register_robot(robot: Robot) -> Robot:
    """Make ``robot`` known by its name to every command of this process.

    Registering the same robot again is a no-op; another robot under a name already taken is
    refused, so one name always means one model. ``@`` is reserved for frame skip: only a
    robot made by :meth:`Robot.with_frame_skip` carries it.
    """
    if not isinstance(robot, Robot):
        raise TypeError(f"register_robot takes a Robot, not {type(robot).__name__}")
    check_registered_name(robot.name, robot.frame_skip, "robot")
    return ROBOTS.setdefault(robot.name, registered_as(robot) or robot)


def registered_as(robot: Robot) -> Robot | None:
    """The robot registered under ``robot``'s name when it is the same model (equal, or loaded
    from the same spec table and MJCF text at another path), None when the name is free;
    another model under that name is refused, naming both."""
    have = ROBOTS.get(robot.name)
    if have is None or have == robot:
        return have
    if have.source and robot_table(have) == robot_table(robot) and (
            have.mjcf_sha256 == robot.mjcf_sha256):
        return have
    raise ValueError(f"robot name={robot.name!r} is already registered for another model: "
                     f"{robot.describe_model()} is not {have.describe_model()}; choose another "
                     "name")


def register_family(family: TaskFamily) -> TaskFamily:
    """Make ``family`` (and its robot) known by name to every command of this process.

    Registering an equal family again is a no-op; another family under a name already taken
    is refused.
    """
    if not isinstance(family, TaskFamily):
        raise TypeError(f"register_family takes a TaskFamily, not {type(family).__name__}")
    check_registered_name(family.name, family.frame_skip, "family")
    have = FAMILIES.get(family.name)
    if have is not None and have != family:
        raise ValueError(f"family name={family.name!r} is already registered for another "
                         f"distribution ({have.description!r}): choose another name")
    register_robot(family.robot)
    FAMILIES.setdefault(family.name, family)
    return FAMILIES[family.name]


# ---------------------------------------------------------------- spec files and documents
def load_spec_file(path: str | Path) -> SpecFile:
    """Read, validate and register the robot and families of the TOML spec file ``path``.

    Every error is a ValueError naming the file, the key, the value and what is allowed.
    """
    path = Path(path)
    data = read_spec_file(path)
    robot = spec_file_robot(data, path, ROBOTS)
    if robot is not None:
        robot = registered_as(robot) or robot  # a run may have registered it from elsewhere
    families = spec_file_families(data, path, robot, ROBOTS, FAMILIES)
    if robot is not None:
        robot = register_robot(robot)
    return SpecFile(path, robot, tuple(register_family(f) for f in families))


def register_document(text: str, where: str = "stored spec") -> TaskFamily | None:
    """Rebuild and register the family (and robot) of a ``sims.specs.spec_document``; None
    for "".

    Names already registered are kept when they describe the same robot and family, and
    refused, naming both, when they do not.
    """
    if not text:
        return None
    doc = read_document(text, where)
    robot = None
    if doc["robot"] is not None:
        robot = register_robot(document_robot(doc["robot"], where, ROBOTS))
    table = dict(doc["family"])
    have = FAMILIES.get(table["name"])
    if have is not None:
        if have.source and json.loads(have.source) == table:
            return have
        raise ValueError(f"{where}: family {table['name']!r} ({table['description']!r}) is not "
                         f"the registered family of that name ({have.description!r})")
    return register_family(build_family(table, robot, where, robots=ROBOTS, families=FAMILIES))


# ---------------------------------------------------------------- frame skip suffix
_FRAME_SKIP_DIGITS = re.compile(r"[1-9][0-9]*")


def _is_file_ref(ref: str) -> bool:
    """A spec or MJCF file reference without a frame skip (its path may hold an ``@``)."""
    path, _, member = ref.partition("#")
    return ref.endswith((".toml", ".xml")) or (
        path.endswith(".toml") and FRAME_SKIP_MARK not in member)


def split_frame_skip(ref: str, what: str) -> tuple[str, int]:
    """``ref`` without its frame-skip suffix, and the frame skip (1 without one).

    ``cheetah@2`` is ``("cheetah", 2)``; ``spec.toml#walk@2`` is ``("spec.toml#walk", 2)``.
    A malformed suffix (``cheetah@0``, ``cheetah@x``, ``cheetah@2@2``) is refused, ``what``
    (``robot``, ``family``) naming the field.
    """
    if FRAME_SKIP_MARK not in ref or _is_file_ref(ref):
        return ref, 1
    head, _, tail = ref.rpartition(FRAME_SKIP_MARK)
    example = f"{head.partition(FRAME_SKIP_MARK)[0] or 'cheetah'}{FRAME_SKIP_MARK}2"
    if not _FRAME_SKIP_DIGITS.fullmatch(tail):
        raise ValueError(f"{what}={ref!r}: the frame skip after {FRAME_SKIP_MARK!r} is "
                         f"{tail!r}: allowed a whole number >= 1 (e.g. {example})")
    if FRAME_SKIP_MARK in head and not _is_file_ref(head):
        raise ValueError(f"{what}={ref!r}: more than one {FRAME_SKIP_MARK!r}: allowed one "
                         f"frame-skip suffix (e.g. {example}); names themselves never hold "
                         f"{FRAME_SKIP_MARK!r}")
    return head, int(tail)


# ---------------------------------------------------------------- resolution
T = TypeVar("T", Robot, TaskFamily)


@dataclass(frozen=True)
class _Names(Generic[T]):
    """How the names of one kind of object (robots, families) resolve."""

    what: str  # the field errors name: robot, family
    registered: Mapping[str, T]
    register: Callable[[T], T]  # registers a frame-skipped object whose base is registered
    from_file: Callable[[str], T | None]  # the object a file reference names, None if none
    files: str  # the references from_file takes, for the error that lists what is allowed
    example: str  # a name to show the frame-skip suffix on


def _resolve(ref: str, names: _Names[T]) -> T:
    """The one resolution routine of :func:`get_robot` and :func:`get_family`: ``ref`` a
    registered name or a file reference, either optionally followed by ``@K``."""
    if ref in names.registered:
        return names.registered[ref]
    head, k = split_frame_skip(ref, names.what)
    if k > 1:
        base = _resolve(head, names)
        skipped = base.with_frame_skip(k)
        return names.register(skipped) if names.registered.get(base.name) is base else skipped
    found = names.from_file(ref)
    if found is None:
        raise ValueError(
            f"{names.what}={ref!r} is unknown: allowed {', '.join(names.registered)}"
            f"{names.files}, each optionally with a frame skip "
            f"(NAME{FRAME_SKIP_MARK}K, e.g. {names.example}{FRAME_SKIP_MARK}2)")
    return found


def _robot_file(ref: str) -> Robot | None:
    if ref.endswith(".toml"):
        return load_spec_file(ref).robot_for(ref)
    if ref.endswith(".xml"):
        return Robot.from_mjcf(ref)
    return None


def _family_file(ref: str) -> TaskFamily | None:
    path, _, member = ref.partition("#")
    return load_spec_file(path).family(member or None) if path.endswith(".toml") else None


def _register_skipped_family(family: TaskFamily) -> TaskFamily:
    # over the registered robot of that name, so one name is one object
    return register_family(dataclasses.replace(family, robot=get_robot(family.robot.name)))


_ROBOT_NAMES: _Names[Robot] = _Names(
    "robot", ROBOTS, register_robot, _robot_file,
    ", a robot spec file (.toml, see docs/own-robot.md) or an MJCF .xml file", "cheetah")
_FAMILY_NAMES: _Names[TaskFamily] = _Names(
    "family", FAMILIES, _register_skipped_family, _family_file,
    " or a spec file PATH.toml[#FAMILY] (see docs/own-robot.md)", "cheetah-cripple")


def get_robot(name: str | Path | Robot) -> Robot:
    """The robot ``name`` resolves to (see the module docstring): a registered name, a robot
    spec file (``*.toml``, see ``sims.specs``) or a bare MJCF file (``*.xml``, no legs,
    physics-rate control), each optionally followed by ``@K``."""
    return name if isinstance(name, Robot) else _resolve(str(name), _ROBOT_NAMES)


def get_family(name: str | TaskFamily) -> TaskFamily:
    """The family ``name`` resolves to (see the module docstring): a registered name, or a
    spec file with the family's name after ``#`` (``my_robot.toml#my-family``; the ``#``
    part may be left out when the file holds one family; see ``sims.specs``), each optionally
    followed by ``@K``."""
    return name if isinstance(name, TaskFamily) else _resolve(str(name), _FAMILY_NAMES)


def decision_family(name: str | TaskFamily, decision_steps: int = 0) -> TaskFamily:
    """The family a learned controller plans in: ``name`` (as :func:`get_family` takes it) with
    each action held for ``decision_steps`` control steps, ``0`` meaning its robot's default
    (:attr:`Robot.decision_steps`: the cheetah decides every 5 steps, 50 ms). A name that
    already carries a frame skip (``NAME@K``) keeps it; ``decision_steps`` is then 0 or K.
    ``decision_steps=1`` plans at every control step."""
    family = get_family(name)
    if isinstance(decision_steps, bool) or not isinstance(decision_steps, int) or (
            decision_steps < 0):
        raise ValueError(f"decision_steps={decision_steps!r}: allowed an integer >= 0 (0: the "
                         f"robot's default, {family.robot.decision_steps} for "
                         f"{family.robot.name!r})")
    if family.frame_skip > 1:
        if decision_steps not in (0, family.frame_skip):
            raise ValueError(
                f"decision_steps={decision_steps} contradicts family={family.name!r}, which "
                f"holds each action {family.frame_skip} control steps: allowed 0 or "
                f"{family.frame_skip}, or name the family without {FRAME_SKIP_MARK}K")
        return family
    k = decision_steps or family.robot.decision_steps
    return get_family(f"{family.name}{FRAME_SKIP_MARK}{k}") if k > 1 else family
