"""Suites as data: every suite loads, its tasks validate, scores normalise as documented."""

import pytest

from envs import validate_task
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.suites import Suite, load_suite, suite_names, suite_of


def test_the_required_suites_exist_and_their_tasks_are_valid():
    assert {"dmc_easy", "dmc_hard", "atari100k", "humanoidbench"} <= set(suite_names())
    for name in ("dmc_easy", "dmc_hard"):
        suite = load_suite(name)
        for task in suite.tasks:
            validate_task(task, suite.obs)
    atari = load_suite("atari100k")
    assert len(atari.tasks) == 26 and atari.action_repeat == 4 and atari.steps == 400_000
    games = {t.split("/")[1] for t in atari.tasks}
    assert games == set(atari.score["low"]) == set(atari.score["high"])


def test_known_normalised_scores():
    atari = load_suite("atari100k")
    assert atari.normalize("atari/Pong", [-20.7]) == pytest.approx(0.0)
    assert atari.normalize("atari/Pong", [14.6, 14.6]) == pytest.approx(1.0)
    # DreamerV3's published Boxing at 100k (about 79) is 6.6 human-normalised.
    assert atari.normalize("atari/Boxing", [79.0]) == pytest.approx((79.0 - 0.1) / 12.0)
    assert load_suite("dmc_easy").normalize("dmc/walker-walk", [400.0, 600.0]) == 0.5
    success = Suite("s", ("x/a",), "state", 1, 1, 1, {"kind": "success", "threshold": {"a": 10}})
    assert success.normalize("x/a", [9.0, 10.0, 30.0, 2.0]) == 0.5


def test_lookups_and_errors():
    assert suite_of("dmc/dog-run").name == "dmc_hard"
    assert suite_of("gym/CartPole-v1") is None
    with pytest.raises(ConfigError, match="nosuch.*atari100k"):
        load_suite("nosuch")
    with pytest.raises(ConfigError, match="not in suite"):
        load_suite("dmc_easy").normalize("dmc/dog-run", [1.0])
