"""A sweep's grid: suite x settings x seeds, with the suite's protocol and stable names."""

from pathlib import Path

import pytest

from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.suites import load_suite
from mbrl_sam.sweep.grid import expand, parse_axes


def test_a_suite_times_objectives_times_seeds_gives_every_run_with_the_suites_protocol():
    suite = load_suite("dmc_easy")
    axes = parse_axes(["agent=tdmpc", "objective=erm,sam"])
    runs = expand(suite, axes, [0, 1], Path("root"))
    assert len(runs) == len(suite.tasks) * 2 * 2 == 24
    first = runs[0]
    assert first.name == "dmc_cartpole-swingup.objective-erm.seed-0"
    assert first.run_dir == Path("root") / first.name
    settings = dict(o.split("=", 1) for o in first.overrides)
    assert settings == {
        "obs": "state",
        "steps": "100000",
        "action_repeat": "2",
        "eval_episodes": "10",
        "agent": "tdmpc",
        "objective": "erm",
        "task": "dmc/cartpole-swingup",
        "seed": "0",
    }
    names = {r.name for r in runs}
    assert "dmc_ball_in_cup-catch.objective-sam.seed-1" in names and len(names) == 24


def test_a_setting_given_on_the_command_line_wins_over_the_suites():
    suite = load_suite("dmc_easy")
    runs = expand(suite, parse_axes(["steps=2000", "task=dmc/walker-walk"]), [3], Path("r"))
    assert [r.name for r in runs] == ["dmc_walker-walk.seed-3"]
    assert "steps=2000" in runs[0].overrides and "steps=100000" not in runs[0].overrides


def test_every_listed_setting_names_its_runs_and_given_seeds_replace_the_count():
    axes = parse_axes(["task=gym/Pendulum-v1", "objective.rho=0.05,0.1", "seed=4,7", "size=tiny"])
    runs = expand(None, axes, [0], Path("r"))
    assert [r.name for r in runs] == [
        "gym_Pendulum-v1.objective.rho-0.05.seed-4",
        "gym_Pendulum-v1.objective.rho-0.05.seed-7",
        "gym_Pendulum-v1.objective.rho-0.1.seed-4",
        "gym_Pendulum-v1.objective.rho-0.1.seed-7",
    ]


@pytest.mark.parametrize(
    "args,message",
    [
        (["task=dmc/dog-run"], "not in suite 'dmc_easy'"),
        (["objective"], "key=value"),
        (["seed=1", "seed=2"], "given twice"),
    ],
)
def test_bad_grids_are_one_line_errors(args, message):
    with pytest.raises(ConfigError, match=message) as err:
        expand(load_suite("dmc_easy"), parse_axes(args), [0], Path("r"))
    assert "\n" not in str(err.value)


def test_a_grid_without_tasks_is_refused():
    with pytest.raises(ConfigError, match="suite=<name> or task="):
        expand(None, parse_axes(["objective=sam"]), [0], Path("r"))


def test_seeds_per_process_groups_consecutive_seeds_into_one_run():
    axes = parse_axes(["task=gym/Pendulum-v1", "seed=0,1,2,3,4,9"])
    runs = expand(None, axes, [0], Path("r"), seeds_per_process=2)
    assert [r.name for r in runs] == [
        "gym_Pendulum-v1.seeds-0-1",
        "gym_Pendulum-v1.seeds-2-3",
        "gym_Pendulum-v1.seed-4",
        "gym_Pendulum-v1.seed-9",
    ]
    settings = [dict(o.split("=", 1) for o in r.overrides) for r in runs]
    assert [(s["seed"], s.get("seeds")) for s in settings] == [
        ("0", "2"),
        ("2", "2"),
        ("4", None),
        ("9", None),
    ]
