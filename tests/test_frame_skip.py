"""Frame skip: ``NAME@K`` holds each action for K control steps, through every command.

In process: the frame-skipped robot's control step and sizes, one step of it against K steps of
its base robot on real MuJoCo, the family it names, and the refusals of malformed names. Then
one tiny run of ``cheetah-cripple@2`` through ``train``, ``eval-model``, ``eval`` (oracle
included), ``export`` and ``deploy``, each in a fresh process that knows only the name.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_own_robot import adapt, ok, write_robot

from sims.conditions import HEALTHY, Schedule
from sims.env import AdaptEnv
from sims.registry import (
    FAMILIES,
    ROBOTS,
    get_family,
    get_robot,
    register_family,
    register_robot,
    split_frame_skip,
)
from sims.robots import CHEETAH


# ------------------------------------------------------------------ in process
def test_a_frame_skipped_robot_holds_each_action_for_k_base_steps(registry):  # noqa: F811
    robot = get_robot("cheetah@2")
    assert robot.name == "cheetah@2" and robot.frame_skip == 2
    assert robot.control_timestep == pytest.approx(0.02)
    assert (robot.obs_dim, robot.act_dim) == (CHEETAH.obs_dim, CHEETAH.act_dim)
    assert ROBOTS["cheetah@2"] is robot and get_robot("cheetah@2") is robot  # registered
    assert CHEETAH.with_frame_skip(1) is CHEETAH
    assert robot.with_frame_skip(3).name == "cheetah@6"  # compounds, one suffix

    rng = np.random.default_rng(0)
    skipped = AdaptEnv("cheetah@2", episode_steps=10, seed=3)
    base = AdaptEnv("cheetah", episode_steps=20, seed=3)
    np.testing.assert_array_equal(skipped.reset().observation, base.reset().observation)
    for _ in range(5):
        a = rng.uniform(-1, 1, robot.act_dim)
        coarse = skipped.step(a)
        base.step(a)
        fine = base.step(a)
        np.testing.assert_allclose(skipped.physics.data.qpos, base.physics.data.qpos,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(skipped.physics.data.qvel, base.physics.data.qvel,
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(coarse.observation, fine.observation, rtol=0, atol=1e-12)
    assert skipped.physics.data.time == pytest.approx(0.1)  # 5 coarse steps: 0.1 s


def test_a_frame_skipped_family_keeps_its_splits_and_switch_seconds(registry):  # noqa: F811
    family = get_family("cheetah-cripple@2")
    base = get_family("cheetah-cripple")
    assert family.name == "cheetah-cripple@2" and family.robot is get_robot("cheetah@2")
    assert FAMILIES["cheetah-cripple@2"] is family
    assert family.test_conditions == base.test_conditions
    assert family.switch_time_s == base.switch_time_s
    rng, rng_base = np.random.default_rng(1), np.random.default_rng(1)
    assert family.conditions("train", rng, 20) == base.conditions("train", rng_base, 20)
    # a switch at 3 s is control step 150 at 50 Hz, as it is 300 at 100 Hz
    schedule = family.switch_scenario(family.test_conditions[0])
    assert schedule.switch_steps(family.robot.control_timestep) == (0, 150)
    env = AdaptEnv(family.robot, Schedule.switch(HEALTHY, family.test_conditions[0], at=0.1),
                   episode_steps=8, seed=0)
    env.reset()
    for step in range(1, 9):
        env.step(np.ones(6))
        # the new model drives the step that starts at 0.1 s: the sixth, of 0.02 s each
        assert env.sim.segment == (1 if step > 5 else 0)


def test_spec_file_references_take_the_suffix_last(tmp_path, registry):  # noqa: F811
    spec = write_robot(tmp_path / "a@b")  # an "@" in the path is the path's
    family = get_family(f"{spec}#strider-legs@3")
    assert family.name == "strider-legs@3" and family.robot.name == "strider@3"
    assert family.robot.control_timestep == pytest.approx(3 * get_robot("strider").
                                                          control_timestep)
    assert get_robot(f"{spec}@3") is family.robot and get_family(f"{spec}@3") is family
    assert split_frame_skip(str(spec), "robot") == (str(spec), 1)


@pytest.mark.parametrize("name, message", [
    ("cheetah@0", r"robot='cheetah@0': the frame skip after '@' is '0': allowed a whole "
                  r"number >= 1 \(e.g. cheetah@2\)"),
    ("cheetah@x", r"robot='cheetah@x': the frame skip after '@' is 'x': allowed"),
    ("cheetah@", r"robot='cheetah@': the frame skip after '@' is '': allowed"),
    ("cheetah@-2", r"the frame skip after '@' is '-2': allowed"),
    ("cheetah@2@2", r"robot='cheetah@2@2': more than one '@': allowed one frame-skip suffix"),
    ("dog@2", r"robot='dog' is unknown: allowed cheetah, quadruped.*NAME@K"),
])
def test_malformed_robot_names_are_refused(name, message, registry):  # noqa: F811
    before = dict(ROBOTS)
    with pytest.raises(ValueError, match=message):
        get_robot(name)
    assert ROBOTS == before  # refused before anything is built or registered


def test_malformed_family_names_and_frame_skips_are_refused(tmp_path, registry):  # noqa: F811
    with pytest.raises(ValueError, match=r"family='cheetah-cripple@1\.5': the frame skip "
                                         r"after '@' is '1\.5'"):
        get_family("cheetah-cripple@1.5")
    with pytest.raises(ValueError, match=r"family='cheetah-cripple@2@2': more than one '@'"):
        get_family("cheetah-cripple@2@2")
    for k in (0, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match=rf"robot 'cheetah': frame_skip={k!r}: allowed an "
                                             r"integer >= 1"):
            CHEETAH.with_frame_skip(k)
    with pytest.raises(ValueError, match=r"frame_skip=0: allowed an integer >= 1"):
        dataclasses.replace(CHEETAH, frame_skip=0)
    # "@" belongs to frame skip alone: not in registered names, nor in spec-file names
    with pytest.raises(ValueError, match=r"robot name='cheetah@fast': '@' is reserved for "
                                         r"frame skip.*allowed a name without it"):
        register_robot(dataclasses.replace(CHEETAH, name="cheetah@fast"))
    with pytest.raises(ValueError, match=r"robot name='cheetah@3': '@' is reserved"):
        register_robot(dataclasses.replace(CHEETAH.with_frame_skip(2), name="cheetah@3"))
    with pytest.raises(ValueError, match=r"family name='my@family': '@' is reserved"):
        register_family(dataclasses.replace(get_family("cheetah-cripple"), name="my@family"))
    spec = write_robot(tmp_path)
    spec.write_text(spec.read_text().replace('name = "strider-legs"', 'name = "strider@legs"'))
    with pytest.raises(ValueError, match=r"family\[0\].name='strider@legs': '@' is reserved "
                                         r"for frame skip"):
        get_family(str(spec))
    spec.write_text(spec.read_text().replace('name = "strider"', 'name = "str@der"'))
    with pytest.raises(ValueError, match=r"robot.name='str@der': '@' is reserved for frame "
                                         r"skip"):
        get_robot(str(spec))


# ------------------------------------------------------------------ every command, fresh processes
def test_train_evaluate_export_and_deploy_a_frame_skipped_family(tmp_path):
    ok(adapt("train", "tiny", "--set", "family=cheetah-cripple@2", "--set", "iterations=1",
             "--out", "run", "--quiet", cwd=tmp_path))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["family"] == "cheetah-cripple@2"

    table = ok(adapt("eval-model", "run", "--trajectories", "2", "--duration", "0.6", cwd=tmp_path))
    assert "cheetah-cripple@2 (test)" in table

    ok(adapt("eval", "--family", "cheetah-cripple@2", "--method", "grbal=run", "--method",
             "random", "--method", "oracle=oracle:run", "--seeds", "1", "--duration", "0.6",
             "--switch-at", "0.3", "--out", "rep", cwd=tmp_path))
    results = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert results["meta"]["robot"] == "cheetah@2"
    assert {e["method"] for e in results["episodes"]} == {"grbal", "random", "oracle"}
    # the switch at 0.3 s falls on coarse step 15; 30 coarse steps are 0.6 s
    assert {e["switch_step"] for e in results["episodes"] if e["scenario"].startswith("switch")} \
        == {15}
    oracle = [e["ret"] for e in results["episodes"] if e["method"] == "oracle"]
    chance = [e["ret"] for e in results["episodes"] if e["method"] == "random"]
    assert min(oracle) > max(chance)  # it plans on the frame-skipped simulator

    ok(adapt("export", "run", "--out", "exp", cwd=tmp_path))
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert manifest["robot"] == "cheetah@2" and manifest["family"] == "cheetah-cripple@2"
    assert manifest["control_timestep"] == pytest.approx(0.02)
    assert manifest["robot_identity"]["control_timestep"] == pytest.approx(0.02)

    out = ok(adapt("deploy", "exp", "--robot", "sim:cheetah@2", "--duration", "0.5", "--fast",
                   "--quiet", "--out", "dep", cwd=tmp_path, runtime=True))
    assert "at 50 Hz" in out
    report = json.loads((tmp_path / "dep" / "report.json").read_text())["report"]
    assert report["steps"] == 25 and report["rate_hz"] == 50.0
    assert report["robot"]["sim_time"] == pytest.approx(0.5)

    # sim:cheetah means the cheetah at the export's decision step; another step is refused
    base = ok(adapt("deploy", "exp", "--robot", "sim:cheetah", "--duration", "0.5", "--fast",
                    "--quiet", "--out", "dep1", cwd=tmp_path, runtime=True))
    assert "robot sim:cheetah@2" in base and "at 50 Hz" in base
    refused = adapt("deploy", "exp", "--robot", "sim:cheetah@3", "--duration", "0.5", "--fast",
                    "--quiet", cwd=tmp_path, runtime=True)
    assert refused.returncode == 2
    assert "exported for robot 'cheetah@2', not 'cheetah@3'" in refused.stderr


def test_gymnasium_names_take_the_suffix(registry):  # noqa: F811
    pytest.importorskip("gymnasium")
    from sims.gym import make_gym

    family_env = make_gym("cheetah-cripple@2", episode_steps=5)
    robot_env = make_gym("cheetah@2", condition="disabled:bthigh", episode_steps=5)
    for env in (family_env, robot_env):
        assert env.robot.name == "cheetah@2"
        env.reset(seed=0)
        env.step(env.action_space.sample())
        assert env.env.physics.data.time == pytest.approx(0.02)
    with pytest.raises(ValueError, match=r"name='cheetah-cripple@0': the frame skip after '@'"):
        make_gym("cheetah-cripple@0")
