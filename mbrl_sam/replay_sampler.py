"""Which windows of the replay a training batch holds: a swappable sampler.

A sampler picks where the B windows of T steps start, counted from the oldest stored step, and
reads them with `buffer.windows`. Uniform windows are what every agent here uses; a prioritised
or recent-biased sampler is another class with the same `sample`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

if TYPE_CHECKING:
    from mbrl_sam.replay import SequenceReplay


class Sampler(Protocol):
    """Chooses the windows of a batch."""

    def sample(
        self, buffer: SequenceReplay, batch_size: int, length: int, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """`batch_size` windows of `length` steps (the buffer holds at least `length`), drawn
        with `rng` only, as tensors shaped (B, T, ...)."""
        ...


class UniformWindows:
    """Every window that fits in the buffer equally likely, drawn with replacement."""

    def sample(
        self, buffer: SequenceReplay, batch_size: int, length: int, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """`batch_size` uniformly random windows of `length` steps."""
        starts = rng.integers(0, len(buffer) - length + 1, size=batch_size)
        return buffer.windows(starts, length)
