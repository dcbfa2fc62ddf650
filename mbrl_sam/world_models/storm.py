"""STORM-style world model: categorical latents of single frames, a causal transformer over
(latent, action) tokens for the dynamics, reward and termination heads, and STORM's loss.

Time layout. Replay step t holds obs[t], the action that led into it (action[t]), the reward
that came with it and whether it is terminal. Token t is (z_t, a_t) with a_t = action[t + 1],
the action taken at obs t; the transformer's output h_t at token t predicts z_{t+1} (the
prior), reward[t + 1] and is_terminal[t + 1]. A (B, T) batch gives T - 1 tokens and T - 1
transitions; a transition into an episode's first step (is_first[t + 1]) is no transition and
is masked out of the loss, and attention never crosses an episode start.

The latent state an actor sees is (z_t, h_{t-1}): the frame's latent and the transformer's
output for everything before it (zeros at an episode's first step). Imagination steps it with
the prior; the reward and termination of reaching (z_{t+1}, h_t) are read from h_t.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrl_sam.distributions import (
    SymlogTwoHot,
    categorical_entropy,
    categorical_kl,
    sample_one_hot,
    straight_through,
    symlog,
    unimix_probs,
)
from mbrl_sam.errors import ConfigError, check_choice, check_int, check_positive, check_range
from mbrl_sam.nets import ACTIVATIONS, MLP, NORMS, ConvDecoder, ConvEncoder, make_act
from mbrl_sam.world_models.cpc import ActionConditionedCPC
from mbrl_sam.world_models.transformer import CausalTransformer, empty_cache, segment_mask

State = dict[str, Tensor]  # stoch (N, S, K), hidden (N, dim), and the transformer's cache

LOSS_TERMS = ("rec", "rew", "ter", "dyn", "rep", "cpc")


@dataclass
class StormModelConfig:
    """Sizes (STORM's published size, M; others in configs/preset/storm_*) and loss weights:
    STORM's (weipu-zhang/STORM 1c50658) except where a comment names theirs."""

    stoch: int = 32  # categorical latents per frame
    classes: int = 32  # classes per latent
    dim: int = 512  # transformer width
    layers: int = 2
    heads: int = 8
    ffn: int = 1024  # feed-forward width (STORM: 2 x dim)
    dropout: float = 0.1
    depth: int = 32  # channels of the first conv layer (doubled per layer, as STORM)
    mults: tuple[int, ...] = (1, 2, 4, 8)
    units: int = 512  # reward and termination heads (and state-obs encoder, decoder) width
    head_layers: int = 2
    # In the heads (and the state-obs encoder and decoder), as STORM (its LayerNorm eps 1e-5,
    # ours 1e-3).
    norm: str = "layer"
    # Over channels in the conv encoder and decoder. STORM: BatchNorm, whose running statistics
    # are state the loss would change (twice per SAM step).
    conv_norm: str = "layer"
    act: str = "relu"
    unimix: float = 0.01
    bins: int = 255
    free_bits: float = 1.0  # nats, on the batch-mean KL (as STORM)
    # TWISTER's action-conditioned contrastive predictive coding over this many future steps
    # (TWISTER: 10; 0: off, as STORM), its heads' width and its per-step weight decay.
    cpc_steps: int = 0
    cpc_units: int = 512
    cpc_decay: float = 0.75
    loss_scales: dict[str, float] = field(
        default_factory=lambda: {
            "rec": 1.0,
            "rew": 1.0,
            "ter": 1.0,
            "dyn": 0.5,
            "rep": 0.1,
            "cpc": 1.0,
        }  # fmt: skip
    )

    def __post_init__(self) -> None:
        for key in ("stoch", "classes", "dim", "layers", "heads", "ffn", "depth", "units"):
            check_int(f"agent.model.{key}", getattr(self, key), 1)
        check_int("agent.model.head_layers", self.head_layers, 0)
        check_int("agent.model.cpc_steps", self.cpc_steps, 0)
        check_int("agent.model.cpc_units", self.cpc_units, 1)
        check_positive("agent.model.cpc_decay", self.cpc_decay)
        check_range("agent.model.cpc_decay", self.cpc_decay, 0.0, 1.0)
        if self.dim % self.heads:
            raise ConfigError(
                f"agent.model.dim={self.dim} is not valid; it must be a multiple of "
                f"agent.model.heads={self.heads}"
            )
        check_range("agent.model.dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_choice("agent.model.norm", self.norm, NORMS)
        check_choice("agent.model.conv_norm", self.conv_norm, NORMS)
        check_choice("agent.model.act", self.act, ACTIVATIONS)
        check_range("agent.model.unimix", self.unimix, 0.0, 1.0, high_open=True)
        check_int("agent.model.bins", self.bins, 2)
        check_range("agent.model.free_bits", self.free_bits, 0.0, float("inf"))
        unknown = sorted(set(self.loss_scales) - set(LOSS_TERMS))
        if unknown:
            raise ConfigError(
                f"agent.model.loss_scales has unknown terms {unknown}; its terms are "
                f"{', '.join(LOSS_TERMS)}"
            )


def masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean of x over the entries where valid is 1."""
    return (x * valid).sum() / valid.sum().clamp_min(1.0)


class StormWorldModel(nn.Module):
    """Learns the dynamics of latent frames; `loss(batch)` is all an objective needs."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        action_dim: int,
        cfg: StormModelConfig,
        max_len: int,
        context: int,
    ) -> None:
        """`max_len` tokens are learned positions; a window of `context` past steps is what the
        transformer sees when acting and predicting real episodes open loop."""
        super().__init__()
        self.cfg, self.max_len, self.context = cfg, max_len, context
        self.pixels = len(obs_shape) == 3
        self.stoch_dim = cfg.stoch * cfg.classes
        if self.pixels:
            channels, mults = obs_shape[0], tuple(cfg.mults)
            self.encoder = ConvEncoder(channels, cfg.depth, mults, cfg.conv_norm, cfg.act)
            self.decoder = ConvDecoder(
                self.stoch_dim, channels, cfg.depth, mults, cfg.conv_norm, cfg.act, "storm"
            )
        else:
            self.encoder = MLP(obs_shape[0], cfg.units, cfg.head_layers, norm=cfg.norm, act=cfg.act)
            self.decoder = MLP(
                self.stoch_dim, cfg.units, cfg.head_layers, obs_shape[0], cfg.norm, act=cfg.act
            )
        embed_dim = self.encoder.out_dim
        self.post_head = nn.Linear(embed_dim, self.stoch_dim)
        # STORM's stem mixes the latent and the action into one token embedding.
        self.stem = nn.Sequential(
            nn.Linear(self.stoch_dim + action_dim, cfg.dim, bias=False),
            nn.LayerNorm(cfg.dim),
            make_act("relu"),
            nn.Linear(cfg.dim, cfg.dim, bias=False),
            nn.LayerNorm(cfg.dim),
        )
        self.transformer = CausalTransformer(
            cfg.dim, cfg.layers, cfg.heads, cfg.ffn, cfg.dropout, max_len
        )
        self.prior_head = nn.Linear(cfg.dim, self.stoch_dim)
        self.reward_head = MLP(
            cfg.dim, cfg.units, cfg.head_layers, cfg.bins, cfg.norm, outscale=0.0, act=cfg.act
        )
        self.termination_head = MLP(cfg.dim, cfg.units, cfg.head_layers, 1, cfg.norm, act=cfg.act)
        self.twohot = SymlogTwoHot(cfg.bins, -20.0, 20.0)  # STORM's reward bins
        self.cpc = None
        if cfg.cpc_steps:
            # TWISTER's query is the transformer output with the prior's sample of the next latent.
            self.cpc = ActionConditionedCPC(
                self.stoch_dim + cfg.dim,
                self.stoch_dim,
                action_dim,
                cfg.cpc_steps,
                cfg.cpc_units,
                cfg.cpc_units,
                decay=cfg.cpc_decay,
            )

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups, for choosing which parameters an objective perturbs."""
        groups = {
            "encoder": [*self.encoder.parameters(), *self.post_head.parameters()],
            "transformer": [
                *self.stem.parameters(),
                *self.transformer.parameters(),
                *self.prior_head.parameters(),
            ],
            "decoder": list(self.decoder.parameters()),
            "reward": list(self.reward_head.parameters()),
            "continue": list(self.termination_head.parameters()),
        }
        if self.cpc is not None:
            groups["cpc"] = list(self.cpc.parameters())
        return groups

    # -- pieces -------------------------------------------------------------------------------

    def posterior_logits(self, obs: Tensor) -> Tensor:
        """Logits (..., S, K) of q(z | o) from the frame alone."""
        embed = self.encoder(obs if self.pixels else symlog(obs))
        return self.post_head(embed).unflatten(-1, (self.cfg.stoch, self.cfg.classes))

    def prior_logits(self, hidden: Tensor) -> Tensor:
        """Logits (..., S, K) of p(z_{t+1} | h_t)."""
        return self.prior_head(hidden).unflatten(-1, (self.cfg.stoch, self.cfg.classes))

    def sample(self, logits: Tensor) -> Tensor:
        """Straight-through one-hot sample from unimix probabilities."""
        probs = unimix_probs(logits, self.cfg.unimix)
        return straight_through(sample_one_hot(probs.detach()), probs)

    def token(self, stoch: Tensor, action: Tensor) -> Tensor:
        """The token embedding of latent z (..., S, K) and the action taken at it."""
        return self.stem(torch.cat([stoch.flatten(-2), action], -1))

    def decode(self, stoch: Tensor) -> Tensor:
        """The reconstruction from latents (..., S, K): pixels in [0, 1] or symlog vectors."""
        return self.decoder(stoch.flatten(-2))

    def obs_target(self, obs: Tensor) -> Tensor:
        """What the decoder reconstructs: pixels scaled to [0, 1], or symlog vectors."""
        return obs.float() / 255.0 if self.pixels else symlog(obs)

    def features(self, state: State) -> Tensor:
        """What actor, critic and heads read: the flat latent and the transformer output."""
        return torch.cat([state["stoch"].flatten(-2), state["hidden"]], -1)

    def reward(self, feat: Tensor) -> Tensor:
        """Predicted reward of reaching `feat` (read from its transformer output)."""
        return self.twohot.mean(self.reward_head(feat[..., self.stoch_dim :]))

    def termination_logit(self, hidden: Tensor) -> Tensor:
        """Logit that the step reached from transformer output `hidden` is terminal."""
        return self.termination_head(hidden).squeeze(-1)

    def cont(self, feat: Tensor) -> Tensor:
        """Predicted probability that the episode goes on after `feat`."""
        return 1.0 - torch.sigmoid(self.termination_logit(feat[..., self.stoch_dim :]))

    def outcomes(self, feat: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Reward and continue probability of each transition, read from the state reached."""
        return self.reward(feat[1:]), self.cont(feat[1:])

    # -- training -----------------------------------------------------------------------------

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        """World-model loss on a (B, T) batch; returns (loss, {"metrics", "post"})."""
        cfg, scales = self.cfg, self.cfg.loss_scales
        post_logits = self.posterior_logits(batch["obs"])
        post = unimix_probs(post_logits, cfg.unimix)
        stoch = straight_through(sample_one_hot(post.detach()), post)
        error = (self.decode(stoch) - self.obs_target(batch["obs"])).pow(2)
        rec = error.flatten(2).sum(-1).mean()
        tokens = self.token(stoch[:, :-1], batch["action"][:, 1:].float())
        hidden, _, _ = self.transformer(tokens, segment_mask(batch["is_first"][:, :-1]))
        prior = unimix_probs(self.prior_logits(hidden), cfg.unimix)
        valid = (~batch["is_first"][:, 1:]).float()
        rew = masked_mean(self.twohot.loss(self.reward_head(hidden), batch["reward"][:, 1:]), valid)
        terminal = batch["is_terminal"][:, 1:].float()
        ter = F.binary_cross_entropy_with_logits(
            self.termination_logit(hidden), terminal, reduction="none"
        )
        ter = masked_mean(ter, valid)
        # STORM's free bits: the batch-mean KL is clipped below, not each step's.
        kl = masked_mean(categorical_kl(post[:, 1:].detach(), prior).sum(-1), valid)
        rep_kl = masked_mean(categorical_kl(post[:, 1:], prior.detach()).sum(-1), valid)
        dyn, rep = kl.clamp_min(cfg.free_bits), rep_kl.clamp_min(cfg.free_bits)
        terms = {"rec": rec, "rew": rew, "ter": ter, "dyn": dyn, "rep": rep}
        metrics = {}
        if self.cpc is not None:
            # TWISTER leaves both sides attached: the loss shapes encoder and transformer alike.
            query = torch.cat([self.sample(self.prior_logits(hidden)).flatten(-2), hidden], -1)
            terms["cpc"], metrics = self.cpc.loss(
                query, stoch.flatten(-2), batch["action"].float(), batch["is_first"]
            )
        loss = sum(scales.get(k, 0.0) * v for k, v in terms.items())
        metrics.update({f"{k}_loss": v.detach() for k, v in terms.items()})
        metrics["kl"] = kl.detach()
        metrics["prior_entropy"] = masked_mean(categorical_entropy(prior).sum(-1), valid).detach()
        metrics["post_entropy"] = categorical_entropy(post).sum(-1).mean().detach()
        metrics["loss"] = loss.detach()
        return loss, {"metrics": metrics, "post": {"stoch": stoch.detach()}}

    # -- imagination --------------------------------------------------------------------------

    @torch.no_grad()
    def starts(self, stoch: Tensor, batch: dict[str, Tensor], horizon: int) -> tuple[State, Tensor]:
        """Imagination start states from a replayed (B, T) batch and its posterior latents:
        every step k whose `horizon` imagined tokens stay within the learned positions, with
        the transformer's keys and values of the steps before it in its episode as context.
        Returns the states (B * S rollouts, S per sequence) and whether each start continues."""
        batch_size, length = stoch.shape[:2]
        count = self.max_len - horizon + 1  # starts k = 0..count-1: tokens up to k + horizon - 1
        if count < 1 or length - 1 < count - 1:
            raise ValueError(f"horizon {horizon} leaves no start within max_len {self.max_len}")
        context = count - 1  # tokens the last start can see
        tokens = self.token(stoch[:, :context], batch["action"][:, 1 : context + 1].float())
        is_first = batch["is_first"]
        hidden, keys, values = self.transformer(tokens, segment_mask(is_first[:, :context]))
        segment = is_first.long().cumsum(1)
        k = torch.arange(count, device=stoch.device)
        j = torch.arange(context, device=stoch.device)
        same = segment[:, :count, None] == segment[:, None, :context]
        mask = (j[None, None] < k[None, :, None]) & same  # (B, S, context)
        # h_{k-1} when step k - 1 is in k's episode; zeros at an episode's first step.
        prev = torch.cat([hidden.new_zeros(batch_size, 1, hidden.shape[-1]), hidden], 1)
        prev = prev * (~is_first[:, :count, None]).float()
        state = {"stoch": stoch[:, :count].flatten(0, 1), "hidden": prev.flatten(0, 1)}
        pos = k.repeat(batch_size)
        state.update(empty_cache(keys, values, mask.flatten(0, 1), pos))
        cont = (~batch["is_terminal"][:, :count]).float().flatten()
        return state, cont

    def imagine_step(self, state: State, action: Tensor) -> State:
        """The next latent state after `action`: a transformer step over the context the state
        carries, then the prior. The context is a KV cache (imagination from replayed
        sequences, `starts`) or a sliding window of past steps (`start_states`: acting and
        open-loop prediction of real episodes, as long as they are)."""
        if "window" in state:
            window = {
                "window": torch.cat([state["window"][:, 1:], state["stoch"][:, None]], 1),
                "taken": torch.cat([state["taken"][:, 1:], action[:, None]], 1),
                "valid": torch.cat([state["valid"][:, 1:], state["valid"][:, :1] | True], 1),
            }
            hidden = self.window_hidden(window["window"], window["taken"], window["valid"])
            return {"stoch": self.sample(self.prior_logits(hidden)), "hidden": hidden, **window}
        cache = {k: v for k, v in state.items() if k not in ("stoch", "hidden")}
        hidden, cache = self.transformer.step(self.token(state["stoch"], action), cache)
        return {"stoch": self.sample(self.prior_logits(hidden)), "hidden": hidden, **cache}

    # -- open-loop prediction of real episodes (mbrl_sam/evaluation/model_error.py) -----------

    def observe_episode(self, episode: dict[str, Tensor]) -> State:
        """The posterior state at each step of a real episode (T states): the frame's latent
        and the transformer's output over the `context` steps before it (zeros at the first)."""
        stoch = self.sample(self.posterior_logits(episode["obs"]))
        steps = torch.arange(1, stoch.shape[0], device=stoch.device)
        hidden = [stoch.new_zeros(1, self.cfg.dim)]
        for part in steps.split(256):  # windows of every step, a bounded number at a time
            window = self._window(stoch, episode, part)
            hidden.append(self.window_hidden(window["window"], window["taken"], window["valid"]))
        return {"stoch": stoch, "hidden": torch.cat(hidden)}

    def start_states(self, posterior: State, episode: dict[str, Tensor], starts: Tensor) -> State:
        """Imagination starts at steps `starts`: their posterior states, each with the window of
        the `context` steps before it (padding before the episode's start)."""
        state = {k: v[starts] for k, v in posterior.items()}
        return {**state, **self._window(posterior["stoch"], episode, starts)}

    def _window(self, stoch: Tensor, episode: dict[str, Tensor], steps: Tensor) -> State:
        """The `context` latents before each of `steps`, the actions taken at them, and which of
        them lie in the episode."""
        index = steps[:, None] + torch.arange(-self.context, 0, device=steps.device)
        valid = index >= 0
        index = index.clamp_min(0)
        # Replay layout: action[t + 1] is the action taken at step t.
        taken = episode["action"][index + 1].float()
        return {"window": stoch[index], "taken": taken, "valid": valid}

    def observation_error(self, feat: Tensor, obs: Tensor) -> Tensor:
        """Mean squared error of the observations decoded from `feat` (N, F) against `obs`."""
        stoch = feat[..., : self.stoch_dim].unflatten(-1, (self.cfg.stoch, self.cfg.classes))
        return (self.decode(stoch) - self.obs_target(obs)).pow(2).flatten(1).mean(-1)

    def window_hidden(self, stoch: Tensor, action: Tensor, valid: Tensor | None = None) -> Tensor:
        """The transformer output at the last of a window of tokens (N, W) with no cache, for
        acting and long open-loop rollouts. `valid` (N, W) marks real tokens (padding first)."""
        length = stoch.shape[1]
        mask = torch.ones(length, length, dtype=torch.bool, device=stoch.device).tril()[None]
        if valid is not None:
            # A padded query attends to itself alone, so that no row is empty.
            eye = torch.eye(length, dtype=torch.bool, device=stoch.device)
            mask = mask & valid[:, None, :] | eye
        hidden, _, _ = self.transformer(self.token(stoch, action), mask)
        return hidden[:, -1]
