"""Task families: train / held-out splits are disjoint and training never draws held-out."""

from __future__ import annotations

import numpy as np
import pytest

from sims.conditions import DisabledActuator, Heightfield, LostLeg, Payload, Slope
from sims.registry import FAMILIES, get_family


@pytest.mark.parametrize("name", list(FAMILIES))
def test_held_out_conditions_are_never_drawn_in_training(name):
    fam = FAMILIES[name]
    rng = np.random.default_rng(123)
    draws = [fam.sample(rng, "train") for _ in range(400)]
    assert not any(fam.is_held_out(c) for c in draws)
    held = [c.to_json() for c in fam.test_conditions]
    assert not set(held) & {c.to_json() for c in draws}
    assert all(fam.is_held_out(c) for c in fam.test_conditions)
    for c in draws[:5] + list(fam.test_conditions):
        c.build(fam.robot)  # every condition is valid for the family's robot


def test_paper_splits():
    rng = np.random.default_rng(0)
    crip = get_family("cheetah-cripple")
    seen = {c.modifiers[0].actuator for c in crip.conditions("train", rng, n=300)}
    assert seen == {"bshin", "bfoot", "fthigh", "fshin", "ffoot"}
    assert crip.test_conditions[0].modifiers == (DisabledActuator("bthigh"),)

    legs = get_family("quadruped-leg-failure")
    seen = {c.modifiers[0].leg for c in legs.conditions("train", rng, n=200)}
    assert seen == {"front_left", "front_right", "back_left"}
    assert legs.test_conditions[0].modifiers == (LostLeg("back_right"),)

    slope = get_family("quadruped-slope")
    trained = [c.modifiers[0].degrees for c in slope.conditions("train", rng, n=300)]
    held = [m.degrees for c in slope.test_conditions for m in c.modifiers if isinstance(m, Slope)]
    assert min(abs(d) for d in held) > max(abs(d) for d in trained)

    terrain = get_family("cheetah-terrain")
    names = {c.modifiers[0].name for c in terrain.test_conditions}
    assert names == {"hill", "basin", "steep"}
    assert all(isinstance(c.modifiers[0], Heightfield) and c.modifiers[0].name == "ramps"
               for c in terrain.conditions("train", rng, n=20))

    payload = get_family("cheetah-payload")
    trained = [c.modifiers[0].mass for c in payload.conditions("train", rng, n=300)]
    held = [m.mass for c in payload.test_conditions for m in c.modifiers if isinstance(m, Payload)]
    assert min(held) > max(trained)


def test_sampling_is_seeded():
    fam = get_family("cheetah-mixed")
    a = [c.to_json() for c in fam.conditions("train", np.random.default_rng(5), n=20)]
    b = [c.to_json() for c in fam.conditions("train", np.random.default_rng(5), n=20)]
    assert a == b


def test_bad_family_and_split():
    with pytest.raises(ValueError, match="family='nope'"):
        get_family("nope")
    with pytest.raises(ValueError, match="split='val'"):
        get_family("cheetah-cripple").sample(np.random.default_rng(0), "val")
    with pytest.raises(ValueError, match="explicit rng"):
        get_family("cheetah-cripple").conditions("train")


def test_switch_scenario_is_healthy_then_held_out():
    fam = get_family("quadruped-leg-failure")
    sched = fam.switch_scenario(fam.test_conditions[0], at=3.0)
    assert sched.segments[0][1].modifiers == ()
    assert sched.segments[1] == (3.0, fam.test_conditions[0])
    assert sched.switch_steps(fam.robot.control_timestep) == (0, 150)


def test_reversed_family_holds_out_combinations_of_motors_trained_singly():
    fam = get_family("cheetah-reversed")
    draws = fam.conditions("train", np.random.default_rng(0), n=400)
    flipped = [frozenset(m.actuator for m in c.modifiers) for c in draws]
    # every motor is reversed somewhere in training; the held-out pairs never are
    assert set().union(*flipped) == set(fam.robot.actuator_names)
    held = [frozenset(m.actuator for m in c.modifiers) for c in fam.test_conditions]
    assert held and not set(held) & set(flipped)
    model = fam.test_conditions[0].build(fam.robot)
    signs = np.sign(model.actuator_gainprm[:, 0])
    names = fam.robot.actuator_names
    assert {n for n, s in zip(names, signs, strict=True) if s < 0} == set(held[0])
