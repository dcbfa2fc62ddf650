"""benchmarks/learning_runs.py: the status line of a run in progress."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from learning_runs import status  # noqa: E402


def test_learning_run_status_reads_progress_evaluation_and_rate(tmp_path: Path) -> None:
    run = tmp_path / "dmc_walker-walk_erm_0"
    assert status(run) == "dmc_walker-walk_erm_0: not started"
    run.mkdir()
    (run / "config.yaml").write_text("steps: 10000\n")
    (run / "metrics.jsonl").write_text(
        '{"step": 3000, "train/hours": 1.5}\n{"step": 4000, "train/hours": 2.0}\n{"step": 45'
    )  # the last line is still being written
    (run / "evals.jsonl").write_text('{"step": 0, "returns": [30, 40], "hours": 0.1}\n')
    assert status(run) == (
        "dmc_walker-walk_erm_0: 4000 of 10000 env steps, eval at 0: 35.0, 2.00 h of training, "
        "2.0k env steps/h, ~3.0 h to go"
    )
