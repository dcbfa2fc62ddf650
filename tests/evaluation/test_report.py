"""evaluate.py and report.py on a few tiny real runs: JSON, markdown tables and PNG plots."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate
import train
from agents.run import load_config
from mbrl_sam import seeds
from mbrl_sam.evaluation.report import build_report, write_report
from mbrl_sam.evaluation.report_markdown import markdown
from mbrl_sam.evaluation.runs import Run
from mbrl_sam.progress import INTERVAL_VARIABLE
from mbrl_sam.rollout import Rollout
from tests.evaluation.test_flatness import exit_status

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "agent=dreamer",
    "task=gym/CartPole-v1",
    "size=tiny",
    "agent.batch_size=4",
    "agent.batch_length=16",
    "agent.behavior.horizon=5",
    "train_ratio=16",
    "steps=300",
    "prefill=200",
    "eval_every=150",
    "eval_episodes=2",
    "progress=false",
    "tensorboard=false",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for objective in ("erm", "sam"):
        for seed in (0, 1):
            run_dir = root / f"{objective}_{seed}"
            cfg = load_config([*TINY, f"objective={objective}", f"seed={seed}"])
            train.run(cfg, run_dir)
    return root


def test_runs_log_every_evaluation_episode(runs):
    lines = (runs / "erm_0" / "evals.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert [r["step"] for r in records] == [0, 150, 300]  # the first before any learning
    assert all(len(r["returns"]) == 2 for r in records)


def test_evaluate_writes_every_episode_return(runs):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "evaluate.py"), f"run_dir={runs / 'sam_1'}", "episodes=3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((runs / "sam_1" / "eval" / "step_300.json").read_text())
    assert result["task"] == "gym/CartPole-v1" and result["objective"] == "sam"
    assert len(result["returns"]) == 3 and all(r >= 1 for r in result["returns"])
    assert result["lengths"] == [int(r) for r in result["returns"]]  # CartPole: +1 per step


def test_evaluate_shows_env_steps_and_keeps_finished_episodes(runs, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(runs / "erm_1", run_dir)
    monkeypatch.setenv(INTERVAL_VARIABLE, "0")  # off a terminal: a line at every update
    reset = Rollout.reset

    def interrupt_the_third(self, seed):
        if seed == seeds.evaluate_script(0) + 2:
            raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) during the third episode
        return reset(self, seed)

    monkeypatch.setattr(Rollout, "reset", interrupt_the_third)
    monkeypatch.setattr(sys, "argv", ["evaluate.py", f"run_dir={run_dir}", "episodes=4"])
    assert exit_status(evaluate.main) == 130
    result = json.loads((run_dir / "eval" / "step_300.json").read_text())
    assert len(result["returns"]) == 2 and result["complete"] is False
    assert result["note"] == "interrupted (Ctrl-C or SIGTERM) after 2/4 episodes"
    assert result["mean"] == pytest.approx(sum(result["returns"]) / 2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"Interrupted: kept 2/4 episodes in {run_dir / 'eval' / 'step_300.json'}"
    # The bar counts env steps over all episodes, and names the episode and the last return.
    second = f"| {result['lengths'][0] + 1}/"  # the second episode's first step
    postfix = f"step/s, episode=2/4, return={result['returns'][0]:.1f}]"
    assert any(second in x and x.endswith(postfix) for x in lines)
    assert all(x.startswith("eval:") for x in lines[:-1]) and "\r" not in "".join(lines)


def test_evaluate_reports_bad_input_without_a_traceback(tmp_path):
    cases = {
        "has no config.yaml": [f"run_dir={tmp_path}"],
        "run_dir=<value> is required": ["episodes=3"],
        "bogus is not an option; the options are: run_dir, episodes": [
            f"run_dir={tmp_path}",
            "bogus=1",
        ],
        "video='maybe' is not valid": [f"run_dir={tmp_path}", "video=maybe"],
        "fps=0.0 is not valid; it must be a number > 0": [f"run_dir={tmp_path}", "fps=0"],
        "episodes=0 is not valid; it must be an integer >= 1": [
            f"run_dir={tmp_path}",
            "episodes=0",
        ],
    }
    for message, args in cases.items():
        proc = subprocess.run(
            [sys.executable, str(ROOT / "evaluate.py"), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and "error:" in proc.stderr and message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_report_has_tables_statistics_and_plots(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "0")
    report = write_report([runs], tmp_path / "report", reps=200, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert any(x.startswith("runs read: 100%") and "4/4" in x for x in lines)
    assert any(x.startswith("report: 100%") and "4/4" in x for x in lines)  # 2 PNG, json, md
    assert report["methods"] == ["dreamer-erm", "dreamer-sam"]
    row = report["table"]["gym/CartPole-v1"]
    assert row["dreamer-erm"]["n"] == 2 and row["dreamer-sam"]["n"] == 2
    assert report["caveats"] == []
    for method in report["methods"]:
        for point, low, high in report["aggregates"][method].values():
            assert low <= point + 1e-9 and point <= high + 1e-9
    assert "P(dreamer-sam > dreamer-erm)" in report["improvement"]
    listed = {(r["method"], r["seed"]): r for r in report["runs"]}
    assert len(listed) == 4 and all(r["steps"] == 300 and r["hours"] > 0 for r in listed.values())
    last = json.loads((runs / "erm_0" / "evals.jsonl").read_text().splitlines()[-1])
    assert listed["dreamer-erm", 0]["hours"] == last["hours"]
    assert listed["dreamer-erm", 0]["return"] == pytest.approx(sum(last["returns"]) / 2)
    curve = report["curves"]["gym/CartPole-v1"]["dreamer-erm"]
    evals = [
        [json.loads(x) for x in (runs / f"erm_{seed}" / "evals.jsonl").read_text().splitlines()]
        for seed in (0, 1)
    ]
    assert curve["steps"] == [0, 150, 300]
    for i in range(3):
        means = [sum(e[i]["returns"]) / 2 for e in evals]
        assert curve["return"][i] == pytest.approx(sum(means) / 2)
        assert curve["hours"][i] == pytest.approx((evals[0][i]["hours"] + evals[1][i]["hours"]) / 2)
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"| 300 | {curve['return'][2]:.1f} ({curve['hours'][2]:.2f} h) | " in md
    assert "| erm_0 | gym/CartPole-v1 | dreamer-erm | 0 | 300 |" in md
    assert "| gym/CartPole-v1 |" in md and "iqm" in md and "Probability of improvement" in md
    for png in ("curves.png", "aggregates.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_report_warns_of_single_seeds_and_unequal_budgets(tmp_path):
    def run(method: str, seed: int, steps: int) -> Run:
        curve = [(0, 10.0), (steps, 500.0 + seed)]
        return Run(
            tmp_path / f"{method}_{seed}", "dmc/walker-walk", method, seed, curve, [500.0], {}
        )

    equal = build_report([run("erm", 0, 100), run("erm", 1, 100), run("sam", 0, 100)], reps=50)
    assert len(equal["caveats"]) == 1 and equal["caveats"][0].startswith(
        "One seed on some task for sam:"
    )
    uneven = build_report(
        [run("erm", s, 100) for s in (0, 1)] + [run("sam", s, 80) for s in (0, 1)], reps=50
    )
    assert uneven["caveats"] == [
        "Runs on dmc/walker-walk end at different env steps (80 to 100): "
        "their returns compare unequal budgets."
    ]
    assert "## Caveats" in markdown(uneven, []) and "## Caveats" not in markdown(
        build_report([run("erm", s, 100) for s in (0, 1)], reps=50), []
    )


def test_curve_table_marks_missing_steps_and_thins_long_curves(tmp_path):
    long = [(step, float(step)) for step in range(0, 50_001, 1000)]  # 51 evaluations
    runs = [
        Run(tmp_path / "a", "dmc/walker-walk", "erm", 0, long, [50_000.0], {}),
        Run(tmp_path / "b", "dmc/walker-walk", "sam", 0, long[:3], [2000.0], {}, 0.5, {2000: 0.5}),
    ]
    report = build_report(runs, reps=20)
    sam = report["curves"]["dmc/walker-walk"]["sam"]
    assert sam == {
        "steps": [0, 1000, 2000],
        "return": [0.0, 1000.0, 2000.0],
        "hours": [None, None, 0.5],
    }
    md = markdown(report, []).split("### dmc/walker-walk\n\n")[1]
    rows = md.split("\n\n")[0].splitlines()[2:]  # below the header and the separator
    steps = [int(row.split(" | ")[0][2:]) for row in rows]
    assert steps == list(range(0, 50_001, 3000)) + [50_000]  # every 3rd of 51, and the last
    assert "| 0 | 0.0 | 0.0 |" in rows and "| 3000 | 3000.0 | - |" in rows


def test_report_gives_each_task_its_suite_score(tmp_path):
    def run(task: str, method: str, seed: int, returns: list[float]) -> Run:
        curve = [(0, 0.0), (100, sum(returns) / len(returns))]
        return Run(tmp_path / f"{method}_{seed}", task, method, seed, curve, returns, {})

    runs = [
        run("atari/Pong", "erm", 0, [-21.0, -19.0]),  # mean -20
        run("atari/Pong", "erm", 1, [-6.0]),
        run("atari/Boxing", "erm", 0, [12.1]),  # human level
        run("humanoidbench/h1hand-walk-v0", "erm", 0, [710.0, 650.0, 800.0, 100.0]),
        run("dmc/walker-walk", "erm", 0, [420.0]),
    ]
    report = build_report(runs, reps=20)
    table = report["table"]
    pong = [(-20 + 20.7) / (14.6 + 20.7), (-6 + 20.7) / (14.6 + 20.7)]
    assert table["atari/Pong"]["erm"]["score"] == pytest.approx(sum(pong) / 2)
    assert table["atari/Pong"]["erm"]["score_std"] == pytest.approx(abs(pong[0] - pong[1]) / 2)
    assert table["atari/Boxing"]["erm"]["score"] == pytest.approx(1.0)
    assert table["humanoidbench/h1hand-walk-v0"]["erm"]["score"] == pytest.approx(0.5)
    assert table["dmc/walker-walk"]["erm"]["score"] == pytest.approx(0.42)
    md = markdown(report, [])
    assert "| atari/Boxing | 1.000 ± 0.000 | (return - 0.1) / (12.1 - 0.1) (atari100k) |" in md
    assert "| atari/Pong | 0.218 ± 0.198 | (return + 20.7) / (14.6 + 20.7) (atari100k) |" in md
    assert "| dmc/walker-walk | 0.420 ± 0.000 | return / 1000 (dmc_easy) |" in md
    assert "success rate, return >= 700 (humanoidbench) |" in md


def test_evaluate_writes_the_first_episode_as_a_gif(tmp_path):
    import imageio.v3 as iio

    run_dir = tmp_path / "pendulum"
    overrides = [o for o in TINY if not o.startswith("task=")]
    train.run(load_config([*overrides, "task=gym/InvertedPendulum-v5"]), run_dir)
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "evaluate.py"),
            f"run_dir={run_dir}",
            "episodes=2",
            "video=true",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run_dir / "eval" / "step_300.json").read_text())
    frames = iio.imread(result["video"], index=None)
    # One frame after the reset and one per step of the first episode.
    assert frames.shape[:3] == (result["lengths"][0] + 1, 480, 480)
    assert frames[..., :3].std() > 5


def test_video_of_an_env_that_cannot_render_fails_before_any_episode():
    from envs import make_env
    from evaluate import check_renders
    from mbrl_sam.errors import ConfigError

    with make_env("gym/CartPole-v1") as env, pytest.raises(ConfigError, match="video=true"):
        check_renders(env, "gym/CartPole-v1")


def test_runs_of_several_suites_are_also_aggregated_per_suite(tmp_path):
    def run(task: str, method: str, ret: float) -> Run:
        name = f"{task.replace('/', '_')}_{method}"
        return Run(tmp_path / name, task, method, 0, [(0, 0.0), (100, ret)], [ret], {})

    runs = [
        run(t, m, r)
        for t, r in (("atari/Boxing", 12.1), ("atari/Pong", -20.7))
        for m in ("erm", "sam")
    ]
    runs += [run("dmc/walker-walk", "erm", 420.0), run("dmc/walker-walk", "sam", 600.0)]
    report = build_report(runs, reps=20)
    suites = report["suite_aggregates"]
    assert sorted(suites) == ["atari100k", "dmc_easy"]
    mean = suites["atari100k"]["erm"]["mean"][0]
    assert mean == pytest.approx((1.0 + 0.0) / 2)  # Boxing at human level, Pong at random
    assert suites["dmc_easy"]["sam"]["mean"][0] == pytest.approx(0.6)
    assert "### Suite atari100k" in markdown(report, [])
    one_suite = build_report([r for r in runs if r.task.startswith("atari")], reps=20)
    assert one_suite["suite_aggregates"] == {}


def test_a_study_folder_reports_per_task_iqm_and_improvement_by_hand(tmp_path):
    import dataclasses

    from mbrl_sam.evaluation.study import StudyRun, record

    erm = StudyRun("dmc/walker-walk", "tdmpc", "tiny", "erm", "", "", "200", "", "0")
    sam = dataclasses.replace(erm, objective="sam", rho="0.001", perturb="encoder+dynamics")
    for seed in range(4):
        for run, final in ((erm, 1.0 + seed), (sam, 2.0 + seed)):
            one = dataclasses.replace(run, seed=str(seed))
            measures = {"sharpness/top_eigenvalue": final}
            record(tmp_path, one, [(0, 0.0), (200, final)], measures, "c")
    # A partial run (no measurement) is left out.
    partial = dataclasses.replace(sam, seed="9")
    with (tmp_path / "dmc_walker-walk.csv").open("a") as f:
        f.write(",".join(["200", "99.0", *dataclasses.astuple(partial), "c"]) + "\n")
    report = write_report([tmp_path], tmp_path / "out", reps=200)
    s, e = "tdmpc-sam rho=0.001 perturb=encoder+dynamics", "tdmpc-erm"
    assert report["methods"] == [e, s] and report["table"]["dmc/walker-walk"][s]["n"] == 4
    # IQM of 1 2 3 4 cuts one from each end: 2.5; of 2 3 4 5: 3.5.
    assert report["task_iqm"]["dmc/walker-walk"][e][0] == pytest.approx(2.5)
    assert report["task_iqm"]["dmc/walker-walk"][s][0] == pytest.approx(3.5)
    # SAM {2,3,4,5} against ERM {1,2,3,4}: 10 wins and 3 ties in 16 pairs.
    p, low, high = report["task_improvement"]["dmc/walker-walk"][f"P({s} > {e})"]
    assert p == pytest.approx(11.5 / 16) and low <= p <= high
    assert list(report["task_improvement"]["dmc/walker-walk"]) == [f"P({s} > {e})"]
    eig = report["measure_intervals"]["dmc/walker-walk"][s]["sharpness/top_eigenvalue"]
    assert eig[0] == pytest.approx(3.5)
    # SAM's eigenvalues over ERM's: (2+3+4+5) / (1+2+3+4).
    ratio = report["measure_ratios"]["dmc/walker-walk"][f"{s} / {e}"]["sharpness/top_eigenvalue"]
    assert ratio[0] == pytest.approx(14 / 10) and ratio[1] <= 1.4 <= ratio[2]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "IQM of the final return per task" in md
    # The summary: SAM's IQM, ERM's, P(> ERM) 11.5/16 = 0.72, the eigenvalue ratio 1.40.
    row = next(x for x in md.splitlines() if x.startswith(f"| dmc/walker-walk | {s} | "))
    assert row.split(" | ")[2].startswith("3.5 [") and row.split(" | ")[3].startswith("2.5 [")
    assert row.split(" | ")[4].startswith("0.72 [") and row.split(" | ")[5].startswith("1.40 [")
    assert f"| **over 1 task** (normalised score) | {s} | " in md
    assert (tmp_path / "out" / "study.png").stat().st_size > 1000


def test_an_unlearned_task_leaves_the_aggregates_and_agents_are_compared_apart(tmp_path):
    def run(task: str, method: str, seed: int, ret: float) -> Run:
        name = f"{task.replace('/', '_')}_{method}_{seed}"
        return Run(tmp_path / name, task, method, seed, [(0, 0.0), (100, ret)], [ret], {})

    runs = []
    for seed in range(3):
        runs += [run("dmc/walker-walk", "tdmpc-erm", seed, 300.0 + seed)]
        runs += [run("dmc/walker-walk", "tdmpc-sam rho=0.005", seed, 400.0 + seed)]
        runs += [run("dmc/cheetah-run", "tdmpc-erm", seed, 15.0 + seed)]  # IQM 16 < 2 x 9
        runs += [run("dmc/cheetah-run", "tdmpc-sam rho=0.005", seed, 100.0)]
        runs += [run("dmc/cartpole-swingup", "dreamer-erm", seed, 200.0 + seed)]
        runs += [run("dmc/cartpole-swingup", "dreamer-sam rho=0.05", seed, 100.0 + seed)]
    random = {"dmc/walker-walk": 40.0, "dmc/cheetah-run": 9.0}
    report = build_report(runs, reps=50, random=random)
    assert report["unlearned"] == ["dmc/cheetah-run"]
    assert report["aggregate_tasks"] == {
        "dreamer": ["dmc/cartpole-swingup"],
        "tdmpc": ["dmc/walker-walk"],
    }
    # Over walker-walk alone: SAM's 400-402 against ERM's 300-302 (scores / 1000).
    assert report["aggregates"]["tdmpc-sam rho=0.005"]["mean"][0] == pytest.approx(0.401)
    assert report["aggregates"]["dreamer-erm"]["mean"][0] == pytest.approx(0.201)
    assert sorted(report["improvement"]) == [
        "P(dreamer-sam rho=0.05 > dreamer-erm)",
        "P(tdmpc-sam rho=0.005 > tdmpc-erm)",
    ]
    assert report["improvement"]["P(tdmpc-sam rho=0.005 > tdmpc-erm)"][0] == 1.0
    assert report["caveats"] == [
        "ERM did not learn dmc/cheetah-run: its IQM final return stays under 2x that of "
        "uniform random actions (9.0); the task is left out of the aggregates.",
        "No random-action reference for dmc/cartpole-swingup: whether ERM learned there is "
        "not checked (report.py random_episodes=N measures one).",
    ]
    # A task's runs are still reported on their own.
    assert list(report["task_improvement"]["dmc/cheetah-run"]) == [
        "P(tdmpc-sam rho=0.005 > tdmpc-erm)"
    ]
    md = markdown(report, [])
    assert "Tasks, per agent: dreamer: dmc/cartpole-swingup; tdmpc: dmc/walker-walk." in md
    assert "| 9.0 |" in md  # cheetah-run's random reference in the IQM table


def test_report_py_measures_a_study_tasks_random_reference_once(tmp_path):
    from mbrl_sam.evaluation.study import StudyRun, random_references, record

    erm = StudyRun("dmc/cartpole-swingup", "tdmpc", "tiny", "erm", "", "", "200", "", "0")
    record(tmp_path, erm, [(0, 0.0), (200, 100.0)], {"sharpness/trace": 1.0}, "c")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "report.py"), str(tmp_path), f"out={out}", "reps=20"]
    first = subprocess.run(
        [*cmd, "random_episodes=1", "progress=false"], cwd=ROOT, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    reference = random_references(tmp_path)["dmc/cartpole-swingup"]
    assert 0.0 < reference < 200.0 and "uniform random actions return" in first.stdout
    again = subprocess.run([*cmd, "progress=false"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "uniform random" not in again.stdout
    assert random_references(tmp_path) == {"dmc/cartpole-swingup": reference}
    bad = subprocess.run([*cmd, "random_episodes=-1"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "random_episodes=<n>" in bad.stderr


def test_a_study_names_methods_without_the_settings_their_agent_shares(tmp_path):
    import dataclasses

    from mbrl_sam.evaluation.runs import study_runs
    from mbrl_sam.evaluation.study import StudyRun, record

    tdmpc = StudyRun(
        "dmc/cartpole-swingup", "tdmpc", "tiny", "erm", "", "", "200", "train_ratio=256.0", "0"
    )
    runs = [
        tdmpc,
        dataclasses.replace(tdmpc, objective="sam", rho="0.005", perturb="encoder+dynamics"),
        dataclasses.replace(tdmpc, objective="sam", rho="0.005", perturb="all", seed="1"),
        dataclasses.replace(tdmpc, agent="dreamer", settings="train_ratio=32.0"),
        dataclasses.replace(tdmpc, agent="dreamer", settings="train_ratio=32.0 seed_x=1"),
    ]
    for run in runs:
        record(tmp_path, run, [(0, 0.0), (200, 1.0)], {"sharpness/trace": 1.0}, "c")
    assert sorted({r.method for r in study_runs(tmp_path)}) == [
        "dreamer-erm",
        "dreamer-erm seed_x=1",
        "tdmpc-erm",
        "tdmpc-sam rho=0.005 perturb=all",
        "tdmpc-sam rho=0.005 perturb=encoder+dynamics",
    ]
