"""A study's CSVs: a finished run's rows are found, a partial run is not counted, a run with other
settings is not mistaken for it; identities from real configs."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from agents.run import load_config, study_identity, validate_config
from mbrl_sam.evaluation.study import (
    StudyRun,
    is_recorded,
    read_rows,
    record,
    recorded_runs,
)

RUN = StudyRun(
    task="dmc/walker-walk",
    agent="tdmpc",
    size="tiny",
    objective="sam",
    rho="0.001",
    perturb="encoder+dynamics",
    steps="300",
    settings="eval_episodes=1",
    seed="0",
)
CURVE = [(0, -10.0), (100, 5.5), (300, 12.25)]
MEASURES = {"sharpness/top_eigenvalue": 3.5, "value_gap/abs_gap": 1.25}


def test_a_finished_runs_rows_are_found_with_its_curve_and_measurement(tmp_path):
    assert record(tmp_path, RUN, CURVE, MEASURES, "abc1234")
    assert is_recorded(tmp_path, RUN)
    curve = read_rows(tmp_path / "dmc_walker-walk.csv")
    assert [(int(r["step"]), float(r["return"])) for r in curve] == CURVE
    assert {r["commit"] for r in curve} == {"abc1234"}
    assert {r["settings"] for r in curve} == {"eval_episodes=1"}
    (measure,) = read_rows(tmp_path / "dmc_walker-walk.measure.csv")
    assert measure["step"] == "300" and float(measure["sharpness/top_eigenvalue"]) == 3.5


def test_recording_twice_writes_once(tmp_path):
    assert record(tmp_path, RUN, CURVE, MEASURES, "a")
    assert not record(tmp_path, RUN, CURVE, MEASURES, "b")
    assert len(read_rows(tmp_path / "dmc_walker-walk.csv")) == len(CURVE)
    assert len(read_rows(tmp_path / "dmc_walker-walk.measure.csv")) == 1


def test_other_settings_seeds_and_commits(tmp_path):
    record(tmp_path, RUN, CURVE, MEASURES, "a")
    for change in (
        dict(rho="0.005"),
        dict(perturb="all"),
        dict(objective="erm", rho="", perturb=""),
        dict(seed="1"),
        dict(steps="600"),
        dict(settings="eval_episodes=1 objective.every=5"),
        dict(size="1M"),
    ):
        assert not is_recorded(tmp_path, dataclasses.replace(RUN, **change)), change
    # Where it ran is not part of what it is: another commit's run counts.
    assert recorded_runs(tmp_path, RUN.task) == {RUN}


def test_a_partial_run_is_not_counted(tmp_path):
    # Curve rows without the measurement a finished run writes last (a writer cut short).
    record(tmp_path, RUN, CURVE, MEASURES, "a")
    measure_csv = tmp_path / "dmc_walker-walk.measure.csv"
    measure_csv.write_text(measure_csv.read_text().splitlines()[0] + "\n")
    assert not is_recorded(tmp_path, RUN)
    # A measurement at a step its curve never reached.
    other = dataclasses.replace(RUN, seed="7")
    record(tmp_path, other, CURVE, MEASURES, "a")
    rows = read_rows(tmp_path / "dmc_walker-walk.csv")
    kept = [r for r in rows if not (r["seed"] == "7" and r["step"] == "300")]
    header = list(rows[0])
    lines = [",".join(header)] + [",".join(r[k] for k in header) for r in kept]
    (tmp_path / "dmc_walker-walk.csv").write_text("\n".join(lines) + "\n")
    assert not is_recorded(tmp_path, other)
    # Recording the partial run again completes it.
    assert record(tmp_path, RUN, CURVE, MEASURES, "a")
    assert is_recorded(tmp_path, RUN)


def test_new_measurement_columns_widen_the_file_and_keep_old_rows(tmp_path):
    record(tmp_path, RUN, CURVE, MEASURES, "a")
    other = dataclasses.replace(RUN, seed="1")
    record(tmp_path, other, CURVE, {**MEASURES, "model_error/latent_mse_15": 0.5}, "a")
    rows = read_rows(tmp_path / "dmc_walker-walk.measure.csv")
    assert [r["seed"] for r in rows] == ["0", "1"]
    assert rows[0]["model_error/latent_mse_15"] == "" and rows[1]["model_error/latent_mse_15"]
    assert recorded_runs(tmp_path, RUN.task) == {RUN, other}


def _identity(*overrides: str) -> StudyRun:
    cfg = load_config(list(overrides))
    validate_config(cfg, "/nonexistent/run")
    return study_identity(cfg)


def test_identity_lists_what_differs_from_the_defaults():
    base = _identity("task=dmc/walker-walk", "objective=sam")
    assert (base.agent, base.size, base.objective) == ("tdmpc", "tiny", "sam")
    # The agent's own SAM settings (the paper's code's), resolved from auto and unset.
    assert (base.rho, base.perturb, base.settings) == ("0.001", "encoder+dynamics", "")
    changed = _identity(
        "task=dmc/walker-walk",
        "objective=sam",
        "objective.every=5",
        "agent.batch_size=32",
        "threads=2",
        "progress=false",
        "seed=3",
        "steps=2000",
    )
    # Threads and progress change nothing learned; seed and steps have columns of their own.
    assert changed.settings == "agent.batch_size=32 objective.every=5"
    assert (changed.seed, changed.steps) == ("3", "2000")
    assert (
        changed.method
        == "tdmpc-sam rho=0.001 perturb=encoder+dynamics agent.batch_size=32 objective.every=5"
    )


def test_identity_of_erm_ignores_sams_knobs_and_dreamer_perturbs_all():
    erm = _identity("objective=erm", "objective.every=5", "objective.rho=0.1")
    assert (erm.rho, erm.perturb, erm.settings, erm.method) == ("", "", "", "tdmpc-erm")
    dreamer = _identity("agent=dreamer", "objective=sam", "eval_episodes=2")
    assert (dreamer.rho, dreamer.perturb) == ("0.05", "all")
    assert (
        dreamer.settings == "eval_episodes=2"
        and dreamer.method == "dreamer-sam rho=0.05 perturb=all"
    )


@pytest.mark.parametrize("name", ["a/b", "../x", "", "sp ace"])
def test_a_bad_study_name_is_refused(name):
    from mbrl_sam.errors import ConfigError

    cfg = load_config(["objective=sam"])
    cfg.study = name
    with pytest.raises(ConfigError, match="study="):
        OmegaConf.to_object(cfg)


def test_a_tasks_random_reference_is_kept_once(tmp_path):
    from mbrl_sam.evaluation.study import random_references, record_random

    assert random_references(tmp_path) == {}
    assert record_random(tmp_path, "dmc/walker-walk", [30.0, 50.0], 0, "abc")
    assert not record_random(tmp_path, "dmc/walker-walk", [99.0], 0, "def")
    assert record_random(tmp_path, "dmc/cheetah-run", [1.5], 0, "abc")
    assert random_references(tmp_path) == {"dmc/walker-walk": 40.0, "dmc/cheetah-run": 1.5}
    rows = (tmp_path / "random.csv").read_text().splitlines()
    assert rows[:2] == ["task,return,episodes,seed,commit", "dmc/walker-walk,40.0,2,0,abc"]
    with pytest.raises(ValueError, match="at least one episode"):
        record_random(tmp_path, "dmc/hopper-hop", [], 0, "abc")
