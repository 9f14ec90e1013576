"""Legs checked against the MJCF body tree when a spec file is loaded (``Robot.check_legs``).

A leg's bodies hang below the torso (never the torso itself), no body or actuator is in two
legs, and a leg's actuators drive joints of its own bodies. The three mis-declarations found
in use are refused by name; a seeded generator then writes over a thousand spec files from the
strider example (legs shuffled, split and merged; the torso or the world body added; bodies and
actuators shared or swapped between legs; actuators of joints outside their leg) and checks
each against an oracle read from the MJCF with ElementTree, independent of the library: every
mis-declared file is refused with one line naming a leg and an offending element, nothing is
written, and every well-declared file loads with its legs as written.
"""

from __future__ import annotations

import dataclasses
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adapt_cli import main
from sims.conditions import parse_condition
from sims.registry import load_spec_file
from sims.robots import CHEETAH, LEG_RULES, QUADRUPED, Leg, LegError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "own_robot"
N_CASES = 1200
CLI_EVERY = 60  # every 60th case also goes through `adapt` (render or collect)


@pytest.fixture
def work(tmp_path):
    shutil.copy(EXAMPLE / "strider.xml", tmp_path / "strider.xml")
    return tmp_path


# ------------------------------------------------------------------ spec text
def spec_text(name: str, legs: list[tuple[str, list[str], list[str]]]) -> str:
    """A strider spec file named ``name`` with ``legs`` (name, actuators, bodies) and one
    family (for `adapt sims collect`)."""
    def strings(xs: list[str]) -> str:
        return "[" + ", ".join(f'"{x}"' for x in xs) + "]"
    out = [f'[robot]\nname = "{name}"\nmjcf = "strider.xml"\ntorso = "torso"\n'
           "control_timestep = 0.02\n"]
    for leg, acts, bodies in legs:
        out.append(f'[[robot.legs]]\nname = "{leg}"\nactuators = {strings(acts)}\n'
                   f"bodies = {strings(bodies)}\n")
    out.append(f'[[family]]\nname = "{name}-fam"\ntrain = ["healthy"]\ntest = ["payload:1.0"]\n')
    return "\n".join(out)


STRIDER_LEGS = [("back", ["back_hip", "back_knee"], ["back_thigh", "back_shin"]),
                ("front", ["front_hip", "front_knee"], ["front_thigh", "front_shin"])]


# ------------------------------------------------------------------ the oracle
@dataclasses.dataclass(frozen=True)
class Tree:
    """The strider's body tree, joints and actuators, read with ElementTree (not MuJoCo)."""

    parent: dict[str, str]  # body -> parent body ("world" for top-level bodies)
    joint_body: dict[str, str]
    actuator_joint: dict[str, str]
    torso: str = "torso"

    @classmethod
    def read(cls, path: Path) -> Tree:
        root = ET.parse(path).getroot()
        parent, joint_body = {}, {}

        def walk(el: ET.Element, name: str) -> None:
            for body in el.findall("body"):
                parent[body.get("name")] = name
                for j in body.findall("joint"):
                    joint_body[j.get("name")] = body.get("name")
                walk(body, body.get("name"))
        walk(root.find("worldbody"), "world")
        acts = {a.get("name"): a.get("joint") for a in root.find("actuator")}
        return cls(parent, joint_body, acts)

    def below_torso(self, body: str) -> bool:
        while body in self.parent:
            body = self.parent[body]
            if body == self.torso:
                return True
        return False

    def violations(self, legs: list[tuple[str, list[str], list[str]]]) -> set[tuple[str, str]]:
        """(leg, element) pairs that break a leg rule; empty for a well-declared robot."""
        bad: set[tuple[str, str]] = set()
        seen: dict[str, str] = {}
        for leg, acts, bodies in legs:
            if not acts or not bodies:
                bad.add((leg, "[]"))
            for xs in (acts, bodies):
                bad |= {(leg, x) for x in xs if xs.count(x) > 1}
                for x in set(xs):
                    if x in seen and seen[x] != leg:
                        bad |= {(leg, x), (seen[x], x)}
                    seen.setdefault(x, leg)
            bad |= {(leg, b) for b in bodies if not self.below_torso(b)}
            bad |= {(leg, a) for a in acts
                    if self.joint_body[self.actuator_joint[a]] not in bodies}
        return bad


TREE = Tree.read(EXAMPLE / "strider.xml")
ACT_OF_BODY = {TREE.joint_body[j]: a for a, j in TREE.actuator_joint.items()}
LIMBS = sorted(b for b in TREE.parent if TREE.below_torso(b))


def test_the_oracle_reads_the_strider():
    assert LIMBS == ["back_shin", "back_thigh", "front_shin", "front_thigh"]
    assert TREE.violations(STRIDER_LEGS) == set()
    assert ACT_OF_BODY == {"back_thigh": "back_hip", "back_shin": "back_knee",
                           "front_thigh": "front_hip", "front_shin": "front_knee"}


# ------------------------------------------------------------------ the three found cases
FOUND = [
    ("torso as a leg body",
     [("back", ["back_hip", "back_knee"], ["torso", "back_thigh", "back_shin"]),
      STRIDER_LEGS[1]],
     ["legs[back].bodies", "'torso' is the torso", LEG_RULES["below"]]),
    ("an actuator in two legs",
     [STRIDER_LEGS[0], ("front", ["front_hip", "back_knee"], ["front_thigh", "front_shin"])],
     ["legs[front].actuators", "'back_knee' is also in leg 'back'", LEG_RULES["one_leg"]]),
    ("an actuator of a joint outside its leg",
     [("back", ["back_hip", "front_knee"], ["back_thigh", "back_shin"]),
      ("front", ["front_hip"], ["front_thigh", "front_shin"])],
     ["legs[back].actuators", "'front_knee' drives joint 'front_knee' of body 'front_shin'",
      LEG_RULES["own_joints"]]),
]


@pytest.mark.parametrize("what, legs, expected", FOUND, ids=[f[0] for f in FOUND])
def test_found_mis_declarations_are_refused_naming_leg_element_and_rule(
        work, registry, capsys, what, legs, expected):
    spec = work / "bad.toml"
    spec.write_text(spec_text("bad", legs))
    with pytest.raises(LegError) as err:
        load_spec_file(spec)
    for part in (str(spec), *expected):
        assert part in str(err.value)
    before = sorted(work.iterdir())
    out = work / "frame.png"
    rc = main(["sims", "render", str(spec), "--condition", "lost_leg:back", "--out", str(out)])
    lines = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("adapt: error: ")
    assert all(part in lines[0] for part in expected)
    assert sorted(work.iterdir()) == before and not out.exists()


def test_a_well_declared_lost_leg_changes_that_leg_only(work, registry):
    """What the rules buy: losing a leg leaves the torso's mass and the other motors alone."""
    spec = work / "ok.toml"
    spec.write_text(spec_text("ok", STRIDER_LEGS))
    robot = load_spec_file(spec).robot
    healthy = robot.base_model()
    lost = parse_condition("lost_leg:back", robot).build(robot)
    torso = healthy.body("torso").id
    assert lost.body_mass[torso] == pytest.approx(healthy.body_mass[torso])
    for b in ("torso", "front_thigh", "front_shin", "back_thigh", "back_shin"):
        g = healthy.body(b).geomadr[0]
        if b.startswith("back"):  # the stump: half the segment's half-length
            assert lost.geom_size[g][1] == pytest.approx(healthy.geom_size[g][1] / 2)
        else:
            assert np.array_equal(lost.geom_size[g], healthy.geom_size[g])
    for a in ("front_hip", "front_knee"):
        assert np.array_equal(lost.actuator(a).gainprm, healthy.actuator(a).gainprm)
    for a in ("back_hip", "back_knee"):
        assert not lost.actuator(a).gainprm.any()


@pytest.mark.parametrize("robot", [CHEETAH, QUADRUPED], ids=lambda r: r.name)
def test_built_in_robots_declare_their_legs_by_the_rules(robot):
    robot.check_legs()
    first = robot.legs[0]
    for legs, message in [
        ((dataclasses.replace(first, bodies=(*first.bodies, robot.torso)), *robot.legs[1:]),
         f"legs[{first.name}].bodies: {robot.torso!r} is the torso"),
        ((*robot.legs, Leg("extra", (robot.legs[1].actuators[-1],),
                           (robot.legs[1].bodies[-1],))),
         f"{robot.legs[1].bodies[-1]!r} is also in leg"),
    ]:
        with pytest.raises(LegError, match=None) as err:
            dataclasses.replace(robot, legs=legs).check_legs()
        assert message in str(err.value)


# ------------------------------------------------------------------ generated spec files
LEG_NAMES = ["back", "front", "left", "right", "mid_left", "hind", "fore", "tail"]
MUTATIONS = ("torso", "world", "share_body", "share_actuator", "swap_actuators",
             "foreign_actuator", "drop_body", "duplicate")


def valid_legs(rng: np.random.Generator) -> list[tuple[str, list[str], list[str]]]:
    """A well-declared set of legs: the limbs split into 1..4 legs (some left out), each leg
    with the actuators of some of its bodies' joints, in shuffled order."""
    groups = int(rng.integers(1, 5))
    assign = {b: int(rng.integers(-1, groups)) for b in LIMBS}  # -1: in no leg
    if all(g < 0 for g in assign.values()):
        assign[LIMBS[int(rng.integers(len(LIMBS)))]] = 0
    names = list(rng.permutation(LEG_NAMES))
    legs = []
    for g in range(groups):
        bodies = [b for b in LIMBS if assign[b] == g]
        if not bodies:
            continue
        acts = [ACT_OF_BODY[b] for b in bodies if rng.random() < 0.75]
        acts = acts or [ACT_OF_BODY[bodies[int(rng.integers(len(bodies)))]]]
        legs.append((str(names[g]), [str(a) for a in rng.permutation(acts)],
                     [str(b) for b in rng.permutation(bodies)]))
    return [legs[i] for i in rng.permutation(len(legs))]


def mutate(legs: list, kind: str, rng: np.random.Generator) -> list:
    """``legs`` with one mis-declaration of ``kind`` (one of MUTATIONS) added."""
    legs = [(n, list(a), list(b)) for n, a, b in legs]

    def one(xs: list) -> Any:
        return xs[int(rng.integers(len(xs)))]

    def insert(xs: list, x: str) -> None:
        xs.insert(int(rng.integers(len(xs) + 1)), x)

    full = [leg for leg in legs if leg[1] and leg[2]] or legs
    _, acts, bodies = leg = one(full)
    if kind in ("share_body", "share_actuator", "swap_actuators") and len(legs) == 1:
        rest = [b for b in LIMBS if b not in bodies]
        legs.append(("extra", [ACT_OF_BODY[rest[0]]], rest[:1]) if rest else ("extra", [], []))
    other = one([x for x in legs if x is not leg])[1:] if len(legs) > 1 else ([], [])
    if kind in ("torso", "world"):
        insert(bodies, kind)
    elif kind == "share_body" and bodies:
        insert(other[1], one(bodies))
        other[0].extend([] if other[0] else [ACT_OF_BODY[other[1][-1]]])
    elif kind == "share_actuator" and acts:
        insert(other[0], one(acts))
        other[1].extend([] if other[1] else [one(LIMBS)])
    elif kind == "swap_actuators" and acts and other[0]:
        i, j = int(rng.integers(len(acts))), int(rng.integers(len(other[0])))
        acts[i], other[0][j] = other[0][j], acts[i]
    elif kind == "foreign_actuator" and [b for b in LIMBS if b not in bodies]:
        insert(acts, ACT_OF_BODY[one([b for b in LIMBS if b not in bodies])])
    elif kind == "drop_body" and [b for b in bodies if ACT_OF_BODY.get(b) in acts]:
        bodies.remove(one([b for b in bodies if ACT_OF_BODY.get(b) in acts]))
    elif kind == "duplicate" and (acts or bodies):
        xs = acts if acts and (rng.random() < 0.5 or not bodies) else bodies
        insert(xs, one(xs))
    else:  # the kind does not apply to these legs: the torso is always a mistake
        insert(bodies, "torso")
    return legs


def test_generated_spec_files_are_refused_or_accepted_as_the_oracle_says(work, registry,
                                                                         capsys):
    rng = np.random.default_rng(20261206)
    counts: Counter[str] = Counter()
    tracebacks, accepted_bad, refused_good, unclear = [], [], [], []
    for i in range(N_CASES):
        legs = valid_legs(rng)
        kinds = ([] if rng.random() < 0.3 else
                 list(rng.choice(MUTATIONS, size=int(rng.integers(1, 3)), replace=False)))
        for kind in kinds:
            legs = mutate(legs, str(kind), rng)
        bad = TREE.violations(legs)
        counts["invalid" if bad else "valid"] += 1
        counts.update(f"mutation:{k}" for k in kinds)
        spec = work / f"case{i}.toml"
        spec.write_text(spec_text(f"strider{i}", legs))
        before = sorted(work.iterdir())
        try:
            robot = load_spec_file(spec).robot
        except LegError as e:
            msg = str(e)
            named = any(f"legs[{leg}]" in msg and (f"{el!r}" in msg or el == "[]")
                        for leg, el in bad)
            if not bad:
                refused_good.append((legs, msg))
            elif "\n" in msg or "rule: " not in msg or not named:
                unclear.append((legs, msg))
        except Exception as e:  # any other error would reach the user as a traceback
            tracebacks.append((legs, repr(e)))
        else:
            if bad:
                accepted_bad.append(legs)
            else:
                assert [(leg.name, list(leg.actuators), list(leg.bodies))
                        for leg in robot.legs] == legs
        assert sorted(work.iterdir()) == before  # loading writes nothing
        if bad and i % CLI_EVERY == 0:
            counts["cli"] += 1
            out = work / ("frame.png" if counts["cli"] % 2 else "data.npz")
            argv = (["sims", "render", str(spec), "--duration", "0.04", "--out", str(out)]
                    if out.suffix == ".png" else
                    ["sims", "collect", "--family", f"{spec}#strider{i}-fam",
                     "--trajectories", "1", "--duration", "0.04", "--out", str(out)])
            rc = main(argv)
            captured = capsys.readouterr()
            lines = captured.err.splitlines()
            assert rc == 2 and len(lines) == 1 and lines[0].startswith("adapt: error: "), (
                argv, captured.err)
            assert "Traceback" not in captured.err and "rule: " in lines[0]
            assert sorted(work.iterdir()) == before
        spec.unlink()
    n = counts["valid"] + counts["invalid"]
    print(f"spec cases: {n} ({counts['valid']} valid, {counts['invalid']} mis-declared, "
          f"{counts['cli']} through the CLI): {len(tracebacks)} tracebacks, "
          f"{len(accepted_bad)} accepted mis-declared, {len(refused_good)} refused valid, "
          f"{len(unclear)} unclear messages; mutations "
          f"{ {k.split(':')[1]: v for k, v in sorted(counts.items()) if ':' in k} }")
    assert n >= 1000 and counts["valid"] >= 200 and counts["invalid"] >= 600
    assert all(counts[f"mutation:{k}"] >= 50 for k in MUTATIONS)
    assert counts["cli"] >= 10
    assert not tracebacks, tracebacks[:3]
    assert not accepted_bad, accepted_bad[:3]
    assert not refused_good, refused_good[:3]
    assert not unclear, unclear[:3]
