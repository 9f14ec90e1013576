"""The Gymnasium adapter: Gymnasium's own checker, seeding, spaces, episode ends, families."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")
from blocked_imports import assert_script_prints_ok, blocking_prelude  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402
from test_collect import UNSTABLE_MJCF  # noqa: E402

from sims.conditions import HEALTHY, Schedule, parse_condition  # noqa: E402
from sims.env import AdaptEnv  # noqa: E402
from sims.gym import make_gym  # noqa: E402
from sims.registry import get_family  # noqa: E402
from sims.robots import CHEETAH, QUADRUPED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, condition", [
    ("cheetah", "disabled:bthigh+obs_noise:0.05"),
    ("quadruped", "lost_leg:back_right"),
    ("cheetah-cripple", None),
])
def test_gymnasium_check_env_passes(name, condition):
    env = make_gym(name, condition=condition, episode_steps=40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)  # raises on any API violation, the step determinism check included
    # Its passive checks only warn (an observation outside its space, a wrong dtype): none may.
    # Allowed: observations are unbounded, and an env built without gymnasium.make has no spec.
    allowed = ("space minimum value is -infinity", "space maximum value is infinity",
               "not having a spec")
    unexpected = [str(w.message) for w in caught
                  if not any(text in str(w.message) for text in allowed)]
    assert not unexpected
    env.close()


@pytest.mark.parametrize("robot", [CHEETAH, QUADRUPED])
def test_spaces_come_from_the_robot(robot):
    env = make_gym(robot.name, episode_steps=5)
    lo, hi = robot.action_bounds
    model = robot.base_model()
    np.testing.assert_array_equal(lo, model.actuator_ctrlrange[:, 0])
    np.testing.assert_array_equal(env.action_space.low, lo.astype(np.float32))
    np.testing.assert_array_equal(env.action_space.high, hi.astype(np.float32))
    assert env.observation_space.shape == (robot.obs_dim,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (robot.obs_dim,) and obs in env.observation_space


def test_a_seed_repeats_the_episode_noise_included():
    """Same seed and actions, same observations (the condition adds observation noise)."""
    env = make_gym("cheetah", condition="obs_noise:0.05", episode_steps=30)
    actions = np.random.default_rng(7).uniform(-1, 1, (30, CHEETAH.act_dim)).astype(np.float32)

    def episode(seed):
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for a in actions:
            out.append(env.step(a)[0])
        return np.stack(out)

    a, b, c = episode(3), episode(3), episode(4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], c[0])
    # The noise is real: the observations differ from the noise-free state the env holds.
    assert np.abs(a[-1] - env.env.true_observation()).max() > 0.01


def test_the_time_limit_truncates_and_info_reports_speed_and_condition():
    env = make_gym("cheetah", condition="payload:2", episode_steps=12)
    obs, info = env.reset(seed=1)
    assert info["condition"] == parse_condition("payload:2").label and info["step"] == 0
    for i in range(12):
        obs, reward, terminated, truncated, info = env.step(np.full(6, 0.3, np.float32))
        assert not terminated and truncated == (i == 11)
        assert np.isfinite(reward)
    assert info["speed"] == pytest.approx(env.env.physics.forward_velocity())
    assert info["step"] == 12 and not info["diverged"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6, np.float32))


def test_divergence_terminates(tmp_path):
    path = tmp_path / "unstable.xml"
    path.write_text(UNSTABLE_MJCF)
    env = make_gym(str(path), episode_steps=10)
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(np.array([0.5], np.float32))
    assert terminated and not truncated and info["diverged"] and reward == 0.0


def test_a_schedule_switches_mid_episode():
    env = make_gym("cheetah", condition=Schedule.switch(HEALTHY, parse_condition("disabled:bthigh"),
                                                        at=0.05), episode_steps=10)
    env.reset(seed=0)
    labels = [env.step(np.zeros(6, np.float32))[4]["condition"] for _ in range(10)]
    assert labels[0] == "healthy" and labels[-1] == "disabled(bthigh)"


def test_a_family_draws_each_episodes_condition_from_its_split():
    family = get_family("cheetah-cripple")
    env = make_gym("cheetah-cripple", episode_steps=5)
    train = {env.reset(seed=s)[1]["condition"] for s in range(12)}
    held_out = {c.label for c in family.test_conditions}
    assert len(train) > 1 and not train & held_out
    assert env.reset(seed=5)[1]["condition"] == env.reset(seed=5)[1]["condition"]
    test_env = make_gym("cheetah-cripple", split="test", episode_steps=5)
    assert test_env.reset(seed=0)[1]["condition"] in held_out


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match="a family draws"):
        make_gym("cheetah-cripple", condition="disabled:bthigh")
    with pytest.raises(ValueError, match="or a family: cheetah-cripple"):
        make_gym("cheeta")
    with pytest.raises(ValueError, match="bthigh|actuator"):
        make_gym("quadruped", condition="disabled:bthigh")
    with pytest.raises(ValueError, match="split='val'"):
        make_gym("cheetah-cripple", split="val")
    with pytest.raises(ValueError, match="render_mode='human'"):
        make_gym("cheetah", render_mode="human")
    with pytest.raises(ValueError, match="episode_steps"):
        make_gym("cheetah", episode_steps=0)


def test_rgb_array_rendering():
    env = make_gym("cheetah", episode_steps=5, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (env.height, env.width, 3) and frame.dtype == np.uint8
    assert frame.std() > 0  # a scene, not a blank buffer
    env.close()
    env.close()  # closing twice is allowed


def test_the_adapter_wraps_the_dm_env_environment():
    """Under one generator the adapter and AdaptEnv give the same observations."""
    env = make_gym("quadruped", episode_steps=8)
    obs, _ = env.reset(seed=11)
    # gymnasium seeds its generator as np.random.default_rng(seed) does
    ref = AdaptEnv(QUADRUPED, HEALTHY, 8, seed=np.random.default_rng(11))
    np.testing.assert_array_equal(obs, ref.reset().observation)


def test_sims_imports_without_gymnasium():
    script = blocking_prelude("gymnasium") + (
        "import numpy as np\n"
        "from sims import AdaptEnv, Dataset, get_family\n"
        "from sims.collect import collect_open_loop\n"
        "AdaptEnv('cheetah', episode_steps=3, seed=0).reset()\n"
        "try:\n"
        "    import sims.gym\n"
        "except ImportError as e:\n"
        "    assert 'adaptive-control[gym]' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('sims.gym imported without gymnasium')\n"
        "assert not any(m.split('.')[0] in BLOCKED for m in sys.modules)\n"
        "print('ok')\n")
    assert_script_prints_ok(script)
