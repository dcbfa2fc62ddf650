"""MPPI: elites weighted by exp(temperature * value); one elite sequence chosen by weight."""

from __future__ import annotations

import torch
from torch import Tensor

from mbrl_sam.planners.base import Planner


class MPPI(Planner):
    """Model-predictive path integral control, as TD-MPC2 plans."""

    def _elite_weights(self, values: Tensor) -> Tensor:
        """Softmax of temperature-scaled values (shifted by the max for stability)."""
        return torch.softmax(self.cfg.temperature * (values - values.max()), 0)

    def _choose(self, elites: Tensor, weights: Tensor, mean: Tensor) -> Tensor:
        """First action of one elite sequence drawn with probability equal to its weight."""
        pick = torch.multinomial(weights, 1)[0]
        return elites[pick, 0]
