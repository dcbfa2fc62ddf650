"""Aggregate scores over runs and tasks the way the literature reports them (rliable's metrics):
mean, median, interquartile mean, optimality gap, probability of improvement, and stratified
bootstrap confidence intervals. Scores are arrays shaped (runs, tasks)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Aggregate = Callable[[np.ndarray], float]


def mean(scores: np.ndarray) -> float:
    """Mean over all runs and tasks (the mean of per-task means when runs are balanced)."""
    return float(np.mean(scores))


def median(scores: np.ndarray) -> float:
    """Median over tasks of the per-task mean score."""
    return float(np.median(np.mean(scores, axis=0)))


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of all run-task scores with a quarter cut from each end.

    As rliable (scipy's trim_mean): int(n / 4) whole scores are cut from each end.
    """
    flat = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    cut = int(0.25 * flat.size)
    return float(np.mean(flat[cut : flat.size - cut]))


def optimality_gap(scores: np.ndarray, threshold: float = 1.0) -> float:
    """Mean shortfall below `threshold` (scores above it count as reaching it)."""
    return float(np.mean(np.maximum(threshold - np.asarray(scores, dtype=np.float64), 0.0)))


AGGREGATES: dict[str, Aggregate] = {
    "mean": mean,
    "median": median,
    "iqm": iqm,
    "optimality_gap": optimality_gap,
}


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): per task, the chance a run of x beats a run of y (ties count half), averaged
    over tasks. x is (runs_x, tasks), y is (runs_y, tasks)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks and y has {y.shape[1]}")
    wins = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(wins + 0.5 * ties))


def stratified_bootstrap(
    scores: np.ndarray, reps: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """`reps` resamples of the runs, drawn with replacement within each task separately."""
    runs, tasks = scores.shape
    out = []
    for _ in range(reps):
        idx = rng.integers(0, runs, size=(runs, tasks))
        out.append(np.take_along_axis(scores, idx, axis=0))
    return out


def interval(
    fn: Aggregate,
    scores: np.ndarray,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The aggregate and its percentile stratified-bootstrap interval: (point, low, high)."""
    scores = np.asarray(scores, dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = np.array([fn(s) for s in stratified_bootstrap(scores, reps, rng)])
    alpha = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [alpha, 100 - alpha])
    return fn(scores), float(low), float(high)


def improvement_interval(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """P(X > Y) with a stratified-bootstrap interval (x and y resampled independently)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = [
        probability_of_improvement(xs, ys)
        for xs, ys in zip(stratified_bootstrap(x, reps, rng), stratified_bootstrap(y, reps, rng))
    ]
    alpha = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [alpha, 100 - alpha])
    return probability_of_improvement(x, y), float(low), float(high)
