"""The trainer's own hooks: train metrics logged per window, the divergence watch, the bar."""

import json

import pytest

from mbrl_sam.errors import RunError
from mbrl_sam.hooks import DivergenceWatch, MetricsWindow, ProgressBar
from tests.test_trainer import trainer

PENDULUM = ["task=gym/Pendulum-v1", "planner=none"]  # action repeat 1


def logged(t) -> list[dict]:
    t.logger.close()
    return [
        json.loads(x) for x in (t.checkpoint.run_dir / "metrics.jsonl").read_text().split("\n")[:-1]
    ]


def test_metrics_are_logged_as_window_means_each_time_log_every_is_crossed(tmp_path):
    t = trainer(tmp_path, *PENDULUM)
    window = MetricsWindow(log_every=4)
    window.start(t)
    window.after_update(t, {"model/loss": 1.0})
    window.after_update(t, {"model/loss": 3.0})
    t.counters.updates = 2
    for steps in (1, 2, 3, 4, 5, 8):
        t.collector.agent_steps = steps
        window.after_step(t)
    first, second = logged(t)
    assert first["step"] == 4 and first["train/model/loss"] == 2.0
    assert first["train/updates"] == 2 and first["train/replay_size"] == 0
    assert second["step"] == 8 and "train/model/loss" not in second  # the window was emptied


def test_divergence_stops_the_run_after_a_streak_of_skipped_steps(tmp_path):
    t = trainer(tmp_path, *PENDULUM)
    watch = DivergenceWatch(max_skipped=3)
    skipped, fine = {"model/skipped_step": 1.0}, {"model/skipped_step": 0.0, "model/loss": 1.0}
    for metrics in (skipped, skipped, fine, skipped, skipped):
        watch.after_update(t, metrics)
    assert t.counters.skipped_in_a_row == 2 and watch.skipped_total == 4
    with pytest.raises(RunError, match="3 world-model steps in a row .* was never written"):
        watch.after_update(t, {"model/skipped_step": 1.0, "model/loss": float("nan")})


def test_the_bar_follows_the_env_steps_even_from_a_resumed_pending_step(tmp_path):
    t = trainer(tmp_path, *PENDULUM, "steps=100")
    bar = ProgressBar(enabled=True)
    t.collector.agent_steps = 5
    bar.start(t)
    bar.after_step(t)  # the pending step of a resume, already counted
    assert bar._bar.n == 5
    t.collector.agent_steps = 6
    bar.after_step(t)
    assert bar._bar.n == 6
    bar.close()
    assert bar._bar is None
    off = ProgressBar(enabled=False)
    off.start(t)
    off.after_step(t)
    assert off._bar is None
