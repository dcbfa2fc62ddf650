"""Recurrent state-space model with discrete latents (DreamerV3-style), the whole RSSM here."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mbrl_sam.distributions import (
    categorical_entropy,
    categorical_kl,
    sample_one_hot,
    straight_through,
    unimix_probs,
)
from mbrl_sam.nets import MLP, BlockLinear, DenseBlock, init_linear, make_norm

State = dict[str, Tensor]  # {"deter": (..., D), "stoch": (..., S, K)}


class RSSM(nn.Module):
    """Block-GRU deterministic path, categorical stochastic latents, prior and posterior."""

    def __init__(
        self,
        embed_dim: int,
        action_dim: int,
        deter: int = 512,
        hidden: int = 64,
        stoch: int = 32,
        classes: int = 4,
        blocks: int = 8,
        dynlayers: int = 1,
        imglayers: int = 2,
        obslayers: int = 1,
        unimix: float = 0.01,
        norm: str = "layer",
    ) -> None:
        super().__init__()
        self.deter, self.stoch, self.classes, self.blocks = deter, stoch, classes, blocks
        self.unimix = unimix
        self.in_deter = DenseBlock(deter, hidden, norm)
        self.in_stoch = DenseBlock(stoch * classes, hidden, norm)
        self.in_action = DenseBlock(action_dim, hidden, norm)
        # Each block sees its own slice of the state plus all three projected inputs. The
        # shared inputs go through one dense map instead of being copied to every block.
        if dynlayers < 1:
            raise ValueError("dynlayers must be >= 1")
        self.dyn_state = BlockLinear(deter, deter, blocks)
        self.dyn_inputs = nn.Linear(3 * hidden, deter, bias=False)
        init_linear(self.dyn_inputs)
        hid: list[nn.Module] = [make_norm(deter, norm), nn.SiLU()]
        for _ in range(dynlayers - 1):
            hid += [BlockLinear(deter, deter, blocks), make_norm(deter, norm), nn.SiLU()]
        self.dyn_hidden = nn.Sequential(*hid)
        self.gru = BlockLinear(deter, 3 * deter, blocks)
        offset = torch.zeros(blocks, 3, deter // blocks)
        offset[:, 2] = -1.0  # the update gate starts biased toward keeping the state
        self.register_buffer("gate_offset", offset.view(blocks, 1, -1), persistent=False)
        self.prior_net = MLP(deter, hidden, imglayers, stoch * classes, norm)
        # The posterior's first layer is split into a state part and an observation part, so
        # the observation part runs once per sequence rather than once per step.
        self.post_in_deter = nn.Linear(deter, hidden, bias=False)
        self.post_in_embed = nn.Linear(embed_dim, hidden)
        init_linear(self.post_in_deter)
        init_linear(self.post_in_embed)
        self.post_net = nn.Sequential(
            make_norm(hidden, norm),
            nn.SiLU(),
            MLP(hidden, hidden, obslayers - 1, stoch * classes, norm),
        )

    @property
    def feat_dim(self) -> int:
        """Size of the feature vector fed to heads: deter plus flattened stoch."""
        return self.deter + self.stoch * self.classes

    def initial(self, batch: int, device: torch.device) -> State:
        """All-zero state for `batch` sequences."""
        return {
            "deter": torch.zeros(batch, self.deter, device=device),
            "stoch": torch.zeros(batch, self.stoch, self.classes, device=device),
        }

    def features(self, state: State) -> Tensor:
        """Concatenate deter and flattened stoch into one feature vector."""
        stoch = state["stoch"].flatten(-2)
        return torch.cat([state["deter"], stoch], -1)

    def action_input(self, action: Tensor) -> Tensor:
        """Project an action (scaled into [-1, 1]) to the core's input width."""
        return self.in_action(action / action.abs().clamp_min(1.0).detach())

    def core(self, deter: Tensor, stoch: Tensor, action_in: Tensor) -> Tensor:
        """One block-GRU step of the deterministic state; action_in from `action_input`."""
        x = torch.cat([self.in_deter(deter), self.in_stoch(stoch.flatten(-2)), action_in], -1)
        g, n = self.blocks, deter.shape[0]
        x = self.dyn_hidden(self.dyn_state(deter) + self.dyn_inputs(x))
        # Gates stay in block-major layout; only the new state is transposed back. The update
        # gate's -1 offset rides in the bias, and tanh(x) is computed as 2 sigmoid(2x) - 1:
        # ATen's float tanh is ~4x slower than its sigmoid on CPU, and this is the hot loop.
        gates = self.gru.blockwise(x, bias_offset=self.gate_offset)
        reset, cand, update = gates.chunk(3, -1)
        reset = torch.sigmoid(reset)
        cand = torch.sigmoid(reset * cand * 2.0) * 2.0 - 1.0
        update = torch.sigmoid(update)
        old = deter.view(n, g, -1).transpose(0, 1)
        return torch.lerp(old, cand, update).transpose(0, 1).reshape(n, -1)

    def _logits(self, net: nn.Module, x: Tensor) -> Tensor:
        return net(x).unflatten(-1, (self.stoch, self.classes))

    def prior_logits(self, deter: Tensor) -> Tensor:
        """Logits of the prior p(z_t | h_t)."""
        return self._logits(self.prior_net, deter)

    def embed_input(self, embed: Tensor) -> Tensor:
        """The observation's contribution to the posterior's first layer."""
        return self.post_in_embed(embed)

    def post_logits(self, deter: Tensor, embed_in: Tensor) -> Tensor:
        """Logits of the posterior q(z_t | h_t, x_t); embed_in from `embed_input`."""
        return self._logits(self.post_net, self.post_in_deter(deter) + embed_in)

    def sample(self, logits: Tensor) -> Tensor:
        """Straight-through one-hot sample from unimix probabilities."""
        probs = unimix_probs(logits, self.unimix)
        return straight_through(sample_one_hot(probs.detach()), probs)

    def observe(
        self, embed: Tensor, action: Tensor, is_first: Tensor, state: State | None = None
    ) -> tuple[dict[str, Tensor], State]:
        """Filter a (B, T) sequence; `action[:, t]` is the action that led into step t."""
        batch, length = embed.shape[:2]
        state = state if state is not None else self.initial(batch, embed.device)
        keep = (~is_first).float()
        # Inputs that do not depend on the recurrence are projected for all steps at once.
        action_in = self.action_input(action * keep[..., None])
        embed_in = self.embed_input(embed)
        resets = is_first.any(0).tolist()
        # Slicing step t out inside the loop would cost a full-size zero gradient per step in
        # the backward pass; unbind once, and its backward is one stack.
        action_steps, embed_steps = action_in.unbind(1), embed_in.unbind(1)
        keep_steps = keep.unbind(1)
        deter, stoch = state["deter"], state["stoch"]
        deters, stochs, logits = [], [], []
        for t in range(length):
            if resets[t]:
                k = keep_steps[t][:, None]
                deter, stoch = deter * k, stoch * k[..., None]
            deter = self.core(deter, stoch, action_steps[t])
            logit = self.post_logits(deter, embed_steps[t])
            stoch = self.sample(logit)
            deters.append(deter)
            stochs.append(stoch)
            logits.append(logit)
        out = {
            "deter": torch.stack(deters, 1),
            "stoch": torch.stack(stochs, 1),
            "post_logits": torch.stack(logits, 1),
        }
        return out, {"deter": deter, "stoch": stoch}

    def obs_step(self, state: State, action: Tensor, embed: Tensor, is_first: Tensor) -> State:
        """One filtering step for acting in the environment."""
        k = (~is_first).float()[:, None]
        deter = self.core(
            state["deter"] * k, state["stoch"] * k[..., None], self.action_input(action * k)
        )
        logits = self.post_logits(deter, self.embed_input(embed))
        return {"deter": deter, "stoch": self.sample(logits)}

    def img_step(self, state: State, action: Tensor) -> State:
        """One imagined step from the prior."""
        deter = self.core(state["deter"], state["stoch"], self.action_input(action))
        return {"deter": deter, "stoch": self.sample(self.prior_logits(deter))}

    def kl_losses(
        self, post_logits: Tensor, prior_logits: Tensor, free_bits: float
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Dynamics and representation KL terms (each clipped below by free bits)."""
        post = unimix_probs(post_logits, self.unimix)
        prior = unimix_probs(prior_logits, self.unimix)
        dyn = categorical_kl(post.detach(), prior).sum(-1)
        rep = categorical_kl(post, prior.detach()).sum(-1)
        metrics = {
            "kl": dyn.mean().detach(),
            "prior_entropy": categorical_entropy(prior).sum(-1).mean().detach(),
            "post_entropy": categorical_entropy(post).sum(-1).mean().detach(),
        }
        return dyn.clamp_min(free_bits), rep.clamp_min(free_bits), metrics
