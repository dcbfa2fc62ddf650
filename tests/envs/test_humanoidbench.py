"""HumanoidBench adapter on the real envs (h1hand-walk, h1-walk, h1hand-reach) when humanoid_bench
imports; always: its errors, the suite file and success-rate scores."""

import importlib
import sys

import numpy as np
import pytest

from envs import list_tasks, make_env, validate_task
from envs.humanoidbench import (
    BENCHMARK_TASKS,
    DEFAULT_ACTION_REPEAT,
    INSTALL_STEPS,
    missing_package_message,
)
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.suites import load_suite

WALK = "humanoidbench/h1hand-walk-v0"
H1HAND_ACT = 61


def _import_error() -> str | None:
    try:
        importlib.import_module("humanoid_bench")
    except ImportError as err:
        return str(err)
    return None


IMPORT_ERROR = _import_error()
needs_humanoid_bench = pytest.mark.skipif(
    IMPORT_ERROR is not None,
    reason=f"humanoid_bench does not import ({IMPORT_ERROR}); install it: {INSTALL_STEPS} "
    "(envs/README.md, HumanoidBench)",
)


@needs_humanoid_bench
def test_h1hand_walk_steps_with_float32_obs_and_finite_rewards():
    with make_env(WALK, seed=0) as env:
        spec = env.spec
        assert spec.obs_shape == (151,) and spec.obs_dtype == np.float32
        assert spec.action_dim == H1HAND_ACT and not spec.discrete
        assert spec.action_repeat == DEFAULT_ACTION_REPEAT == 1
        obs = env.reset()
        assert obs.shape == (151,) and obs.dtype == np.float32 and np.all(np.isfinite(obs))
        rng = np.random.default_rng(0)
        for _ in range(5):
            obs, reward, terminated, truncated = env.step(rng.uniform(-1, 1, H1HAND_ACT))
            assert obs.shape == (151,) and obs.dtype == np.float32
            assert isinstance(reward, float) and np.isfinite(reward)
            assert terminated is False and truncated is False
        with pytest.raises(ValueError, match="action_dim=61"):
            env.step(np.zeros(19))


@needs_humanoid_bench
def test_actions_are_clipped_to_the_actuator_ranges():
    with make_env(WALK, seed=0) as env:
        env.reset()
        sim = env._env.unwrapped
        env.step(np.full(H1HAND_ACT, 5.0))  # beyond [-1, 1]: clipped to +1, i.e. each ctrl's max
        np.testing.assert_allclose(sim.data.ctrl, sim.action_high, rtol=1e-6)
        env.step(np.full(H1HAND_ACT, -1.0))
        np.testing.assert_allclose(sim.data.ctrl, sim.action_low, rtol=1e-6)


@needs_humanoid_bench
def test_action_repeat_sums_the_rewards_of_single_steps():
    action = np.random.default_rng(1).uniform(-0.3, 0.3, H1HAND_ACT)
    with make_env(WALK, action_repeat=2, seed=5) as twice, make_env(WALK, seed=5) as once:
        np.testing.assert_array_equal(twice.reset(), once.reset())
        obs2, reward2, _, _ = twice.step(action)
        steps = [once.step(action) for _ in range(2)]
    np.testing.assert_allclose(obs2, steps[1][0], rtol=1e-6, atol=1e-6)
    assert reward2 == pytest.approx(steps[0][1] + steps[1][1], rel=1e-9)


@needs_humanoid_bench
def test_seeded_resets_are_reproducible_and_close_twice_is_safe():
    env = make_env(WALK, seed=3)
    first = env.reset()
    np.testing.assert_array_equal(env.reset(seed=3), first)
    assert not np.array_equal(env.reset(seed=4), first)
    env.close()
    env.close()


@needs_humanoid_bench
def test_tasks_drawing_from_np_random_reset_reproducibly_and_leave_it_alone():
    # h1hand-reach draws its goal (part of the obs) from np.random, not the env's np_random.
    with make_env("humanoidbench/h1hand-reach-v0", seed=7) as env:
        np.random.seed(0)
        outer = np.random.get_state()[1].copy()
        first = env.reset()
        env.step(np.zeros(H1HAND_ACT))
        np.testing.assert_array_equal(np.random.get_state()[1], outer)
        np.random.seed(123)  # someone else moves the global stream; the env must not care
        np.testing.assert_array_equal(env.reset(seed=7), first)
        assert not np.array_equal(env.reset(seed=8)[-6:], first[-6:])


@needs_humanoid_bench
def test_render_draws_the_task_camera_and_follows_the_robot():
    with make_env("humanoidbench/h1-walk-v0", seed=0) as env:
        env.reset(seed=0)
        first = env.render()
        assert first.shape == (256, 256, 3) and first.dtype == np.uint8  # the package's size
        assert first.std() > 10
        rng = np.random.default_rng(0)
        for _ in range(10):
            env.step(rng.uniform(-1, 1, env.spec.action_dim))
        assert np.abs(env.render().astype(int) - first).mean() > 0.5
        env.reset(seed=0)
        np.testing.assert_array_equal(env.render(), first)


@needs_humanoid_bench
def test_h1_walk_sizes_and_unknown_ids():
    with make_env("humanoidbench/h1-walk-v0") as env:
        assert env.spec.obs_shape == (51,) and env.spec.action_dim == 19
    with pytest.raises(ConfigError, match="h1hand-wlak-v0.*close matches: h1hand-walk-v0"):
        validate_task("humanoidbench/h1hand-wlak-v0")


def test_pixels_are_refused_at_validation_without_the_package():
    with pytest.raises(ConfigError, match="obs='pixels'.*use obs=state"):
        validate_task(WALK, "pixels")


def test_missing_package_message_says_how_to_install():
    err = ModuleNotFoundError("No module named 'humanoid_bench'", name="humanoid_bench")
    message = missing_package_message("h1hand-walk-v0", err)
    assert "task='humanoidbench/h1hand-walk-v0'" in message
    assert "No module named 'humanoid_bench'" in message
    assert "git clone https://github.com/carlosferrazza/humanoid-bench" in message
    assert "pip install --no-deps -e /opt/humanoid-bench" in message
    assert "envs/README.md" in message


def test_validate_without_the_package_raises_the_install_hint(monkeypatch):
    # None in sys.modules makes `import humanoid_bench` fail as on a machine without it.
    for name in [
        m for m in sys.modules if m == "humanoid_bench" or m.startswith("humanoid_bench.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "humanoid_bench", None)
    with pytest.raises(ConfigError, match="needs HumanoidBench.*pip install --no-deps -e"):
        validate_task(WALK)


def test_suite_file_lists_the_benchmark_with_a_threshold_per_task():
    suite = load_suite("humanoidbench")
    names = tuple(t.split("/", 1)[1] for t in suite.tasks)
    assert names == BENCHMARK_TASKS == tuple(list_tasks("humanoidbench"))
    assert len(names) == 31 and "h1strong-highbar_hard-v0" in names
    assert set(suite.score["threshold"]) == set(names)
    assert suite.obs == "state" and suite.action_repeat == DEFAULT_ACTION_REPEAT
    assert suite.score["kind"] == "success" and suite.eval_episodes == 10


@needs_humanoid_bench
def test_thresholds_match_the_task_classes():
    from humanoid_bench.env import TASKS

    thresholds = load_suite("humanoidbench").score["threshold"]
    for name, threshold in thresholds.items():
        task = name.split("-")[1]
        assert TASKS[task].success_bar == threshold, name


def test_success_rate_against_hand_computed_values():
    suite = load_suite("humanoidbench")
    # walk's bar is 700: 700 and 912.5 reach it, 699.9 and 12 do not.
    assert suite.normalize(WALK, [699.9, 700.0, 912.5, 12.0]) == 0.5
    # reach's bar is 12000; kitchen's is 4 completed subtasks.
    assert suite.normalize("humanoidbench/h1hand-reach-v0", [11999.0, 15000.0, 3000.0]) == 1 / 3
    assert suite.normalize("humanoidbench/h1hand-kitchen-v0", [4.0, 4.0]) == 1.0
    assert suite.normalize("humanoidbench/h1hand-cube-v0", [369.0]) == 0.0
