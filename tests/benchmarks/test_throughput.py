"""benchmarks/throughput.py: the window is read from a real run's train records."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import Case, run_ours, train_record_times  # noqa: E402


def test_train_record_times_keeps_train_records_and_skips_a_line_being_written(tmp_path: Path):
    lines = [
        {"step": 0, "time": 1.0, "eval/return": -5.0},
        {"step": 100, "time": 2.0, "train/fps": 10.0},
        {"step": 100, "time": 2.5, "episode/return": -3.0},
        {"step": 200, "time": 4.0, "train/fps": 50.0},
    ]
    text = "\n".join(json.dumps(r) for r in lines) + '\n{"step": 300, "ti'
    (tmp_path / "metrics.jsonl").write_text(text)
    assert train_record_times(tmp_path / "metrics.jsonl") == {100: 2.0, 200: 4.0}
    assert train_record_times(tmp_path / "missing.jsonl") == {}


def test_a_real_train_py_run_is_timed_over_its_window():
    case = Case(("agent.batch_size=16",), prefill=20, warm=10, window=40, log_every=10)
    rate = run_ours(ROOT, case, "erm", ["planner.iterations=1", "planner.samples=16"])
    assert 0 < rate < 10_000  # env steps per second of a real loop on Pendulum


def test_help_describes_the_cases():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "default" in out.stdout and "tdmpc_1M" in out.stdout
