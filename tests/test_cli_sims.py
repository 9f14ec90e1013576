"""``adapt sims list | render | collect`` through ``adapt_cli.main``."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

import sims.collect
import sims.env
from adapt_cli import main
from sims.conditions import MODIFIERS
from sims.dataset import Dataset
from sims.registry import FAMILIES, get_family

ROBOTS = ("cheetah", "quadruped")
KINDS = ("slope", "heightfield", "friction", "payload", "disabled", "weak", "locked",
         "shortened", "lost_leg", "calibration", "obs_noise")
FAMILY_NAMES = ("cheetah-cripple", "cheetah-terrain", "cheetah-payload", "cheetah-mixed",
                "cheetah-reversed", "quadruped-leg-failure", "quadruped-slope")


# ------------------------------------------------------------------ list
def test_list_names_robots_condition_kinds_and_families(capsys):
    assert main(["sims", "list"]) == 0
    out = capsys.readouterr().out
    for name in ROBOTS + FAMILY_NAMES:
        assert name in out
    for kind in KINDS:
        assert MODIFIERS[kind].syntax in out
    assert "bthigh" in out and "back_right" in out  # actuators and legs are listed


def test_list_json(capsys):
    assert main(["sims", "list", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"robots", "conditions", "families"}
    assert set(ROBOTS) <= set(d["robots"])
    assert set(KINDS) <= set(d["conditions"]) and set(d["conditions"]) == set(MODIFIERS)
    # every registered family; besides the built-ins, only the frame-skipped ones that
    # earlier tests in this process may have registered (NAME@K)
    assert set(d["families"]) == set(FAMILIES)
    assert {n for n in d["families"] if "@" not in n} == set(FAMILY_NAMES)
    cheetah = d["robots"]["cheetah"]
    assert cheetah["act_dim"] == len(cheetah["actuators"]) == 6
    assert cheetah["obs_dim"] == 17 and cheetah["control_timestep_s"] == pytest.approx(0.01)
    assert d["robots"]["quadruped"]["control_timestep_s"] == pytest.approx(0.02)
    for name, f in d["families"].items():
        assert f["robot"].partition("@")[0] in ROBOTS
        assert f["held_out"] == [c.label for c in get_family(name).test_conditions]


# ------------------------------------------------------------------ render
def test_render_png_of_the_requested_size(tmp_path, capsys):
    out = tmp_path / "tmp.png"
    rc = main(["sims", "render", "cheetah", "--condition", "disabled:bthigh", "--out", str(out),
               "--width", "160", "--height", "120", "--duration", "0.05"])
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = iio.imread(out)
    assert img.shape == (120, 160, 3) and img.dtype == np.uint8
    assert img.std() > 5  # a picture, not a blank frame
    assert "disabled(bthigh)" in capsys.readouterr().out


def test_render_gif_video(tmp_path):
    out = tmp_path / "tmp.gif"
    rc = main(["sims", "render", "quadruped", "--condition", "lost_leg:back_right", "--out",
               str(out), "--width", "96", "--height", "64", "--duration", "0.08"])
    assert rc == 0
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 4 and frames.shape[1:3] == (64, 96)


# ------------------------------------------------------------------ collect
def test_collect_writes_a_loadable_dataset(tmp_path, capsys):
    out = tmp_path / "tmp.npz"
    rc = main(["sims", "collect", "--family", "cheetah-cripple", "--trajectories", "4",
               "--duration", "0.2", "--threads", "2", "--out", str(out)])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    ds = Dataset.load(out)
    assert ds.robot == "cheetah" and ds.family == "cheetah-cripple" and ds.source == "random"
    assert ds.obs.shape == (4, 21, 17) and ds.act.shape == (4, 20, 6)
    assert ds.stats["requested"] == 4 and ds.stats["dropped_diverged"] == 0
    family = get_family("cheetah-cripple")
    for i in range(ds.n_trajectories):
        assert not family.is_held_out(ds.condition(i))
    assert list(tmp_path.iterdir()) == [out]


def test_collect_with_fall_resets_and_correlated_actions(tmp_path, capsys):
    out, plain = tmp_path / "falls.npz", tmp_path / "plain.npz"
    args = ["sims", "collect", "--family", "quadruped-leg-failure", "--trajectories", "4",
            "--duration", "6", "--threads", "2"]
    assert main([*args, "--out", str(plain)]) == 0
    assert main([*args, "--fall-reset", "auto", "--min-steps", "10", "--action-beta", "0.5",
                 "--out", str(out)]) == 0
    assert "fall resets" in capsys.readouterr().out
    ds, before = Dataset.load(out), Dataset.load(plain)
    assert ds.stats["fall_resets"] > 0 and "fall_resets" not in before.stats
    assert (ds.lengths >= 10).all()
    # each rollout's budget is spent but for a stub shorter than --min-steps
    assert ds.n_trajectories <= 4 + ds.stats["fall_resets"] - ds.stats["dropped_short"]
    assert 4 * 300 - 4 * 10 < ds.n_transitions <= 4 * 300
    assert not np.array_equal(ds.act[:, :10], before.act[:, :10])  # correlated draws


# ------------------------------------------------------------------ lengths in seconds
def test_render_and_collect_take_their_length_in_seconds(tmp_path):
    """--duration SECONDS is whole control steps of the robot (of the decision period for a
    FAMILY@K): a video's frames, a dataset's steps per trajectory."""
    video = tmp_path / "v.gif"
    assert main(["sims", "render", "quadruped", "--duration", "0.1", "--width", "32",
                 "--height", "32", "--out", str(video)]) == 0
    assert iio.imread(video, index=None).shape[0] == 5  # 0.1 s of 20 ms steps
    for family, duration, steps in (("cheetah-cripple", 0.13, 13), ("cheetah-cripple@5", 0.4, 8),
                                    ("quadruped-slope", 0.1, 5)):
        out = tmp_path / f"{family}.npz"
        assert main(["sims", "collect", "--family", family, "--trajectories", "2", "--duration",
                     str(duration), "--threads", "1", "--out", str(out)]) == 0
        ds = Dataset.load(out)
        assert steps == round(duration / get_family(family).robot.control_timestep)
        assert ds.act.shape[:2] == (2, steps) and ds.obs.shape[1] == steps + 1
        assert (ds.lengths == steps).all()


@pytest.mark.parametrize("command", [["render", "cheetah", "--out", "{tmp}/x.png"],
                                     ["collect", "--family", "cheetah-cripple@5", "--out",
                                      "{tmp}/x.npz"]], ids=["render", "collect"])
def test_a_length_under_two_steps_is_refused_naming_duration(command, tmp_path, capsys,
                                                              monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("simulation started despite invalid input")

    monkeypatch.setattr(sims.env, "AdaptEnv", no_work)
    monkeypatch.setattr(sims.collect, "collect_open_loop", no_work)
    argv = ["sims"] + [a.replace("{tmp}", str(tmp_path)) for a in command]
    least = "0.02" if command[0] == "render" else "0.1"  # two steps of 10 ms, of 50 ms
    for duration in ("0", "-1", "0.001"):
        assert main([*argv, "--duration", duration]) == 2
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"adapt: error: --duration={duration}:")
        assert f"allowed seconds >= {least}" in lines[0]
    with pytest.raises(SystemExit) as exit_:  # no alias: the length is given in seconds only
        main([*argv, "--steps", "5"])
    assert exit_.value.code == 2 and "unrecognized arguments: --steps" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ bad inputs
BAD = [
    (["render", "nope", "--out", "{tmp}/x.png"], ["robot='nope'", "cheetah", "quadruped"]),
    (["render", "cheetah", "--condition", "payload:-1", "--out", "{tmp}/x.png"],
     ["payload.mass=-1.0", "allowed"]),
    (["render", "cheetah", "--condition", "slope:40", "--out", "{tmp}/x.png"],
     ["slope.degrees=40.0", "allowed"]),
    (["render", "cheetah", "--condition", "disabled:nope", "--out", "{tmp}/x.png"],
     ["disabled.actuator='nope'", "bthigh"]),
    (["render", "cheetah", "--condition", "warp:9", "--out", "{tmp}/x.png"],
     ["kind='warp'"]),
    (["render", "cheetah", "--out", "{tmp}/x.jpg"], ["--out=", "x.jpg", ".png"]),
    (["render", "cheetah", "--camera", "foo", "--out", "{tmp}/x.png"],
     ["camera='foo'", "allowed track, side, top"]),
    (["render", "cheetah", "--distance", "-1", "--out", "{tmp}/x.png"],
     ["distance=-1.0", "allowed metres > 0"]),
    (["render", "cheetah", "--distance", "nan", "--out", "{tmp}/x.png"], ["distance=nan"]),
    (["collect", "--family", "nope", "--out", "{tmp}/x.npz"],
     ["family='nope'", "cheetah-cripple"]),
    (["collect", "--family", "cheetah-cripple", "--out", "{tmp}/x.txt"],
     ["--out=", "x.txt", ".npz"]),
    (["collect", "--family", "cheetah-cripple", "--out", "{tmp}/x.npy"], ["x.npy", ".npz"]),
    (["collect", "--family", "cheetah-cripple", "--trajectories", "0", "--out", "{tmp}/x.npz"],
     ["--trajectories=0"]),
    (["collect", "--family", "cheetah-cripple", "--duration", "-3", "--out", "{tmp}/x.npz"],
     ["--duration=-3", "allowed seconds >= 0.02"]),
    (["collect", "--family", "cheetah-cripple", "--action-beta", "1", "--out", "{tmp}/x.npz"],
     ["--action-beta=1.0", "[0, 1)"]),
    (["collect", "--family", "quadruped-slope", "--fall-reset", "auto", "--fall-seconds", "-1",
      "--out", "{tmp}/x.npz"], ["--fall-reset=auto", "seconds=-1.0", ">= 0"]),
    (["collect", "--family", "cheetah-cripple", "--fall-reset", "on", "--min-steps", "0",
      "--out", "{tmp}/x.npz"], ["--min-steps 0", "min_steps=0"]),
]


@pytest.mark.parametrize("args,fragments", BAD,
                         ids=[" ".join(a).replace("{tmp}/", "") for a, _ in BAD])
def test_bad_inputs_exit_2_naming_the_value_and_do_no_work(args, fragments, tmp_path, capsys,
                                                            monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("simulation started despite invalid input")

    monkeypatch.setattr(sims.env, "AdaptEnv", no_work)
    monkeypatch.setattr(sims.collect, "collect_open_loop", no_work)
    argv = ["sims"] + [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("adapt: error:")
    for fragment in fragments:
        assert fragment in err
    assert list(tmp_path.iterdir()) == []  # no output file, no temporary file
