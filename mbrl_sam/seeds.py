"""Every episode seed a run derives from its config seed, in one place.

Each stream of episodes starts at its own offset, so training, evaluation and measurement never
replay the same initial states: for config seeds 0-9, up to 5,000 training episodes and fewer than
1,000 episodes per evaluation (tests/test_seeds.py). From config seed 10 on, training episodes
reach the evaluation range; the offsets are kept as they are so existing runs resume unchanged.
"""

from __future__ import annotations

TRAINING_STRIDE = 100_003  # a prime: the training episodes of two config seeds never meet
MEASURE_IN_TRAINING = 3 * 10**6  # the trainer's flatness measurements (value gap, model error)
MEASURE_SCRIPT = 4 * 10**6  # measure.py's


def training_episode(seed: int, episode: int) -> int:
    """The reset seed of training episode `episode` (counted from 0 over the whole run)."""
    return seed * TRAINING_STRIDE + episode


def eval_env(seed: int) -> int:
    """The seed the trainer's evaluation env is built with."""
    return seed + 10_000


def training_evaluation(seed: int) -> int:
    """The reset seed of the first episode of each evaluation during training (i-th: + i)."""
    return 10**6 + seed * 1000


def evaluate_script(seed: int) -> int:
    """The reset seed of evaluate.py's first episode for its `seed` option (i-th: + i)."""
    return 2 * 10**6 + seed * 1000


def random_reference(seed: int) -> int:
    """The reset seed of the first episode of a task's random-action reference (i-th: + i)."""
    return 5 * 10**6 + seed * 1000
