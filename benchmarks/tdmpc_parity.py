"""Term-by-term parity of our TD-MPC agent with the official TD-MPC2 code: one set of weights
copied into both, the same batch of real env steps and the same random draws; print JSON.

Usage (in an environment where the official code imports: tensordict, hydra):
    python benchmarks/tdmpc_parity.py --checkout ~/official/tdmpc2 [--task dmc/cartpole-swingup]
        [--size 1M] [--batch 256] [--updates 3] [--dropout 0.0]

The checkout (nicklashansen/tdmpc2 at e9f5932, see official_tdmpc2.py for how to get it) is
copied to a temporary folder and patched there to run on CPU; nothing of it enters this repo.
For each quantity it prints the largest absolute and relative difference: decoded values and
two-hot targets, every network's output, TD targets, the world-model loss terms (consistency,
reward, value, total) and gradient norm, the policy loss and Q scale, and every parameter after
`--updates` full updates (world model, policy prior, target Qs) with Adam. Dropout is off by
default: the two codes draw their dropout masks in different orders, so with dropout on only
the first comparisons (before any training-mode pass) can agree.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import filled_replay
from official_tdmpc2 import prepare_source
from omegaconf import OmegaConf
from torch import Tensor, nn

from agents import make_agent
from agents.run import load_config

SIZES = {"1M": 1, "5M": 5, "19M": 19, "48M": 48}


def official_agent(src: Path, obs_dim: int, action_dim: int, args: argparse.Namespace) -> Any:
    """The official TDMPC2 agent, built on CPU from its own config for a single task."""
    sys.path.append(str(src))  # appended: our `envs` must keep shadowing its own
    from common import MODEL_SIZE
    from common.parser import cfg_to_dataclass
    from tdmpc2 import TDMPC2

    cfg = OmegaConf.load(src / "config.yaml")
    cfg.merge_with(MODEL_SIZE[SIZES[args.size]])
    # What its parse_cfg and make_env fill in for one state-based DMC task.
    cfg.update(
        task=args.task.split("/", 1)[1], multitask=False, task_dim=0, tasks=[args.task],
        obs_shape={"state": [obs_dim]}, action_dim=action_dim, episode_length=500,
        seed_steps=2500, bin_size=(cfg.vmax - cfg.vmin) / (cfg.num_bins - 1),
        batch_size=args.batch, dropout=args.dropout, compile=False,
    )  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):  # it prints; stdout is for the JSON
        return TDMPC2(cfg_to_dataclass(cfg))


def copy_mlp(theirs: nn.Sequential, ours: nn.Sequential) -> None:
    """Copy an official mlp (NormedLinear layers, a last Linear) into our normed_mlp."""
    for t, o in zip(theirs, ours, strict=True):
        if isinstance(o, nn.Linear):
            o.weight.copy_(t.weight), o.bias.copy_(t.bias)
            continue
        linear, norm = o[0], next(m for m in o if isinstance(m, nn.LayerNorm))
        linear.weight.copy_(t.weight), linear.bias.copy_(t.bias)
        norm.weight.copy_(t.ln.weight), norm.bias.copy_(t.ln.bias)


def copy_ensemble(params: Any, ours: nn.Module) -> None:
    """Copy official stacked Q parameters (members, out, in) into our EnsembleMLP."""
    for i, (w, b) in enumerate(zip(ours.weights, ours.biases)):
        (
            w.copy_(params[str(i), "weight"].transpose(-1, -2)),
            b.copy_(params[str(i), "bias"][:, None]),
        )
        if i < ours.layers:
            ours.ln_weights[i].copy_(params[str(i), "ln", "weight"][:, None])
            ours.ln_biases[i].copy_(params[str(i), "ln", "bias"][:, None])


@torch.no_grad()
def copy_weights(official: Any, agent: Any) -> None:
    """Give our agent the official model's weights."""
    m, wm = official.model, agent.world_model
    copy_mlp(m._encoder["state"], wm.encoder)
    copy_mlp(m._dynamics, wm.dynamics)
    copy_mlp(m._reward, wm.reward_head)
    copy_mlp(m._pi, wm.pi.net)
    copy_ensemble(m._Qs.params, wm.qs)
    copy_ensemble(m._target_Qs_params, wm.target_qs)


@torch.no_grad()
def wake_heads(official: Any, std: float = 0.05) -> None:
    """Random last layers for the zero-initialised reward and Q heads and distinct target Qs,
    so that every decoded value and every target differs from zero."""
    m = official.model
    m._reward[-1].weight.normal_(0, std)
    m._Qs.params["2", "weight"].normal_(0, std)
    for value in m._target_Qs_params.values(include_nested=True, leaves_only=True):
        value.add_(torch.randn_like(value) * std)


def episode_batch(task: str, batch: int, horizon: int, seed: int) -> dict[str, Tensor]:
    """Windows of horizon + 1 real env steps (random actions) inside single episodes."""
    replay, _ = filled_replay(task, 2000, seed)
    rng = np.random.default_rng(seed)
    while True:  # windows that cross an episode start are redrawn (TD-MPC2 never samples them)
        b = replay.sample(batch, horizon + 1, rng)
        if not b["is_first"][:, 1:].any():
            return b


def official_inputs(b: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The batch laid out as the official buffer gives it: time-major, reward (H, B, 1)."""
    obs = b["obs"].float().transpose(0, 1).contiguous()
    action = b["action"][:, 1:].transpose(0, 1).contiguous()
    reward = b["reward"][:, 1:].transpose(0, 1)[..., None].contiguous()
    return obs, action, reward, torch.zeros_like(reward)


def diff(a: Any, b: Any) -> dict[str, float]:
    """Largest absolute difference, and that relative to the official tensor's largest entry
    (elementwise ratios blow up on entries near zero)."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    err, scale = (a.reshape(b.shape) - b).abs().max(), b.abs().max()
    return {
        "max_abs": float(err),
        "max_rel": float(err / scale.clamp_min(1e-12)),
        "scale": float(scale),
    }


@torch.no_grad()
def forward_terms(official: Any, agent: Any, b: dict[str, Tensor], seed: int) -> dict[str, dict]:
    """Network outputs, decoded values, two-hot targets and TD targets at equal weights."""
    from common import math as om

    m, wm, out = official.model, agent.world_model, {}
    obs, action, reward, terminated = official_inputs(b)
    m.eval(), wm.eval()
    z_off, z = m.encode(obs[0], None), wm.encode(obs[0])
    out["encode"] = diff(z, z_off)
    out["next"] = diff(wm.next(z, action[0]), m.next(z_off, action[0], None))
    reward_logits = m.reward(z_off, action[0], None)
    out["reward_logits"] = diff(wm.reward_logits(z, action[0]), reward_logits)
    out["reward_decoded"] = diff(wm.reward(z, action[0]), om.two_hot_inv(reward_logits, m.cfg))
    q_logits = m.Q(z_off, action[0], None, return_type="all")
    out["q_logits"] = diff(wm.q_logits(z, action[0]), q_logits)
    out["q_decoded"] = diff(wm.twohot.mean(q_logits), om.two_hot_inv(q_logits, m.cfg))
    targets = reward[0] * 40 - 5  # spread over several bins, both signs
    out["two_hot"] = diff(wm.twohot.encode(targets[:, 0]), om.two_hot(targets, m.cfg))
    out["soft_ce"] = diff(
        wm.twohot.loss(q_logits[0], targets[:, 0]), om.soft_ce(q_logits[0], targets, m.cfg)
    )
    torch.manual_seed(seed)
    pi_off, info = m.pi(z_off, None)
    torch.manual_seed(seed)
    pi, log_prob = wm.pi(z)
    out["pi_action"] = diff(pi, pi_off)
    out["pi_scaled_entropy"] = diff(-log_prob * wm.action_dim, info["scaled_entropy"])
    next_z_off = m.encode(obs[1:], None)
    torch.manual_seed(seed)
    td_off = official._td_target(next_z_off, reward, terminated, None)
    torch.manual_seed(seed)
    _, td = wm.td_targets(obs[1:], reward[..., 0], terminated[..., 0].bool(), agent.discount)
    out["td_target"] = diff(td, td_off)
    out["discount"] = diff(agent.discount, official.discount)
    wm.train()
    return out


def update_terms(official: Any, agent: Any, b: dict[str, Tensor], step: int) -> dict[str, dict]:
    """One full update of each (model, policy, target Qs) from the same random state."""
    torch.manual_seed(1000 + step)
    info = official._update(*official_inputs(b))
    torch.manual_seed(1000 + step)
    ours = agent.update(b, step)
    pairs = {
        "consistency_loss": "model/consistency_loss",
        "reward_loss": "model/reward_loss",
        "value_loss": "model/value_loss",
        "total_loss": "model/loss",
        "grad_norm": "model/final_grad_norm",
        "pi_loss": "policy/pi_loss",
        "pi_grad_norm": "policy/grad_norm",
        "pi_scale": "policy/q_scale",
    }
    return {k: diff(ours[v], info[k]) for k, v in pairs.items()}


def parameter_terms(official: Any, agent: Any, size: str) -> dict[str, dict]:
    """Every parameter of ours against the official one in the same place."""
    # A same-shaped agent filled with the official weights gives them our names.
    twin = make_agent(load_config(["agent=tdmpc", f"size={size}"]), agent.spec, torch.device("cpu"))
    copy_weights(official, twin)
    theirs = dict(twin.world_model.named_parameters())
    out = {}
    for name, p in agent.world_model.named_parameters():
        out[name] = diff(p.detach(), theirs[name].detach())
    return out


def worst(terms: dict[str, dict]) -> dict[str, float]:
    """The largest differences over a group of terms."""
    return {
        "max_abs": max(t["max_abs"] for t in terms.values()),
        "max_rel": max(t["max_rel"] for t in terms.values()),
    }


def main() -> None:
    """Build both agents with the same weights, compare forward terms, then updates."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkout", type=Path, default=Path.home() / "official/tdmpc2")
    p.add_argument("--task", default="dmc/cartpole-swingup")
    p.add_argument("--size", default="1M", choices=sorted(SIZES))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--updates", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        src, _ = prepare_source(args.checkout.expanduser().resolve(), Path(tmp))
        cfg = load_config(
            ["agent=tdmpc", f"size={args.size}", "objective=erm", f"task={args.task}"]
            + [f"agent.model.dropout={args.dropout}", f"agent.batch_size={args.batch}"]
        )
        batches = [episode_batch(args.task, args.batch, 3, args.seed + i) for i in range(2)]
        spec = filled_replay(args.task, 1, args.seed)[1]
        torch.manual_seed(args.seed)
        official = official_agent(src, spec.obs_shape[0], spec.action_dim, args)
        wake_heads(official)
        agent = make_agent(cfg, spec, torch.device("cpu"))
        copy_weights(official, agent)
        result: dict[str, Any] = {"task": args.task, "size": args.size, "batch": args.batch}
        result["forward"] = forward_terms(official, agent, batches[0], args.seed)
        result["updates"] = []
        for step in range(args.updates):
            result["updates"].append(update_terms(official, agent, batches[step % 2], step))
        params = parameter_terms(official, agent, args.size)
        result["parameters_after_updates"] = {"worst": worst(params), "each": params}
        result["forward_after_updates"] = forward_terms(official, agent, batches[1], args.seed)
        result["summary"] = {
            "forward": worst(result["forward"]),
            "updates": worst(
                {f"{i}/{k}": v for i, u in enumerate(result["updates"]) for k, v in u.items()}
            ),
            "parameters": result["parameters_after_updates"]["worst"],
            "forward_after_updates": worst(result["forward_after_updates"]),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
