"""Aggregate metrics against hand-computed cases and known sampling distributions."""

import numpy as np
import pytest
from scipy import stats

from mbrl_sam.evaluation.aggregate import (
    improvement_interval,
    interval,
    iqm,
    mean,
    median,
    optimality_gap,
    probability_of_improvement,
    stratified_bootstrap,
)


def test_hand_computed_values():
    scores = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    assert iqm(scores) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
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
    scores = np.arange(12.0).reshape(4, 3)  # column j holds 3i + j
    for sample in stratified_bootstrap(scores, 20, np.random.default_rng(0)):
        assert sample.shape == (4, 3)
        for j in range(3):
            assert set(sample[:, j]) <= set(scores[:, j])


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
