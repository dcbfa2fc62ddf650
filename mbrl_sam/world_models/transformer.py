"""A causal transformer over (latent, action) tokens with a KV cache (STORM's layout).

Post-norm layers as in STORM (and "Attention Is All You Need"): self-attention, then a ReLU
feed-forward, each added to its input and layer-normalised, dropout on the attention weights and
on both branches. Attention is written out (matmul, softmax) rather than through
`scaled_dot_product_attention`, so that it has second derivatives everywhere: the sharpness
tools take Hessian-vector products through it.

Two ways to run it:
- `forward(x, mask)`: a whole (N, T) sequence of token embeddings at once (training), returning
  every layer's keys and values for later steps to attend to.
- `step(x, cache)`: one new token per sequence, attending to a cache. The cache holds keys and
  values in two parts: a context shared by several rollouts (the keys of a real replayed
  sequence, each rollout seeing the part its `context_mask` allows: many imagination starts
  share one sequence's keys without copying them) and the rollout's own tokens so far.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# What `step` reads and returns: context_k/context_v (L, B, h, Tc, d), context_mask (N, Tc),
# own_k<l>/own_v<l> (N, h, t, d) for each layer l (apart, so that a step copies only the layer
# it appends to), pos (N,).
Cache = dict[str, Tensor]


class AttentionBlock(nn.Module):
    """One post-norm transformer layer."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must divide by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.attn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ff_in = nn.Linear(dim, ffn)
        self.ff_out = nn.Linear(ffn, dim)
        self.ff_norm = nn.LayerNorm(dim, eps=1e-6)

    def _heads(self, x: Tensor) -> Tensor:
        """(N, T, dim) -> (N, heads, T, dim / heads)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries (pre-scaled by 1 / sqrt(d)), keys and values, split into heads."""
        q = self._heads(self.query(x))
        return q / math.sqrt(q.shape[-1]), self._heads(self.key(x)), self._heads(self.value(x))

    def _weights(self, scores: Tensor) -> Tensor:
        return F.dropout(scores.softmax(-1), self.dropout, self.training)

    def finish(self, x: Tensor, attended: Tensor) -> Tensor:
        """The residual branches after attention: output projection, then feed-forward."""
        y = self.out(attended.transpose(1, 2).flatten(-2))
        x = self.attn_norm(x + F.dropout(y, self.dropout, self.training))
        y = self.ff_out(F.relu(self.ff_in(x)))
        return self.ff_norm(x + F.dropout(y, self.dropout, self.training))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (N, T, dim); mask (N or 1, T, T), True where query t may attend to key s.
        Returns the output and this layer's keys and values (N, heads, T, d)."""
        q, k, v = self.project(x)
        scores = (q @ k.transpose(-1, -2)).masked_fill(~mask[:, None], float("-inf"))
        return self.finish(x, self._weights(scores) @ v), k, v

    def step(
        self, x: Tensor, context: tuple[Tensor, Tensor, Tensor], own: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One token per rollout: x (N, 1, dim). context: keys and values (B, heads, Tc, d) shared
        by N = B x S rollouts (S consecutive rollouts per context sequence) and the mask (N, Tc)
        of the keys each may see; own: the rollouts' earlier keys and values (N, heads, t, d).
        Returns the output and own keys and values with this token's appended."""
        q, k, v = self.project(x)
        own_k, own_v = torch.cat([own[0], k], 2), torch.cat([own[1], v], 2)
        context_k, context_v, context_mask = context
        batch, heads, length = context_k.shape[:3]
        grouped = q.reshape(batch, -1, heads, q.shape[-1])  # (B, S, heads, d)
        shared = torch.einsum("bshd,bhtd->bsht", grouped, context_k).reshape(-1, heads, 1, length)
        shared = shared.masked_fill(~context_mask[:, None, None], float("-inf"))
        scores = torch.cat([shared, q @ own_k.transpose(-1, -2)], -1)
        weights = self._weights(scores)
        shared_w = weights[..., :length].reshape(batch, -1, heads, length)
        attended = torch.einsum("bsht,bhtd->bshd", shared_w, context_v).reshape(q.shape)
        attended = attended + weights[..., length:] @ own_v
        return self.finish(x, attended), own_k, own_v


class CausalTransformer(nn.Module):
    """Learned absolute positions (up to `max_len`), a layer norm, then `layers` blocks."""

    def __init__(
        self, dim: int, layers: int, heads: int, ffn: int, dropout: float, max_len: int
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.positions = nn.Embedding(max_len, dim)
        self.in_norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(AttentionBlock(dim, heads, ffn, dropout) for _ in range(layers))

    def _embed(self, x: Tensor, pos: Tensor) -> Tensor:
        return self.in_norm(x + self.positions(pos))

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Tokens x (N, T, dim) at positions 0..T-1; mask (N or 1, T, T). Returns the outputs
        (N, T, dim) and every layer's keys and values, stacked (L, N, heads, T, d)."""
        if x.shape[1] > self.max_len:
            raise ValueError(f"{x.shape[1]} tokens are more than max_len={self.max_len}")
        x = self._embed(x, torch.arange(x.shape[1], device=x.device))
        keys, values = [], []
        for block in self.blocks:
            x, k, v = block(x, mask)
            keys.append(k)
            values.append(v)
        return x, torch.stack(keys), torch.stack(values)

    def step(self, x: Tensor, cache: Cache) -> tuple[Tensor, Cache]:
        """One token per rollout, x (N, dim) at position cache["pos"] (the caller keeps it below
        max_len); the output (N, dim) and the cache with the token's keys and values appended."""
        h = self._embed(x[:, None], cache["pos"][:, None])
        new = dict(cache, pos=cache["pos"] + 1)
        for i, block in enumerate(self.blocks):
            context = (cache["context_k"][i], cache["context_v"][i], cache["context_mask"])
            own = (cache[f"own_k{i}"], cache[f"own_v{i}"])
            h, new[f"own_k{i}"], new[f"own_v{i}"] = block.step(h, context, own)
        return h[:, 0], new


def segment_mask(is_first: Tensor) -> Tensor:
    """Causal attention within episodes: (B, T, T), True where step t may attend to step s, i.e.
    s <= t and no episode starts in (s, t]."""
    segment = is_first.long().cumsum(1)
    length = is_first.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=is_first.device).tril()
    return causal & (segment[:, :, None] == segment[:, None, :])


def empty_cache(context_k: Tensor, context_v: Tensor, context_mask: Tensor, pos: Tensor) -> Cache:
    """A cache of rollouts that have no tokens of their own yet."""
    layers, _, heads, _, d = context_k.shape
    own = context_k.new_zeros(context_mask.shape[0], heads, 0, d)
    cache = {"context_k": context_k, "context_v": context_v, "context_mask": context_mask}
    for i in range(layers):
        cache[f"own_k{i}"], cache[f"own_v{i}"] = own, own
    return {**cache, "pos": pos}
