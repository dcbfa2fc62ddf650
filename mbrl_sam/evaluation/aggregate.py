"""Aggregate scores over runs and tasks as the field reports them, by rliable (Agarwal et al.
2021): mean, median, interquartile mean, optimality gap and probability of improvement, each
with a stratified-bootstrap confidence interval. Scores are arrays shaped (runs, tasks)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from rliable import library, metrics

Aggregate = Callable[[np.ndarray], float]

AGGREGATES: dict[str, Aggregate] = {
    "mean": metrics.aggregate_mean,  # the mean of the per-task means
    "median": metrics.aggregate_median,  # the median over tasks of the per-task means
    "iqm": metrics.aggregate_iqm,  # the mean with a quarter of all run-task scores cut each end
    "optimality_gap": metrics.aggregate_optimality_gap,  # mean shortfall below 1
}


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): per task, the chance a run of x beats a run of y (ties count half), averaged
    over tasks. x is (runs_x, tasks), y is (runs_y, tasks)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks and y has {y.shape[1]}")
    return float(metrics.probability_of_improvement(x, y))


def _estimates(data: dict, fn: Callable[..., np.ndarray], reps: int, confidence: float, seed: int):
    """rliable's point estimates and percentile intervals, reproducible from `seed`."""
    # rliable 1.2 draws its resamples from numpy's global generator (StratifiedBootstrap's
    # update_indices), whatever random_state it is given: without seeding that one, an
    # interval depends on every draw made before it. It is seeded here and put back after.
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            # arch (under rliable) warns that RandomState is deprecated; it is what rliable takes.
            warnings.simplefilter("ignore", FutureWarning)
            return library.get_interval_estimates(
                data,
                fn,
                reps=reps,
                confidence_interval_size=confidence,
                random_state=np.random.RandomState(seed),
            )
    finally:
        np.random.set_state(saved)


def interval(
    fn: Aggregate,
    scores: np.ndarray,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The aggregate and its percentile stratified-bootstrap interval: (point, low, high)."""
    scores = np.asarray(scores, dtype=np.float64)
    points, intervals = _estimates(
        {"x": scores}, lambda s: np.array([fn(s)]), reps, confidence, seed
    )
    return float(points["x"][0]), float(intervals["x"][0, 0]), float(intervals["x"][1, 0])


def improvement_interval(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """P(X > Y) with a stratified-bootstrap interval (x and y resampled independently)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    probability_of_improvement(x, y)  # the shape check, before rliable's own errors
    improvement = lambda a, b: np.array([metrics.probability_of_improvement(a, b)])  # noqa: E731
    points, intervals = _estimates({"x,y": (x, y)}, improvement, reps, confidence, seed)
    return float(points["x,y"][0]), float(intervals["x,y"][0, 0]), float(intervals["x,y"][1, 0])


def ratio_interval(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """mean(x) / mean(y) of two samples of one quantity (e.g. SAM's and ERM's top eigenvalue
    over seeds), with a bootstrap interval (x and y resampled independently)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    ratio = lambda a, b: np.array([np.mean(a) / np.mean(b)])  # noqa: E731
    points, intervals = _estimates({"x/y": (x, y)}, ratio, reps, confidence, seed)
    return float(points["x/y"][0]), float(intervals["x/y"][0, 0]), float(intervals["x/y"][1, 0])
