"""Term-by-term parity of our STORM world-model loss with the official STORM code
(weipu-zhang/STORM at 1c50658), same weights and same batch of real Pong frames; prints JSON.

Usage: python benchmarks/storm_parity.py --checkout /tmp/storm_official [--batch 8] [--seed 0]
where the checkout holds the official `sub_models/`, `agents.py` and `utils.py` (without one it
says how to get them, exit 2; they import einops, tensorboardX and yacs).

Both models are built at STORM's published size (agent=storm size=M). The official one gets the
weights copied from ours, name by name, with two changes that are ours on purpose and that the
comparison removes from the official side: its BatchNorm layers become identities (ours are
built with agent.model.conv_norm=none here; our default is LayerNorm over channels, because
BatchNorm's running statistics are state the loss closure would change, twice under SAM), and
its encoder sees the frame shifted by -0.5 as ours does (the reconstruction target is the
unshifted frame on both sides). Both run in eval mode (no dropout) and share one latent sample:
the official straight-through sampler is replaced by one returning ours. The official loss is
computed by its own modules and loss functions, step by step as in WorldModel.update, on the
batch in its time layout (its step t holds the action taken at obs t and the reward that came of
it: our action[t + 1] and reward[t + 1]); the terms our T - 1 transitions do not have (its
reward and termination at the last token) are left out. Reported per term: both values and the
relative difference; per parameter group: the largest gradient difference over the largest
gradient. `heads_eps` repeats it with our heads' LayerNorm eps (1e-3, DreamerV3's) instead of
STORM's (1e-5).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from harness import filled_replay
from storm_reference import official_modules
from torch import nn

from agents import typed
from agents.run import load_config
from agents.storm import StormConfig, build_world_model
from mbrl_sam.world_models.storm import StormWorldModel

GET = """No official STORM code at {path}. Get it outside this repository, e.g.:
  git clone https://github.com/weipu-zhang/STORM ~/official/STORM
  git -C ~/official/STORM checkout 1c50658
  pip install einops tensorboardX yacs
then: python benchmarks/storm_parity.py --checkout ~/official/STORM"""


def official_names(layers: int) -> dict[str, str]:
    """Our parameter name -> the official model's."""
    names = {f"encoder.net.{i}.weight": f"encoder.backbone.{i}.weight" for i in (0, 3, 6, 9)}
    for ours in ("post_head", "prior_head"):
        for kind in ("weight", "bias"):
            names[f"{ours}.{kind}"] = f"dist_head.{ours}.{kind}"
    names["decoder.project.weight"] = "image_decoder.backbone.0.weight"
    for ours, theirs in ((2, 4), (5, 7), (8, 10), (11, 13)):
        names[f"decoder.net.{ours}.weight"] = f"image_decoder.backbone.{theirs}.weight"
    names["decoder.net.11.bias"] = "image_decoder.backbone.13.bias"
    for ours, theirs in (
        ("reward_head", "reward_decoder"),
        ("termination_head", "termination_decoder"),
    ):
        for i, j in ((0, 0), (1, 3)):
            names[f"{ours}.{i}.0.weight"] = f"{theirs}.backbone.{j}.weight"
            names[f"{ours}.{i}.1.weight"] = f"{theirs}.backbone.{j + 1}.weight"
            names[f"{ours}.{i}.1.bias"] = f"{theirs}.backbone.{j + 1}.bias"
        head = "head" if ours == "reward_head" else "head.0"
        for kind in ("weight", "bias"):
            names[f"{ours}.2.{kind}"] = f"{theirs}.{head}.{kind}"
    t = "storm_transformer"
    for i in (0, 3):
        names[f"stem.{i}.weight"] = f"{t}.stem.{i}.weight"
    for i in (1, 4):
        for kind in ("weight", "bias"):
            names[f"stem.{i}.{kind}"] = f"{t}.stem.{i}.{kind}"
    names["transformer.positions.weight"] = f"{t}.position_encoding.pos_emb.weight"
    for kind in ("weight", "bias"):
        names[f"transformer.in_norm.{kind}"] = f"{t}.layer_norm.{kind}"
    for b in range(layers):
        ours, theirs = f"transformer.blocks.{b}", f"{t}.layer_stack.{b}"
        for o, s in (("query", "w_qs"), ("key", "w_ks"), ("value", "w_vs"), ("out", "fc")):
            names[f"{ours}.{o}.weight"] = f"{theirs}.slf_attn.{s}.weight"
        for o, s in (("attn_norm", "slf_attn.layer_norm"), ("ff_in", "pos_ffn.w_1"),
                     ("ff_out", "pos_ffn.w_2"), ("ff_norm", "pos_ffn.layer_norm")):  # fmt: skip
            for kind in ("weight", "bias"):
                names[f"{ours}.{o}.{kind}"] = f"{theirs}.{s}.{kind}"
    return names


def build_official(
    checkout: Path, action_dim: int, ours: StormWorldModel
) -> tuple[nn.Module, dict[str, str]]:
    """The official WorldModel at our size, BatchNorm removed, with our weights."""
    WorldModel, _ = official_modules(checkout)
    cfg = ours.cfg
    official = WorldModel(3, action_dim, ours.max_len + 1, cfg.dim, cfg.layers, cfg.heads)
    official.use_amp = False  # float32 on the CPU; its autocast blocks read this flag
    for module in (official.encoder.backbone, official.image_decoder.backbone):
        for i, layer in enumerate(module):
            if isinstance(layer, nn.BatchNorm2d):
                module[i] = nn.Identity()
    names = official_names(cfg.layers)
    mine, theirs = dict(ours.named_parameters()), dict(official.named_parameters())
    unmatched = set(theirs) - set(names.values())
    assert not unmatched, f"official parameters without a counterpart: {sorted(unmatched)}"
    missing = set(mine) - set(names) - {"decoder.project.bias"}
    assert not missing, f"our parameters without a counterpart: {sorted(missing)}"
    with torch.no_grad():
        ours.decoder.project.bias.zero_()  # the official projection has no bias
        for name, official_name in names.items():
            source, target = mine[name], theirs[official_name]
            # Its position table has one more row (for a 64th token) that nothing reads here.
            target[: source.shape[0]].copy_(source)
    return official, names


def official_terms(official: nn.Module, batch: dict, stoch: torch.Tensor) -> dict:
    """The official loss terms on our batch, in its time layout, with our latent sample."""
    from einops import rearrange

    obs = batch["obs"].float() / 255.0
    action = batch["action"][:, 1:].argmax(-1)
    action = torch.cat([action, action[:, -1:]], 1)  # its last token's action: unused below
    reward, term = batch["reward"][:, 1:], batch["is_terminal"][:, 1:].float()
    embedding = official.encoder(obs - 0.5)
    post_logits = official.dist_head.forward_post(embedding)
    probs = post_logits.softmax(-1)
    sample = stoch + probs - probs.detach()
    flat = rearrange(sample, "B L K C -> B L (K C)")
    obs_hat = official.image_decoder(flat)
    from sub_models.attention_blocks import get_subsequent_mask_with_batch_length

    mask = get_subsequent_mask_with_batch_length(obs.shape[1], obs.device)
    dist_feat = official.storm_transformer(flat, action, mask)
    prior_logits = official.dist_head.forward_prior(dist_feat)
    reward_hat = official.reward_decoder(dist_feat)[:, :-1]
    termination_hat = official.termination_decoder(dist_feat)[:, :-1]
    rec = official.mse_loss_func(obs_hat, obs)
    rew = official.symlog_twohot_loss_func(reward_hat, reward)
    ter = official.bce_with_logits_loss_func(termination_hat, term)
    kl = official.categorical_kl_div_loss
    dyn, dyn_real = kl(post_logits[:, 1:].detach(), prior_logits[:, :-1])
    rep, _ = kl(post_logits[:, 1:], prior_logits[:, :-1].detach())
    total = rec + rew + ter + 0.5 * dyn + 0.1 * rep
    return {"rec": rec, "rew": rew, "ter": ter, "dyn": dyn, "rep": rep, "kl": dyn_real,
            "loss": total}  # fmt: skip


def compare(checkout: Path, batch: dict, action_dim: int, seed: int, heads_eps: float) -> dict:
    """Both losses and gradients on one batch."""
    overrides = ["agent=storm", "size=M", "agent.model.conv_norm=none", "agent.model.dropout=0"]
    run = load_config(overrides)
    agent_cfg = typed(StormConfig, run.agent)
    torch.manual_seed(seed)
    ours = build_world_model((3, 64, 64), action_dim, agent_cfg)
    ours.eval()
    with torch.no_grad():  # zero at init, which would make the reward term ln 255 whatever
        ours.reward_head[-1].weight.normal_(0.0, 0.02)  # its targets: drawn, so they count
    for module in (ours.reward_head, ours.termination_head):
        for layer in module.modules():
            if isinstance(layer, nn.LayerNorm):
                layer.eps = heads_eps
    official, names = build_official(checkout, action_dim, ours)
    official.eval()
    torch.manual_seed(seed + 1)
    loss, aux = ours.loss(batch)
    loss.backward()
    theirs = official_terms(official, batch, aux["post"]["stoch"])
    theirs["loss"].backward()
    terms = {}
    for term in ("rec", "rew", "ter", "dyn", "rep", "kl", "loss"):
        mine = float(aux["metrics"][f"{term}_loss" if term not in ("kl", "loss") else term])
        other = float(theirs[term])
        terms[term] = {"ours": mine, "official": other,
                       "rel_diff": abs(mine - other) / max(abs(other), 1e-12)}  # fmt: skip
    official_params = dict(official.named_parameters())
    grads = {}
    for group, params in ours.param_groups().items():
        ids = {id(p) for p in params}
        diff = scale = 0.0
        for name, p in ours.named_parameters():
            if id(p) not in ids or name not in names:
                continue
            g, h = p.grad, official_params[names[name]].grad
            if h.shape != g.shape:
                h = h[: g.shape[0]]
            diff = max(diff, float((g - h).abs().max()))
            scale = max(scale, float(h.abs().max()))
        grads[group] = {"max_abs_diff": diff, "over_max_grad": diff / max(scale, 1e-30)}
    return {"terms": terms, "grads": grads}


def main() -> None:
    """Compare on one batch of real Pong frames; print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkout", type=Path, default=Path("/tmp/storm_official"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.checkout / "sub_models" / "world_models.py").exists():
        print(GET.format(path=args.checkout), file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    # One Pong episode is ~800+ agent steps: windows after its first step hold no episode start.
    replay, spec = filled_replay("atari/Pong", 700, obs="pixels")
    rng = np.random.default_rng(args.seed)
    batch = replay.sample(args.batch, 64, rng)
    assert not batch["is_first"][:, 1:].any(), "a window crosses an episode start"
    report = {"official": "weipu-zhang/STORM 1c50658", "size": "M", "batch": [args.batch, 64]}
    report["heads_eps_1e-5"] = compare(args.checkout, batch, spec.action_dim, args.seed, 1e-5)
    report["heads_eps_1e-3"] = compare(args.checkout, batch, spec.action_dim, args.seed, 1e-3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
