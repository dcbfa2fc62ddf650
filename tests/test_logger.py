"""Tests for the logger: JSON lines, TensorBoard scalars, non-finite values and resume."""

import json
import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mbrl_sam.logger import Logger


def _lines(run_dir) -> list[dict]:
    text = (run_dir / "metrics.jsonl").read_text()
    # Strict parsing: NaN or Infinity tokens would make json.loads fail here.
    return [json.loads(line, parse_constant=pytest.fail) for line in text.splitlines()]


def test_jsonl_lines_and_keys(tmp_path):
    logger = Logger(tmp_path, use_tensorboard=False)
    logger.log(10, {"loss": torch.tensor(0.5), "lr": np.float32(1e-3), "n": 4}, prefix="train")
    logger.log(20, {"return": np.array(12.0)}, prefix="eval")
    # Visible on disk before close, so a crash loses nothing already logged.
    rows = _lines(tmp_path)
    assert len(rows) == 2
    assert set(rows[0]) == {"step", "time", "train/loss", "train/lr", "train/n"}
    assert rows[0]["step"] == 10 and rows[0]["train/loss"] == 0.5 and rows[0]["train/n"] == 4
    assert rows[0]["train/lr"] == pytest.approx(1e-3)
    assert rows[1] == {"step": 20, "time": rows[1]["time"], "eval/return": 12.0}
    assert rows[0]["time"] <= rows[1]["time"]
    logger.close()
    assert not (tmp_path / "tb").exists()


def test_tensorboard_scalars_read_back(tmp_path):
    with Logger(tmp_path) as logger:
        for step in range(5):
            logger.log(step, {"loss": torch.tensor(1.0 / (step + 1))}, prefix="train")
        logger.log(5, {"loss": float("nan")}, prefix="train")
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    scalars = acc.Scalars("train/loss")
    # The NaN at step 5 is skipped in TensorBoard.
    assert [s.step for s in scalars] == [0, 1, 2, 3, 4]
    for s in scalars:
        assert s.value == pytest.approx(1.0 / (s.step + 1))


def test_non_finite_becomes_null(tmp_path):
    with Logger(tmp_path) as logger:
        logger.log(1, {"a": float("nan"), "b": torch.tensor(math.inf), "c": 2.0})
    (row,) = _lines(tmp_path)
    assert row["a"] is None and row["b"] is None and row["c"] == 2.0


def test_resume_appends(tmp_path):
    with Logger(tmp_path, use_tensorboard=False) as logger:
        logger.log(1, {"x": 1.0})
    with Logger(tmp_path, use_tensorboard=False) as logger:
        logger.log(2, {"x": 2.0})
    assert [r["step"] for r in _lines(tmp_path)] == [1, 2]


def test_rejects_non_scalar_and_reserved_names(tmp_path):
    with Logger(tmp_path, use_tensorboard=False) as logger:
        with pytest.raises(ValueError, match="not a scalar"):
            logger.log(0, {"v": torch.zeros(3)})
        with pytest.raises(ValueError, match="reserved"):
            logger.log(0, {"step": 1.0})
        with pytest.raises(TypeError, match="expected a number"):
            logger.log(0, {"s": "text"})


def test_rewind_forgets_what_was_logged_after_the_checkpoint(tmp_path):
    logger = Logger(tmp_path)
    for step in range(10):
        logger.log(step, {"loss": float(step)}, prefix="train")
    logger.record("evals.jsonl", {"step": 3, "returns": [1.0]})
    logger.record("evals.jsonl", {"step": 8, "returns": [2.0]})
    logger.close()
    with open(tmp_path / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 10, "train/lo')  # torn by a crash mid-write

    # A run resumed from a checkpoint at step 5 redoes steps 6 and 7 with new values.
    logger = Logger(tmp_path)
    logger.rewind(5)
    for step in (6, 7):
        logger.log(step, {"loss": 100.0 + step}, prefix="train")
    logger.close()
    rows = _lines(tmp_path)
    assert [r["step"] for r in rows] == list(range(8))
    assert [r["train/loss"] for r in rows] == [0, 1, 2, 3, 4, 5, 106, 107]
    evals = (tmp_path / "evals.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in evals] == [3]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [s.step for s in scalars] == list(range(8))
    assert [s.value for s in scalars] == [0, 1, 2, 3, 4, 5, 106, 107]


def test_a_start_that_logs_nothing_leaves_no_files(tmp_path):
    # A resume that stops before its first record used to add an empty TensorBoard event file.
    for _ in range(3):
        logger = Logger(tmp_path)
        logger.rewind(0)
        logger.close()
    assert list(tmp_path.iterdir()) == []
    with Logger(tmp_path) as logger:
        logger.log(5, {"x": 1.0})
    assert len(list((tmp_path / "tb").iterdir())) == 1
