"""sweep.py end to end: a sweep stopped by SIGTERM and rerun finishes without redoing runs."""

import csv
import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRID = ["task=gym/Pendulum-v1", "agent=tdmpc", "size=tiny", "objective=erm,sam", "planner=none"]
GRID += ["steps=400", "prefill=100", "eval_every=200", "eval_episodes=1", "max_parallel=1"]
GRID += ["agent.batch_size=32", "train_ratio=256"]  # a quarter of the default run's updates


def _progress(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "progress.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_a_stopped_sweep_reruns_to_the_end_without_repeating_finished_runs(tmp_path):
    cmd = [sys.executable, str(ROOT / "sweep.py"), *GRID, f"root={tmp_path}"]
    first, second = (tmp_path / f"gym_Pendulum-v1.objective-{o}.seed-0" for o in ("erm", "sam"))
    proc = subprocess.Popen([*cmd, "report=false"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    # Stop once the first run is done and the second has trained a little.
    while time.monotonic() < deadline and proc.poll() is None:
        if _progress(first).get("finished") and "env steps" in _read(second / "train.log"):
            break
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "stopped gym_Pendulum-v1.objective-sam.seed-0" in out
    done = _progress(first)
    evals_before = (first / "evals.jsonl").read_text()
    assert done["finished"] and not _progress(second).get("finished")

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "start gym_Pendulum-v1.objective-erm" not in rerun.stdout  # finished: skipped
    assert "Resuming" in _read(second / "train.log")
    assert _progress(second)["finished"] and _progress(first) == done
    assert (first / "evals.jsonl").read_text() == evals_before
    assert "2 runs: 2 finished" in rerun.stdout and (tmp_path / "report" / "report.md").exists()


def test_an_unknown_suite_or_launcher_is_one_line_at_start_up(tmp_path):
    for args, word in ((["suite=nosuch"], "dmc_easy"), (["suite=dmc_easy", "launcher=x"], "local")):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "sweep.py"), *args, f"root={tmp_path}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 2 and word in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_every_named_experiment_plans_a_valid_grid(tmp_path):
    sys.path.insert(0, str(ROOT))
    import sweep

    names = sweep.experiments()
    assert "tdmpc_walker100k" in names and "dmc_easy_cut" in names
    from mbrl_sam.errors import ConfigError

    hb_missing = importlib.util.find_spec("humanoid_bench") is None
    for name in names:
        try:
            options, runs = sweep.plan([f"experiment={name}", f"root={tmp_path / name}"])
        except ConfigError as err:  # HumanoidBench is not on PyPI: a machine may lack it
            assert hb_missing and "needs HumanoidBench" in str(err), (name, err)
            continue
        assert runs and all(r.run_dir.parent == tmp_path / name for r in runs)
    # The command line overrides an experiment's setting key by key.
    _, runs = sweep.plan(["experiment=tdmpc_walker100k", "objective=sam", "steps=5000"])
    assert [r.name for r in runs] == ["dmc_walker-walk.objective-sam.seed-0"]
    assert "steps=5000" in runs[0].overrides and "steps=100000" not in runs[0].overrides


def test_a_studys_finished_runs_are_recorded_and_skipped_by_a_rerun_anywhere(tmp_path):
    from mbrl_sam.evaluation.study import read_rows, recorded_runs

    results = tmp_path / "results"
    grid = ["task=gym/Pendulum-v1", "objective=erm", "planner=none", "prefill=100"]
    grid += ["eval_every=100", "eval_episodes=1", "agent.batch_size=32", "train_ratio=256"]
    grid += ["measure.lanczos_steps=2", "measure.trace_samples=2", "measure.max_episode_steps=40"]
    grid += ["seed=0,1", "seeds_per_process=2", "study=t", f"results_dir={results}"]

    def sweep(*args: str, steps: int = 200) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(ROOT / "sweep.py"), *grid, f"steps={steps}", *args]
        cmd.append("report=false")
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)

    first = sweep(f"root={tmp_path / 'here'}")
    assert first.returncode == 0, first.stdout + first.stderr
    held = recorded_runs(results / "t", "gym/Pendulum-v1")
    assert sorted(r.seed for r in held) == ["0", "1"]
    curve = read_rows(results / "t" / "gym_Pendulum-v1.csv")
    assert sorted((r["seed"], int(r["step"])) for r in curve) == [
        (s, n) for s in ("0", "1") for n in (0, 100, 200)
    ]
    # Another machine (another root) with the same study: nothing left to run.
    again = sweep(f"root={tmp_path / 'elsewhere'}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 of them are recorded" in again.stdout and "start " not in again.stdout
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())
    # Other settings are other runs; so is a group one of whose seeds is not held in full.
    other = sweep(f"root={tmp_path / 'other'}", "status=true", steps=300)
    assert "pending" in other.stdout and "recorded" not in other.stdout
    measure_csv = results / "t" / "gym_Pendulum-v1.measure.csv"
    rows = read_rows(measure_csv)
    with open(measure_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["seed"] != "1")
    partial = sweep(f"root={tmp_path / 'elsewhere'}", "status=true")
    assert "pending" in partial.stdout and "recorded" not in partial.stdout
