"""Cross-entropy method: the elites count equally; act with the fitted mean."""

from __future__ import annotations

import torch
from torch import Tensor

from mbrl_sam.planners.base import Planner


class CEM(Planner):
    """Refit mean and spread to the equally weighted elites."""

    def _elite_weights(self, values: Tensor) -> Tensor:
        """Uniform weights."""
        return torch.full_like(values, 1.0 / values.shape[0])

    def _choose(self, elites: Tensor, weights: Tensor, mean: Tensor) -> Tensor:
        """First action of the fitted mean sequence."""
        return mean[0]
