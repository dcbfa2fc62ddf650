"""Aggregate metrics (rliable's) against hand-computed cases and known sampling distributions."""

import numpy as np
import pytest
from scipy import stats

from mbrl_sam.evaluation.aggregate import (
    AGGREGATES,
    improvement_interval,
    interval,
    probability_of_improvement,
    ratio_interval,
)

iqm, mean = AGGREGATES["iqm"], AGGREGATES["mean"]
median, optimality_gap = AGGREGATES["median"], AGGREGATES["optimality_gap"]


def test_hand_computed_values():
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    assert iqm(scores) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    # 4 runs x 2 tasks: of 1 2 3 4 10 20 30 40, two cut from each end: (3 + 4 + 10 + 20) / 4.
    table = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    assert iqm(table) == pytest.approx(9.25)
    assert iqm(table[:, :1]) == pytest.approx(2.5) and iqm(table[:, 1:]) == pytest.approx(25.0)
    # Its interval: 2 runs of 1 task resampled are {0,0}, {0,4}, {4,4} with chance 1/4, 1/2,
    # 1/4; the IQM of two scores is their mean, so the 95% interval is [0, 4].
    point, low, high = interval(iqm, np.array([[0.0], [4.0]]), reps=400)
    assert (point, low, high) == (2.0, 0.0, 4.0)
    assert mean(scores) == pytest.approx(4.5)
    assert median(scores) == pytest.approx(4.5)  # task means 3, 4, 5, 6
    assert median(np.array([[0.0, 10.0, 1.0]])) == 1.0
    gap = optimality_gap(np.array([[0.5, 1.2], [0.8, 0.9]]))
    assert gap == pytest.approx((0.5 + 0.0 + 0.2 + 0.1) / 4)


@pytest.mark.parametrize("n_runs,n_tasks", [(5, 26), (3, 7), (10, 1)])
def test_iqm_matches_scipy_trimmed_mean(n_runs, n_tasks):
    scores = np.random.default_rng(n_runs).standard_normal((n_runs, n_tasks))
    assert iqm(scores) == pytest.approx(stats.trim_mean(scores, 0.25, axis=None))


def test_probability_of_improvement_counts_wins_and_half_ties_per_task():
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    y = np.array([[2.0, 5.0]])
    # Task 0: one of two runs beats 2 -> 0.5; task 1: all ties -> 0.5.
    assert probability_of_improvement(x, y) == pytest.approx(0.5)
    assert probability_of_improvement(x + 10, y) == 1.0
    assert probability_of_improvement(x - 10, y) == 0.0
    with pytest.raises(ValueError, match="tasks"):
        probability_of_improvement(x, np.ones((2, 3)))


def test_bootstrap_resamples_runs_within_each_task():
    # Task j's scores are 3i + j: a resample mixing tasks would leave its task's range.
    scores = np.arange(12.0).reshape(4, 3)
    seen: list[np.ndarray] = []
    interval(lambda s: seen.append(s.copy()) or 0.0, scores, reps=20)
    assert len(seen) >= 20
    for j in range(3):
        assert all(set(s[:, j]) <= set(scores[:, j]) for s in seen)


def test_interval_of_a_constant_is_that_constant():
    point, low, high = interval(iqm, np.full((5, 4), 0.7), reps=200)
    assert point == low == high == pytest.approx(0.7)


def test_mean_interval_has_the_normal_theory_width():
    rng = np.random.default_rng(1)
    scores = rng.normal(2.0, 1.0, size=(400, 1))
    point, low, high = interval(mean, scores, reps=2000, seed=3)
    half = 1.96 * scores.std() / np.sqrt(400)
    assert low < point < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.15)


def test_improvement_interval_brackets_the_point_estimate():
    rng = np.random.default_rng(2)
    x, y = rng.normal(1.0, 1.0, (10, 5)), rng.normal(0.0, 1.0, (10, 5))
    point, low, high = improvement_interval(x, y, reps=500)
    assert low <= point <= high and point > 0.6


def test_ratio_interval_of_means():
    assert ratio_interval(np.full(4, 3.0), np.full(5, 2.0), reps=100) == (1.5, 1.5, 1.5)
    # x resampled from {1, 3} has means 1, 2 or 3 (chance 1/4, 1/2, 1/4) over a y of 2.
    point, low, high = ratio_interval(np.array([1.0, 3.0]), np.full(3, 2.0), reps=400)
    assert (point, low, high) == (1.0, 0.5, 1.5)


def test_intervals_depend_on_their_seed_alone_and_leave_numpys_global_generator_be():
    # rliable resamples from numpy's global generator: draws made before must not matter.
    x = np.array([714.7, 758.7, 833.8, 765.3, 926.2])[:, None]
    y = np.array([917.7, 880.3, 902.8, 890.3, 930.0])[:, None]
    calls = [
        lambda: improvement_interval(x, y, reps=500),
        lambda: interval(AGGREGATES["iqm"], x, reps=500),
        lambda: ratio_interval(x[:, 0], y[:, 0], reps=500),
    ]
    for call in calls:
        first = call()
        np.random.rand(7)  # some other use of the global generator in between
        state = np.random.get_state()
        assert call() == first
        after = np.random.get_state()
        assert after[1].tolist() == state[1].tolist() and after[2] == state[2]
