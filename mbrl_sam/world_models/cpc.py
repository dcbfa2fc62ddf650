"""TWISTER's action-conditioned contrastive predictive coding (AC-CPC) loss.

From "Learning Transformer-based World Models with Contrastive Predictive Coding" (Burchi &
Timofte, ICLR 2025). For each step k = 1..K, the transformer output h_t and the actions taken
between t and t + k are mapped by a step-specific MLP to a query, the latent z_{t+k} by another
step-specific MLP to a key, and an InfoNCE loss asks each query to pick its own key out of the
keys of every other (batch, time) pair of the same step, scored by a plain dot product.

Time layout (storm.py's). Replay step t holds obs[t] and action[t], the action that LED INTO
step t. Token t is (z_t, action[t + 1]) and its output h_t = hidden[:, t] predicts z_{t+1}.
Step k predicts targets[:, t + k] from hidden[:, t] and action[t + 2 .. t + k] (the k - 1
actions taken at steps t + 1 .. t + k - 1), in time order. TWISTER counts steps from 0 at its
prior position: its step j at position i (feature at i predicts z_i, actions[i + 1 .. i + j],
target z_{i+j}) is our step k = j + 1 at t = i - 1, so the two agree pair for pair.

Deviation: TWISTER does not mask pairs across episode starts; here a pair (t, t + k) is dropped
(neither query nor key) when an episode starts at any step in (t, t + k].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def projection(in_dim: int, units: int, out_dim: int, layers: int) -> nn.Sequential:
    """TWISTER's contrastive MLP: `layers` Linear + ELU layers, ELU on the output too, no norm."""
    dims = [in_dim] + [units] * (layers - 1) + [out_dim]
    blocks: list[nn.Module] = []
    for i in range(layers):
        # PyTorch's default init and a bias on every layer, as TWISTER's MultiLayerPerceptron.
        blocks += [nn.Linear(dims[i], dims[i + 1]), nn.ELU()]
    return nn.Sequential(*blocks)


def info_nce(query: Tensor, key: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Mean InfoNCE loss and accuracy of queries (N, D) against keys (N, D): row i's positive is
    key i, its negatives every other valid key; `valid` (N,) bool drops rows and columns."""
    # float32 logits, as TWISTER computes this loss outside autocast.
    logits = query.float() @ key.float().T
    # A finite fill (not -inf) keeps an all-masked row's softmax, hence its gradient, finite.
    logits = logits.masked_fill(~valid[None, :], torch.finfo(logits.dtype).min)
    positive = logits.diagonal()
    per_row = torch.logsumexp(logits, -1) - positive
    weight = valid.float()
    count = weight.sum().clamp_min(1.0)
    loss = (per_row * weight).sum() / count
    index = torch.arange(len(valid), device=valid.device)
    correct = (logits.argmax(-1) == index).float()
    return loss, ((correct * weight).sum() / count).detach()


def pair_valid(is_first: Tensor, k: int) -> Tensor:
    """(B, T - k) bool: whether no episode starts in (t, t + k], so z_{t+k} follows from h_t."""
    segment = is_first.long().cumsum(1)  # episodes started up to and including each step
    return segment[:, k:] == segment[:, :-k]


class ActionConditionedCPC(nn.Module):
    """TWISTER's AC-CPC heads (one query and one key MLP per step) and its weighted loss."""

    def __init__(
        self,
        hidden_dim: int,
        target_dim: int,
        action_dim: int,
        steps: int = 10,
        units: int = 512,
        out_dim: int = 512,
        layers: int = 2,
        decay: float = 0.75,
    ) -> None:
        super().__init__()
        if steps < 1 or layers < 1:
            raise ValueError(f"steps ({steps}) and layers ({layers}) must be at least 1")
        if decay <= 0.0:
            raise ValueError(f"decay must be positive, got {decay}")
        self.steps, self.action_dim = steps, action_dim
        # Step k reads h_t and k - 1 actions, so each step has its own input width and MLPs.
        self.query_heads = nn.ModuleList(
            projection(hidden_dim + k * action_dim, units, out_dim, layers) for k in range(steps)
        )
        self.key_heads = nn.ModuleList(
            projection(target_dim, units, out_dim, layers) for _ in range(steps)
        )
        # Step k weighs decay^(k-1), normalised to sum to one over the K steps (TWISTER's).
        weights = torch.tensor([decay**k for k in range(steps)])
        self.register_buffer("weights", weights / weights.sum(), persistent=False)

    def query(self, k: int, hidden: Tensor, actions: Tensor) -> Tensor:
        """Step-k queries (B, T - k, out_dim) from hidden (B, T - 1, H) and actions (B, T, A)."""
        count = actions.shape[1] - k  # tokens t = 0..T-1-k have a step t + k in the batch
        # Action taken at step s is actions[:, s + 1]; step k needs s = t + 1 .. t + k - 1.
        cond = [actions[:, 2 + j : 2 + j + count] for j in range(k - 1)]
        return self.query_heads[k - 1](torch.cat([hidden[:, :count], *cond], -1))

    def key(self, k: int, targets: Tensor) -> Tensor:
        """Step-k keys (B, T - k, out_dim): the embedded latents z_{t+k} of targets (B, T, D)."""
        return self.key_heads[k - 1](targets[:, k:])

    def loss(
        self, hidden: Tensor, targets: Tensor, actions: Tensor, is_first: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted AC-CPC loss over steps 1..K and detached metrics.

        hidden (B, T - 1, hidden_dim): transformer outputs h_t (TWISTER's query also holds the
        prior sample for z_{t+1}: concatenate it here to match). targets (B, T, target_dim): the
        latents z_t, not detached in TWISTER. actions (B, T, action_dim): actions[:, t] led into
        step t. is_first (B, T) bool: episode starts, the replay batch's own field. Each step's
        loss is the mean over its valid pairs (0 if it has none), with negatives the keys of all
        valid pairs of that step across batch and time.
        """
        batch, length = targets.shape[:2]
        if hidden.shape[:2] != (batch, length - 1) or actions.shape[:2] != (batch, length):
            raise ValueError(
                f"want hidden (B, T-1, .), targets and actions (B, T, .); got {hidden.shape}, "
                f"{targets.shape}, {actions.shape}"
            )
        if self.steps > length - 1:
            raise ValueError(f"{self.steps} CPC steps need sequences of at least {self.steps + 1}")
        actions = actions.to(hidden.dtype)
        total = hidden.new_zeros((), dtype=torch.float32)
        metrics: dict[str, Tensor] = {}
        accuracies = []
        for k in range(1, self.steps + 1):
            valid = pair_valid(is_first, k).flatten()
            query = self.query(k, hidden, actions).flatten(0, 1)
            key = self.key(k, targets).flatten(0, 1)
            step_loss, accuracy = info_nce(query, key, valid)
            total = total + self.weights[k - 1] * step_loss
            metrics[f"cpc_loss_{k}"] = step_loss.detach()
            metrics[f"cpc_acc_{k}"] = accuracy
            accuracies.append(accuracy)
        metrics["cpc_loss"] = total.detach()
        metrics["cpc_acc"] = torch.stack(accuracies).mean()
        return total, metrics
