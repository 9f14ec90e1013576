"""Untrusted text in, never a raw error out: condition strings and ``--set key=value`` overrides.

Hypothesis generates at least 1000 of each per run, a mix of valid and invalid (kinds, names
of this robot and of none, numbers in and out of range, NaN and infinities, duplicates,
garbage tokens). Every one either builds (a MuJoCo model that compiles and steps, a
``TrainConfig``) or is refused with the project's own error (``ConditionError``,
``ConfigError``) saying what is allowed; a MuJoCo error, a Python ``IndexError`` /
``KeyError`` / ``TypeError`` or a parser's error fails the test.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections import Counter
from pathlib import Path

import mujoco
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adaptive_control.config_loader import ConfigError
from adaptive_control.devices import ALLOWED
from adaptive_control.learners import LEARNERS
from adaptive_control.planning import PLANNER_NAMES, planner_config
from adaptive_control.training.config import PRESETS, TrainConfig, config_from_arg
from sims.conditions import ConditionError, parse_condition
from sims.registry import FAMILIES
from sims.robots import CHEETAH, QUADRUPED, Leg, Robot

EXAMPLES = 1000
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

SERVO_LEG = Robot.from_mjcf(
    Path(__file__).parent / "assets" / "servo_leg.xml",
    legs=(Leg("leg", ("hip", "knee", "ankle", "toe"), ("thigh", "shin", "foot", "toe")),))
ROBOTS = {r.name: r for r in (CHEETAH, QUADRUPED, SERVO_LEG)}
ALL_NAMES = sorted({n for r in ROBOTS.values() for n in (*r.actuator_names, *r.joint_names,
                                                *r.leg_names)})

KINDS = ("slope", "terrain", "friction", "payload", "disabled", "weak", "locked", "shortened",
         "lost_leg", "calibration", "obs_noise")
GARBAGE = st.text(alphabet="abc:+,=.-_ 0123456789xyz", max_size=8)
SPECIAL_NUMBERS = ("nan", "inf", "-inf", "1e400", "-0", "0", "1", "0x10", "1e", "--1", "")


def _numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(-1.0, 1.0).map(lambda x: f"{x:.3g}"),
        st.floats(-60.0, 60.0).map(lambda x: f"{x:.3g}"),
        st.integers(-5, 100).map(str),
        st.sampled_from(SPECIAL_NUMBERS),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
    )


@st.composite
def _condition_part(draw: st.DrawFn, robot: Robot) -> str:
    kind = draw(st.one_of(st.sampled_from(KINDS), st.sampled_from(KINDS),
                          st.sampled_from(("healthy", "warp", "", "Weak", "slope "))))
    own = (*robot.actuator_names, *robot.actuated_joint_names, *robot.leg_names)
    name = st.one_of(st.sampled_from(own), st.sampled_from(own), st.sampled_from(ALL_NAMES),
                     GARBAGE)
    item = st.builds(lambda k, v: f"{k}={v}",
                     st.sampled_from(("gain", "offset", "flipped", "flip", "")),
                     st.one_of(_numbers(), st.sampled_from(("0", "1", "true", "yes"))))
    if kind == "calibration":
        extra = st.lists(st.one_of(item, item, GARBAGE), min_size=1, max_size=4).map(",".join)
    elif kind == "payload":
        extra = st.lists(_numbers(), min_size=1, max_size=4).map(",".join)
    elif kind == "terrain":
        extra = st.sampled_from(("hill", "basin", "gentle", "steep", "moon", ""))
    else:
        extra = _numbers()
    first = (st.one_of(name, _numbers()) if kind in ("disabled", "weak", "locked", "shortened",
                                                       "lost_leg", "calibration")
             else st.one_of(_numbers(), _numbers(), extra, GARBAGE))
    args = [draw(first)] + draw(st.lists(st.one_of(extra, extra, extra, _numbers(), GARBAGE),
                                         max_size=2))
    args = args[:draw(st.integers(0, len(args)))] if draw(st.integers(0, 9)) == 0 else args
    return ":".join([kind, *args])


def _g(x: float) -> str:
    return f"{x:.4g}"


@st.composite
def _valid_part(draw: st.DrawFn, robot: Robot) -> str:
    """A part that is valid on its own for ``robot`` (it may still clash with another)."""
    def num(lo: float, hi: float) -> str:
        return _g(draw(st.floats(lo, hi)))

    act = draw(st.sampled_from(robot.actuator_names))
    joint = draw(st.sampled_from(robot.actuated_joint_names))
    options = [f"disabled:{act}", f"weak:{act}:{num(0.05, 0.95)}", f"locked:{joint}",
               f"calibration:{act}:gain={num(0.2, 2.5)},offset={num(-0.4, 0.4)},"
               f"flipped={draw(st.sampled_from('01'))}",
               f"calibration:{act}:offset={num(-0.4, 0.4)}",
               f"payload:{num(0.1, robot.max_payload_kg)}",
               f"payload:{num(0.1, robot.max_payload_kg)}:{num(-0.4, 0.4)},0,{num(-0.4, 0.4)}",
               f"obs_noise:{num(0.0, 0.5)}"]
    lo, hi = robot.base_model().joint(joint).range
    if lo < hi:
        options.append(f"locked:{joint}:{num(math.degrees(lo) * 0.9, math.degrees(hi) * 0.9)}")
    if robot.legs:
        leg = draw(st.sampled_from(robot.leg_names))
        options += [f"shortened:{leg}:{num(0.1, 0.95)}", f"lost_leg:{leg}",
                    f"lost_leg:{leg}:{num(0.05, 0.5)}"]
    if robot.floor is not None:
        slope = robot.max_slope_deg
        options += [f"slope:{num(-slope, slope)}", f"friction:{num(0.1, 3.0)}",
                    f"terrain:{draw(st.sampled_from(('hill', 'basin', 'gentle', 'steep')))}"]
    return draw(st.sampled_from(options))


@st.composite
def _condition_text(draw: st.DrawFn, robot: Robot) -> str:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.text(max_size=30))
    part = st.one_of(_valid_part(robot), _valid_part(robot), _condition_part(robot))
    parts = draw(st.lists(part, min_size=1, max_size=3))
    if draw(st.integers(0, 3)) == 0:  # a duplicate, as a user who repeats a modifier writes it
        parts.append(draw(st.sampled_from(parts)))
    return draw(st.sampled_from(("+", " + "))).join(parts)


def test_condition_strings_build_or_are_refused_with_a_condition_error():
    counts: Counter[str] = Counter()

    @SETTINGS
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        robot = ROBOTS[data.draw(st.sampled_from(sorted(ROBOTS)))]
        for text in data.draw(st.lists(_condition_text(robot), min_size=1, max_size=2)):
            counts["inputs"] += 1
            try:
                condition = parse_condition(text, robot)
                model = condition.build(robot)
            except ConditionError as e:
                assert "allowed" in str(e), str(e)  # says what is allowed
                counts["refused"] += 1
                continue
            assert model.nu == robot.act_dim
            data = mujoco.MjData(model)  # and it simulates: a few steps at full command
            condition.adjust_initial_state(model, data)
            data.ctrl[:] = model.actuator_ctrlrange[:, 1]
            for _ in range(10):
                mujoco.mj_step(model, data)
            assert np.all(np.isfinite(data.qpos)), text
            counts["built"] += 1

    check()
    print(f"\ncondition strings: {counts['inputs']} generated, {counts['built']} built, "
          f"{counts['refused']} refused with ConditionError")
    assert counts["inputs"] >= EXAMPLES
    assert counts["built"] > 0.1 * counts["inputs"] and counts["refused"] > 0.1 * counts["inputs"]


# ------------------------------------------------------------------ config overrides
def _config_keys() -> list[str]:
    """Every settable key: TrainConfig's fields, its tables' fields, every planner's fields."""
    keys: list[str] = []
    for f in dataclasses.fields(TrainConfig):
        tp = typing.get_type_hints(TrainConfig)[f.name]
        keys.append(f.name)
        if f.name == "planner":
            keys += sorted({f"planner.{g.name}" for name in PLANNER_NAMES
                            for g in dataclasses.fields(type(planner_config(name)))})
        elif dataclasses.is_dataclass(tp):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(tp)]
    return keys


KEYS = _config_keys()
WORDS = (*LEARNERS, *PLANNER_NAMES, *FAMILIES, *ALLOWED.replace(",", "").split(),
         "cpu", "cuda", "cuda:0", "auto", "gru", "lstm", "vmap", "lowrank", "last", "mid")


def _override_values() -> st.SearchStrategy[str]:
    word = st.sampled_from(WORDS)
    return st.one_of(
        st.integers(-3, 600).map(str), st.integers(-3, 600).map(str),
        st.floats(-2.0, 2.0).map(lambda x: f"{x:.3g}"),
        st.sampled_from(("nan", "inf", "-inf", "1e400", "99999999999999999999", "true",
                         "false", "[]", "{}", "[[1]]", "[", "{", "'", "=", "1979-05-27",
                         "12:00:00", "0x10")),
        word, word.map(lambda w: f"'{w}'"),
        st.lists(st.integers(-2, 64), max_size=3).map(lambda v: str(v)),
        st.lists(word, max_size=2).map(lambda v: str(v)),
        st.builds(lambda k, v: f"{{{k}={v}}}", st.sampled_from(("name", "horizon", "x")),
                  st.sampled_from(("'cem'", "'mppi'", "3", "0", "'x'", "[1]"))),
        GARBAGE,
    )


def _typed_keys() -> dict[str, typing.Any]:
    """Keys whose type does not depend on the planner named, with their annotated types."""
    hints = typing.get_type_hints(TrainConfig)
    out: dict[str, typing.Any] = {}
    for name, tp in hints.items():
        if name == "planner":
            continue
        if dataclasses.is_dataclass(tp):
            out.update({f"{name}.{k}": t for k, t in typing.get_type_hints(tp).items()})
        else:
            out[name] = tp
    return {**out, "planner.num_candidates": int, "planner.horizon": int,
            "planner.name": typing.Literal[PLANNER_NAMES]}  # type: ignore[valid-type]


TYPED = _typed_keys()


def _value_of(tp: typing.Any) -> st.SearchStrategy[str]:
    """A value of the annotated type, as one would type it after --set KEY=."""
    if tp is bool:
        return st.sampled_from(("true", "false"))
    if tp is int:
        return st.integers(0, 12).map(str)
    if tp is float:
        return st.floats(0.0, 0.9).map(_g)
    if typing.get_origin(tp) is typing.Literal:
        return st.sampled_from(typing.get_args(tp)).map(str)
    if typing.get_origin(tp) is tuple:
        return st.lists(st.integers(1, 64), min_size=1, max_size=3).map(str)
    return st.sampled_from(WORDS)


@st.composite
def _override(draw: st.DrawFn) -> str:
    if draw(st.booleans()):  # a key and a value of its type (the value may be out of range)
        key = draw(st.sampled_from(sorted(TYPED)))
        return f"{key}={draw(_value_of(TYPED[key]))}"
    key = draw(st.one_of(
        st.sampled_from(KEYS), st.sampled_from(KEYS),
        st.builds(lambda k, x: f"{k}.{x}", st.sampled_from(KEYS), st.sampled_from(("x", "0", ""))),
        st.sampled_from(("x", "", ".m", "m.", "a..b", " m ", "collect", "optim.x")),
        GARBAGE,
    ))
    if draw(st.integers(0, 29)) == 0:
        return key  # no '=' at all
    return f"{key}={draw(_override_values())}"


def _named(message: str, overrides: list[str]) -> bool:
    """The error names one of the overrides' keys (or the override itself)."""
    for text in overrides:
        key = text.split("=", 1)[0]
        # TOML allows blanks around a dotted key's dots ("0 .1" is the key 0.1)
        parts = [part.strip() for part in key.split(".")]
        if "override" in message or key.strip() in message or any(
                part and part in message for part in parts):
            return True
    return False


def test_config_overrides_build_or_are_refused_with_a_config_error():
    counts: Counter[str] = Counter()

    @SETTINGS
    @given(preset=st.sampled_from(sorted(PRESETS)),
           overrides=st.lists(_override(), min_size=1, max_size=2))
    def check(preset: str, overrides: list[str]) -> None:
        counts["inputs"] += len(overrides)
        try:
            cfg = config_from_arg(preset, overrides)
        except ConfigError as e:
            assert _named(str(e), overrides), (overrides, str(e))
            counts["refused"] += 1
            return
        assert isinstance(cfg, TrainConfig)
        counts["built"] += 1

    check()
    print(f"\nconfig overrides: {counts['inputs']} generated in {EXAMPLES} sets, "
          f"{counts['built']} sets built, {counts['refused']} refused with ConfigError")
    assert counts["inputs"] >= EXAMPLES
    assert counts["built"] > 0.05 * EXAMPLES and counts["refused"] > 0.1 * EXAMPLES
