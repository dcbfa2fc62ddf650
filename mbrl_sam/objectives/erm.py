"""Empirical risk minimisation: the plain gradient of the loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from mbrl_sam.objectives.base import LossClosure, Objective, grad_norm, scalar, total


class ERM(Objective):
    """One forward and backward pass at the current weights."""

    name = "erm"

    def backward(
        self,
        closure: LossClosure,
        params: Sequence[nn.Parameter],
        perturbed: Sequence[nn.Parameter],
        step: int,
    ) -> tuple[Tensor, Any, dict[str, float]]:
        """Write dL/dw into `.grad` of `params`."""
        loss, aux = closure()
        total(loss).backward()
        norm = grad_norm([p.grad for p in params], self.per_seed)
        return loss.detach(), aux, {"grad_norm": scalar(norm)}
