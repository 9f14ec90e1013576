"""A robot the project does not ship, described by a spec file, through every command.

The test writes a small planar robot (a torso on x/z slides and a pitch hinge, two legs of two
position-actuated joints each) and a spec file with one family, then takes them through
``adapt sims list / collect / render``, ``train``, ``eval-model``, ``eval``, ``export``,
``deploy`` and ``train-policy`` in fresh processes, each knowing nothing but what it is
given: a run, an export or the spec file. Parts run with the spec file moved away, so that
what they need can only come from the checkpoint or the export itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from blocked_imports import TRAINING, blocking_prelude

import sims.registry
from sims.conditions import LostLeg, parse_condition
from sims.env import AdaptEnv
from sims.families import TaskFamily
from sims.registry import (
    get_family,
    get_robot,
    load_spec_file,
    register_document,
    register_family,
    register_robot,
)
from sims.robots import Robot
from sims.specs import artifact_spec, check_robot_identity, robot_identity, spec_document

pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parents[1]

MJCF = """\
<mujoco model="strider">
  <option timestep="0.01"/>
  <default>
    <joint damping="0.5" armature="0.01" limited="true"/>
    <geom friction="0.8 0.1 0.1" condim="3"/>
    <position kp="{kp}" ctrllimited="true" ctrlrange="-1 1"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" size="20 2 0.1"/>
    <body name="torso" pos="0 0 0.42">
      <joint name="rootx" type="slide" axis="1 0 0" limited="false" damping="0" armature="0"/>
      <joint name="rootz" type="slide" axis="0 0 1" limited="false" damping="0" armature="0"/>
      <joint name="rooty" type="hinge" axis="0 1 0" limited="false" damping="0" armature="0"/>
      <geom name="torso" type="capsule" fromto="-0.25 0 0 0.25 0 0" size="0.05" mass="2"/>
      {legs}
    </body>
  </worldbody>
  <actuator>
    <position name="back_hip" joint="back_hip"/>
    <position name="back_knee" joint="back_knee"/>
    <position name="front_hip" joint="front_hip"/>
    <position name="front_knee" joint="front_knee"/>
  </actuator>
</mujoco>
"""
LEG = """<body name="{n}_thigh" pos="{x} 0 0">
        <joint name="{n}_hip" type="hinge" axis="0 1 0" range="-60 60"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.2" size="0.03" mass="0.3"/>
        <body name="{n}_shin" pos="0 0 -0.2">
          <joint name="{n}_knee" type="hinge" axis="0 1 0" range="-90 10"/>
          <geom type="capsule" fromto="0 0 0 0 0 -0.2" size="0.025" mass="0.2"/>
        </body>
      </body>"""

SPEC = """\
[robot]
name = "strider"
mjcf = "strider.xml"
torso = "torso"
control_timestep = {dt}
description = "planar two-legged test robot"

[robot.reward]
ctrl_cost = 0.01
tilt_penalty = 5.0

[robot.limits]
max_slope_deg = 15
max_payload_kg = 3

[[robot.legs]]
name = "back"
actuators = ["back_hip", "back_knee"]
bodies = ["back_thigh", "back_shin"]

[[robot.legs]]
name = "front"
actuators = ["front_hip", "front_knee"]
bodies = ["front_thigh", "front_shin"]

[[family]]
name = "strider-legs"
description = "a weak or dead front motor, a load; held out: the back leg lost or shortened"
train = ["healthy", "disabled:front_knee", "weak:front_hip:0.5", "payload:1.0"]
test = ["lost_leg:back", "shortened:back:0.6"]
switch_time_s = 0.6
"""


def write_robot(folder: Path, kp: float = 20.0, dt: float = 0.02) -> Path:
    """The MJCF and the spec file in ``folder``; returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    legs = "\n      ".join(LEG.format(n=n, x=x) for n, x in (("back", -0.25), ("front", 0.25)))
    (folder / "strider.xml").write_text(MJCF.format(kp=kp, legs=legs))
    spec = folder / "strider.toml"
    spec.write_text(SPEC.format(dt=dt))
    return spec


# ------------------------------------------------------------------ the spec file, in process
def test_spec_file_gives_the_robot_its_legs_rate_reward_and_family(tmp_path, registry):
    spec = write_robot(tmp_path)
    fam = get_family(f"{spec}#strider-legs")
    robot = fam.robot
    assert get_robot(str(spec)) is robot and get_family(str(spec)) is fam  # one family: no #
    assert get_robot("strider") is robot and get_family("strider-legs") is fam  # registered
    assert robot.n_substeps == 2 and robot.control_timestep == pytest.approx(0.02)
    assert robot.leg_names == ("back", "front") and robot.act_dim == 4 and robot.planar
    assert (robot.ctrl_cost, robot.tilt_penalty, robot.max_slope_deg) == (0.01, 5.0, 15.0)
    assert robot.alive_bonus == 0.0  # not given: the Robot default
    assert fam.switch_time_s == 0.6 and fam.test_conditions[0] == parse_condition(
        "lost_leg:back", robot)
    rng = np.random.default_rng(0)
    drawn = {fam.sample(rng, "train").label for _ in range(60)}
    assert drawn == {"healthy", "disabled(front_knee)", "weak(front_hip,0.5)",
                     "payload(1,(0.0, 0.0, 0.0))"}
    assert all(fam.is_held_out(c) for c in fam.test_conditions)
    # the legs make lost_leg real physics: the lost leg's motors push no more
    assert isinstance(fam.test_conditions[0].modifiers[0], LostLeg)
    env = AdaptEnv(robot, fam.test_conditions[0], episode_steps=5, seed=0)
    env.reset()
    env.step(np.ones(4))
    data = env.physics.data
    assert data.actuator("back_hip").force[0] == 0.0 != data.actuator("front_hip").force[0]


def test_loading_a_spec_twice_is_one_registration(tmp_path, registry):
    spec = write_robot(tmp_path)
    first = load_spec_file(spec)
    again = load_spec_file(spec)
    assert again.robot is first.robot and again.families[0] is first.families[0]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("ctrl_cost = 0.01", "ctrl_kost = 0.01"),
     "robot.reward.ctrl_kost is an unknown key: allowed robot.reward.ctrl_cost"),
    (lambda s: s.replace('mjcf = "strider.xml"', 'mjcf = "nowhere.xml"'),
     "robot.mjcf='nowhere.xml': no such file"),
    (lambda s: s.replace('"back_hip", "back_knee"]', '"back_hip", "back_ankle"]'),
     "legs[back].actuators='back_ankle' is unknown for robot 'strider': allowed back_hip"),
    (lambda s: s.replace('"back_thigh", "back_shin"]', '"back_thigh", "back_foot"]'),
     "legs[back].bodies: 'back_foot' is not a body of"),
    (lambda s: s.replace('torso = "torso"', 'torso = "chassis"'),
     "torso='chassis' is not a body of"),
    (lambda s: s.replace('"payload:1.0"]', '"payload:1.0", "disabled:tail"]'),
     "family[0].train[4]='disabled:tail'"),
    (lambda s: s.replace('"payload:1.0"]', '"payload:lots"]'),
     "family[0].train[3]='payload:lots'"),
    (lambda s: s.replace('test = ["lost_leg:back"', 'test = ["lost_leg:middle"'),
     "family[0].test[0]='lost_leg:middle'"),
    (lambda s: s.replace('"payload:1.0"]', '"payload:1.0", "lost_leg:back"]'),
     "lost_leg(back,0.5) is both a train and a test condition"),
    (lambda s: s.replace("control_timestep = 0.02", "control_timestep = 0.015"),
     "robot.control_timestep=0.015: allowed a whole multiple of the MJCF timestep 0.01 s"),
    (lambda s: s.replace("control_timestep = 0.02", "control_timestep = 0.02\nn_substeps = 2"),
     "robot.n_substeps and robot.control_timestep both given"),
    (lambda s: s.replace('name = "strider-legs"', 'name = "cheetah-cripple"'),
     "family[0].name='cheetah-cripple' is taken by a family built in Python"),
    (lambda s: s + "\n[extra]\nx = 1\n", "extra is an unknown key: allowed robot, family"),
])
def test_bad_specs_are_refused_naming_the_key_and_the_value(tmp_path, registry, edit, message):
    spec = write_robot(tmp_path)
    spec.write_text(edit(spec.read_text()))
    before = (dict(sims.registry.ROBOTS), dict(sims.registry.FAMILIES))
    with pytest.raises(ValueError, match=None) as err:
        load_spec_file(spec)
    assert message in str(err.value) and str(spec) in str(err.value)
    assert (sims.registry.ROBOTS, sims.registry.FAMILIES) == before  # nothing half-registered


def test_the_example_spec_file_loads(registry):
    spec = load_spec_file(ROOT / "examples" / "own_robot" / "strider.toml")
    assert [f.name for f in spec.families] == ["strider-legs", "strider-slope"]
    assert spec.robot.control_timestep == pytest.approx(0.02)
    assert all(f.robot is spec.robot for f in spec.families)


def test_unknown_names_say_what_is_allowed(registry):
    with pytest.raises(ValueError, match=r"family='nope' is unknown: allowed cheetah-cripple.*"
                                         r"PATH.toml\[#FAMILY\]"):
        get_family("nope")
    with pytest.raises(ValueError, match=r"robot='nope' is unknown: allowed cheetah.*\.toml"):
        get_robot("nope")


def test_registry_refuses_another_object_under_a_taken_name(tmp_path, registry):
    spec = write_robot(tmp_path / "a")
    fam = get_family(str(spec))
    assert register_family(fam) is fam and register_robot(fam.robot) is fam.robot
    other = Robot.from_mjcf(write_robot(tmp_path / "b", kp=30.0).with_suffix(".xml"),
                            name="strider")
    with pytest.raises(ValueError, match="robot name='strider' is already registered for "
                                         "another model"):
        register_robot(other)
    clash = TaskFamily("strider-legs", fam.robot, "another one", fam.train_sampler,
                       fam.test_conditions[:1], fam.is_held_out)
    with pytest.raises(ValueError, match="family name='strider-legs' is already registered"):
        register_family(clash)


def test_a_stored_spec_rebuilds_the_family_without_its_files(tmp_path, registry):
    spec = write_robot(tmp_path / "spec")
    fam = get_family(str(spec))
    stored = artifact_spec(fam)
    assert artifact_spec(get_family("cheetah-cripple"))["spec"] == ""  # built-ins: by name
    shutil.rmtree(tmp_path / "spec")
    del sims.registry.ROBOTS["strider"], sims.registry.FAMILIES["strider-legs"]
    rebuilt = register_document(stored["spec"])
    assert rebuilt is get_family("strider-legs") and rebuilt.robot.mjcf_text is not None
    assert rebuilt.train_sampler == fam.train_sampler
    assert rebuilt.test_conditions == fam.test_conditions
    assert rebuilt.robot.obs_dim == fam.robot.obs_dim
    assert robot_identity(rebuilt.robot) == stored["robot_identity"]
    assert spec_document(rebuilt) == stored["spec"]
    assert register_document(stored["spec"]) is rebuilt  # the same again: a no-op
    # the same files somewhere else are the same robot and family
    assert get_family(str(write_robot(tmp_path / "copy"))) is rebuilt
    # another model under the stored name is refused, naming both
    sims.registry.ROBOTS["strider"] = Robot.from_mjcf(
        write_robot(tmp_path / "other", kp=30.0).with_suffix(".xml"), name="strider",
        n_substeps=2)
    del sims.registry.FAMILIES["strider-legs"]
    with pytest.raises(ValueError, match=r"robot 'strider' \(mjcf sha256 \w+, control step "
                                         r"0.02 s\), not robot 'strider'.*differ in mjcf_sha256"):
        register_document(stored["spec"])
    with pytest.raises(ValueError, match="differ in mjcf_sha256"):
        check_robot_identity(stored["robot_identity"], sims.registry.ROBOTS["strider"], "x")


# ------------------------------------------------------------------ every command, fresh processes
def adapt(*args: str, cwd: Path, runtime: bool = False) -> subprocess.CompletedProcess:
    """``python -m adapt_cli ARGS`` (or, with ``runtime``, the robot-side
    ``python -m export.runtime.cli`` with the training stack blocked) in a new process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if runtime:
        script = blocking_prelude(*TRAINING) + textwrap.dedent(f"""
            from export.runtime.cli import main
            rc = main({list(args)!r})
            assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED]
            sys.exit(rc)
        """)
        cmd = [sys.executable, "-c", script]
    else:
        cmd = [sys.executable, "-m", "adapt_cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with the robot's files under spec/ and one `train tiny` run of its family
    (shared by the tests below); the run is made from the spec file, later steps are not."""
    work = tmp_path_factory.mktemp("own_robot")
    write_robot(work / "spec")
    ok(adapt("train", "tiny", "--set", "family=spec/strider.toml#strider-legs", "--out",
             "run", "--quiet", cwd=work))
    return work


@pytest.fixture
def spec_moved_away(work):
    """The spec file and its MJCF are not where the run was made from (and nowhere else)."""
    (work / "spec").rename(work / "hidden")
    yield
    (work / "hidden").rename(work / "spec")


def test_sims_list_collect_and_render_take_the_spec_file(work, tmp_path):
    listed = json.loads(ok(adapt("sims", "list", "spec/strider.toml", "--json", cwd=work)))
    robot = listed["robots"]["strider"]
    assert robot["legs"] == ["back", "front"] and robot["act_dim"] == 4
    assert robot["control_timestep_s"] == pytest.approx(0.02)
    assert listed["families"]["strider-legs"]["held_out"] == ["lost_leg(back,0.5)",
                                                             "shortened(back,0.6)"]
    out = tmp_path / "data.npz"
    ok(adapt("sims", "collect", "--family", "spec/strider.toml#strider-legs", "--trajectories",
             "3", "--duration", "0.4", "--out", str(out), cwd=work))
    with np.load(out) as z:
        assert str(z["robot"]) == "strider" and str(z["family"]) == "strider-legs"
        assert z["obs"].shape[0] == 3 and z["act"].shape[-1] == 4
    png = tmp_path / "lost.png"
    ok(adapt("sims", "render", "spec/strider.toml", "--condition", "lost_leg:back", "--out",
             str(png), "--duration", "0.04", "--width", "64", "--height", "48", cwd=work))
    assert png.read_bytes()[:4] == b"\x89PNG"
    refused = adapt("sims", "collect", "--family", "spec/strider.toml#nope", "--out",
                    str(tmp_path / "x.npz"), cwd=work)
    assert refused.returncode == 2 and "family='nope' is not in spec/strider.toml: allowed " \
        "strider-legs" in refused.stderr


def test_the_run_reloads_exports_and_deploys_without_the_spec_file(work, tmp_path,
                                                                   spec_moved_away):
    config = json.loads((work / "run" / "config.json").read_text())
    assert config["family"] == "strider-legs"  # the name; the checkpoint holds the spec
    table = ok(adapt("eval-model", "run", "--trajectories", "2", "--duration", "0.6", cwd=work))
    assert "strider-legs (test)" in table and "grbal" in table
    ok(adapt("export", "run", "--out", str(tmp_path / "exp"), cwd=work))
    manifest = json.loads((tmp_path / "exp" / "manifest.json").read_text())
    assert manifest["robot"] == "strider" and manifest["family"] == "strider-legs"
    assert manifest["robot_identity"]["control_timestep"] == pytest.approx(0.02)
    # the robot-side runtime (no torch) rebuilds the simulated robot from the export
    report = tmp_path / "deploy"
    out = ok(adapt("deploy", str(tmp_path / "exp"), "--robot", "sim:strider", "--condition",
                   "lost_leg:back", "--duration", "0.4", "--fast", "--quiet", "--out",
                   str(report), cwd=work, runtime=True))
    assert "grbal for strider" in out and "at 50 Hz" in out
    summary = json.loads((report / "report.json").read_text())
    assert summary["report"]["steps"] == 20 and summary["schedule"] == "lost_leg(back,0.5)"


def test_eval_deploy_by_spec_and_train_policy(work, tmp_path):
    rep = tmp_path / "rep"
    ok(adapt("eval", "--family", "spec/strider.toml", "--method", "grbal=run", "--method",
             "random", "--seeds", "1", "--duration", "0.8", "--workers", "2",
             "--scenarios", "fixed,switch", "--out", str(rep), cwd=work))
    results = json.loads((rep / "results.json").read_text())
    assert results["meta"]["family"] == "strider-legs"
    assert {e["method"] for e in results["episodes"]} == {"grbal", "random"}
    assert len(results["episodes"]) == 2 * 2 * 2  # methods x scenarios x held-out conditions
    ok(adapt("report", str(rep), cwd=tmp_path))  # rebuilt from results.json alone

    exp = tmp_path / "exp"
    ok(adapt("export", "run", "--out", str(exp), cwd=work))
    out = ok(adapt("deploy", str(exp), "--robot", "sim:spec/strider.toml", "--duration", "0.2",
                   "--fast", "--quiet", cwd=work, runtime=True))
    assert "steps 10" in out
    # the same name on another model (stiffer motors) or at another rate is refused
    for folder, kw, differ in ((tmp_path / "stiff", {"kp": 35.0}, "mjcf_sha256"),
                               (tmp_path / "fast", {"dt": 0.01}, "control_timestep")):
        spec = write_robot(folder, **kw)
        bad = adapt("deploy", str(exp), "--robot", f"sim:{spec}", "--duration", "0.2", "--fast",
                    "--quiet", cwd=work, runtime=True)
        assert bad.returncode == 2, bad.stderr
        assert "was made for robot 'strider' (mjcf sha256" in bad.stderr
        assert "not robot 'strider'" in bad.stderr and f"differ in {differ}" in bad.stderr

    ok(adapt("train-policy", "tiny", "--set", "family=spec/strider.toml", "--set",
             "distill.teacher=run/checkpoint.pt", "--out", str(tmp_path / "pol"), cwd=work))
    ok(adapt("export-policy", str(tmp_path / "pol"), "--out", str(tmp_path / "pexp"),
             cwd=tmp_path))
    out = ok(adapt("deploy", str(tmp_path / "pexp"), "--robot", "sim:strider", "--duration",
                   "0.2", "--fast", "--quiet", cwd=tmp_path, runtime=True))
    assert "policy for strider" in out


def test_sweep_workers_run_a_spec_family(work, tmp_path):
    """Spawned worker processes get the family's spec with their run."""
    out = ok(adapt("sweep", "tiny", "--set", "family=spec/strider.toml", "--set",
                   "iterations=1", "--seeds", "0-1", "--workers", "2", "--out",
                   str(tmp_path / "sweep"), cwd=work))
    assert "2 trained" in out
    for seed in (0, 1):
        config = json.loads((tmp_path / "sweep" / f"seed={seed}" / "config.json").read_text())
        assert config["family"] == "strider-legs" and config["seed"] == seed


def test_gymnasium_check_env_passes_for_the_spec_robot(tmp_path, registry):
    """The Gymnasium adapter on a robot the project does not ship, position-actuated, taken
    from its spec file: the robot itself and its family."""
    gymnasium = pytest.importorskip("gymnasium")
    from gymnasium.utils.env_checker import check_env

    from sims.gym import make_gym

    spec = write_robot(tmp_path)
    for name, condition in ((str(spec), "lost_leg:back"), (f"{spec}#strider-legs", None)):
        env = make_gym(name, condition=condition, episode_steps=30)
        assert isinstance(env, gymnasium.Env)
        check_env(env, skip_render_check=True)
        env.close()
