"""DreamerV3-style world model: encoder, RSSM, decoder, reward and continue heads, and its loss."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrl_sam.distributions import TwoHot, symlog
from mbrl_sam.errors import ConfigError, check_choice, check_int, check_range
from mbrl_sam.nets import MLP, NORMS, ConvDecoder, ConvEncoder
from mbrl_sam.world_models.rssm import RSSM, State


@dataclass
class DreamerModelConfig:
    """Sizes (DreamerV3's size1m; others in configs/preset/dreamer_*) and loss weights:
    DreamerV3's (danijar/dreamerv3 e3f0224) except where a comment names theirs."""

    deter: int = 512
    hidden: int = 64
    stoch: int = 32
    classes: int = 4
    blocks: int = 8
    units: int = 64
    layers: int = 3
    depth: int = 4
    mults: tuple[int, ...] = (2, 3, 4, 4)
    # LayerNorm (eps 1e-3); official: rms (RMSNorm, eps 1e-4). One seed each of both showed no
    # difference (docs/learning-runs.md).
    norm: str = "layer"
    unimix: float = 0.01
    bins: int = 255
    free_bits: float = 1.0
    # Official: dyn 1.0, plus a replay value loss (repval 0.3) we lack; not measured side by side.
    loss_scales: dict[str, float] = field(
        default_factory=lambda: {"rec": 1.0, "rew": 1.0, "con": 1.0, "dyn": 0.5, "rep": 0.1}
    )

    def __post_init__(self) -> None:
        for key in ("deter", "hidden", "stoch", "classes", "blocks", "units", "layers", "depth"):
            check_int(f"agent.model.{key}", getattr(self, key), 1)
        if self.deter % self.blocks:
            raise ConfigError(
                f"agent.model.deter={self.deter} is not valid; it must be a multiple of "
                f"agent.model.blocks={self.blocks}"
            )
        check_choice("agent.model.norm", self.norm, NORMS)
        check_range("agent.model.unimix", self.unimix, 0.0, 1.0, high_open=True)
        check_int("agent.model.bins", self.bins, 2)
        check_range("agent.model.free_bits", self.free_bits, 0.0, float("inf"))
        unknown = sorted(set(self.loss_scales) - {"rec", "rew", "con", "dyn", "rep"})
        if unknown:
            raise ConfigError(
                f"agent.model.loss_scales has unknown terms {unknown}; its terms are rec, rew, "
                "con, dyn, rep"
            )


class DreamerWorldModel(nn.Module):
    """Learns latent dynamics from sequences; `loss(batch)` is all an objective needs."""

    def __init__(self, obs_shape: tuple[int, ...], action_dim: int, cfg: DreamerModelConfig):
        super().__init__()
        self.cfg = cfg
        self.pixels = len(obs_shape) == 3
        if self.pixels:
            self.encoder = ConvEncoder(obs_shape[0], cfg.depth, tuple(cfg.mults), cfg.norm)
            embed_dim = self.encoder.out_dim
        else:
            self.encoder = MLP(obs_shape[0], cfg.units, cfg.layers, norm=cfg.norm)
            embed_dim = cfg.units
        self.rssm = RSSM(
            embed_dim,
            action_dim,
            deter=cfg.deter,
            hidden=cfg.hidden,
            stoch=cfg.stoch,
            classes=cfg.classes,
            blocks=cfg.blocks,
            unimix=cfg.unimix,
            norm=cfg.norm,
        )
        feat = self.rssm.feat_dim
        if self.pixels:
            self.decoder = ConvDecoder(feat, obs_shape[0], cfg.depth, tuple(cfg.mults), cfg.norm)
        else:
            self.decoder = MLP(feat, cfg.units, cfg.layers, obs_shape[0], cfg.norm)
        self.reward_head = MLP(feat, cfg.units, 1, cfg.bins, cfg.norm, outscale=0.0)
        self.continue_head = MLP(feat, cfg.units, 1, 1, cfg.norm)
        self.twohot = TwoHot(cfg.bins)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups, for choosing which parameters an objective perturbs."""
        return {
            "encoder": list(self.encoder.parameters()),
            "dynamics": list(self.rssm.parameters()),
            "decoder": list(self.decoder.parameters()),
            "reward": list(self.reward_head.parameters()),
            "continue": list(self.continue_head.parameters()),
        }

    def encode(self, obs: Tensor) -> Tensor:
        """Embed observations (symlog for vectors, scaled pixels for images)."""
        return self.encoder(obs if self.pixels else symlog(obs))

    def features(self, state: State) -> Tensor:
        """The latent state's features (deterministic and stochastic parts, concatenated)."""
        return self.rssm.features(state)

    def imagine_step(self, state: State, action: Tensor) -> State:
        """The prior's next latent state after `action`, without an observation."""
        return self.rssm.img_step(state, action)

    def reward(self, feat: Tensor) -> Tensor:
        """Predicted reward (two-hot mean) from features."""
        return self.twohot.mean(self.reward_head(feat))

    def cont(self, feat: Tensor) -> Tensor:
        """Predicted probability that the episode continues."""
        return torch.sigmoid(self.continue_head(feat).squeeze(-1))

    def outcomes(self, feat: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Reward and continue probability of each transition, read from the state reached."""
        return self.reward(feat[1:]), self.cont(feat[1:])

    # -- open-loop prediction of real episodes (mbrl_sam/evaluation/model_error.py) -----------

    def observe_episode(self, episode: dict[str, Tensor]) -> State:
        """The posterior latent state at each step of a real episode (T states)."""
        obs = episode["obs"] if self.pixels else episode["obs"].float()
        post, _ = self.rssm.observe(
            self.encode(obs[None]), episode["action"][None].float(), episode["is_first"][None]
        )
        return {"deter": post["deter"][0], "stoch": post["stoch"][0]}

    def start_states(self, posterior: State, episode: dict[str, Tensor], starts: Tensor) -> State:
        """Imagination starts at steps `starts`: their posterior states."""
        return {k: v[starts] for k, v in posterior.items()}

    def observation_error(self, feat: Tensor, obs: Tensor) -> Tensor:
        """Mean squared error of the observations decoded from `feat` (N, F) against `obs`."""
        target = obs.float() / 255.0 if self.pixels else symlog(obs.float())
        return (self.decoder(feat) - target).pow(2).flatten(1).mean(-1)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict]:
        """World-model loss on a (B, T) batch; returns (loss, {"metrics", "post"})."""
        scales = self.cfg.loss_scales
        embed = self.encode(batch["obs"])
        post, _ = self.rssm.observe(embed, batch["action"], batch["is_first"])
        prior_logits = self.rssm.prior_logits(post["deter"])
        dyn, rep, metrics = self.rssm.kl_losses(
            post["post_logits"], prior_logits, self.cfg.free_bits
        )
        feat = self.rssm.features(post)
        recon = self.decoder(feat)
        if self.pixels:
            target = batch["obs"].float() / 255.0
            rec = (recon - target).pow(2).sum((-3, -2, -1))
        else:
            rec = (recon - symlog(batch["obs"])).pow(2).sum(-1)
        rew = self.twohot.loss(self.reward_head(feat), batch["reward"])
        cont_target = (~batch["is_terminal"]).float()
        con = F.binary_cross_entropy_with_logits(
            self.continue_head(feat).squeeze(-1), cont_target, reduction="none"
        )
        terms = {"rec": rec, "rew": rew, "con": con, "dyn": dyn, "rep": rep}
        loss = sum(scales[k] * v.mean() for k, v in terms.items())
        metrics.update({f"{k}_loss": v.mean().detach() for k, v in terms.items()})
        metrics["loss"] = loss.detach()
        state = {"deter": post["deter"], "stoch": post["stoch"]}
        return loss, {"metrics": metrics, "post": state}

    def initial(self, batch: int, device: torch.device) -> State:
        """Zero latent state for acting."""
        return self.rssm.initial(batch, device)
