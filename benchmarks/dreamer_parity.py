"""Term-by-term parity of our Dreamer's loss components with the official JAX DreamerV3
(danijar/dreamerv3 at e3f0224), fed the same numpy arrays; prints JSON.

Usage: python benchmarks/dreamer_parity.py --checkout ~/official/dreamerv3 [--seed 0] [--tol 1e-5]
in a venv where torch and the official code both import (without a checkout it says how, exit 2).

Inputs (fixed seed, float32): two-hot logits and targets (rewards, returns, exact bins, values
out of range), posterior/prior logits (B, T, 32, 32), imagined rewards and continuation
probabilities, critic, slow-critic and policy head outputs. Ours: TwoHot, RSSM.kl_losses,
lambda_returns, ActorCritic's return scale and its whole `update` (a scripted world model and
tables stand in for the networks; the official side scores the actions that update sampled).
Theirs: outs.TwoHot via Head, RSSM.loss, Normalize, lambda_return and imag_loss, each network
layer pre-filled with the same array. Each side uses its own config (ours agent=dreamer with
reinforce actor gradients, as the official code; theirs defaults + dmc_proprio). Per term: the
largest absolute difference, that over the official term's largest magnitude, and a note where
the codes differ on purpose or a difference was traced to its cause.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from jax_reference import import_official
from omegaconf import OmegaConf
from torch import Tensor, nn

from agents.run import load_config
from mbrl_sam.behavior.actor_critic import ActorCritic, ActorCriticConfig, lambda_returns
from mbrl_sam.distributions import TwoHot
from mbrl_sam.world_models.rssm import RSSM

GET = """No official DreamerV3 checkout at {path}. Get one outside this repository:
  git clone https://github.com/danijar/dreamerv3 ~/official/dreamerv3
  git -C ~/official/dreamerv3 checkout e3f0224
  python -m venv --system-site-packages ~/venvs/dreamerv3
  ~/venvs/dreamerv3/bin/pip install -c <(echo torch==2.13.0) "jax[cpu]==0.4.33" "numpy<2" \\
      elements==3.19.1 portal==3.5.0 ninjax==3.5.1 granular==0.20.3 scope==0.4.4 optax==0.2.4 \\
      chex==0.1.88 einops jaxtyping colored_traceback ruamel.yaml tqdm
then: ~/venvs/dreamerv3/bin/python benchmarks/dreamer_parity.py --checkout ~/official/dreamerv3"""
SIZES = {"B": 16, "T": 64, "H": 15, "N": 1024, "A": 6, "S": 32, "C": 32}
NOTES = {
    "kl_dyn_scaled": "on purpose: dyn loss scale ours {ours} vs official {theirs}",
    "twohot_mean_flat_logits": "ours symexp(linspace(-20, 20)) bins are not exactly symmetric",
}
NOT_COMPARED = {
    "repval": "official replay value loss (scale 0.3) on replayed states; ours has none",
    "norm": "LayerNorm eps 1e-3 (ours) vs RMSNorm eps 1e-4 (official) live in the networks, "
    "which these terms replace with shared arrays",
    "rollouts": "imagined trajectories themselves (needs equal weights in both RSSMs)",
}


def load_official(path: Path) -> tuple[SimpleNamespace, Any]:
    """The official modules used below (computing in float32) and its dmc_proprio config."""
    jax = import_official(str(path))[0]
    import elements
    import jax.numpy as jnp
    import ninjax as nj
    import ruamel.yaml as yaml
    from dreamerv3 import agent, rssm
    from embodied.jax import heads, nets, utils

    nets.COMPUTE_DTYPE = jnp.float32  # what its config jax.compute_dtype=float32 selects
    configs = yaml.YAML(typ="safe").load((path / "dreamerv3" / "configs.yaml").read_text())
    config = elements.Config(configs["defaults"]).update(configs["dmc_proprio"]).agent
    modules = dict(jax=jax, jnp=jnp, nj=nj, agent=agent, rssm=rssm, Space=elements.Space)
    return SimpleNamespace(**modules, Head=heads.Head, Normalize=utils.Normalize), config


def pure(o: SimpleNamespace, fn: Any, state: dict | None = None) -> tuple[dict, Any]:
    """Run an impure ninjax function on `state`; returns the new state and its output."""
    return o.nj.pure(fn)(dict(state or {}), create=True, seed=0)


def head(o: SimpleNamespace, space: Any, impl: str, cfg: Any, layers: dict, name: str) -> Any:
    """Their Head's output distribution with its Linear layers replaced by fixed arrays."""
    fields = {k: v for k, v in dict(cfg).items() if k in o.Head.__annotations__}
    h = o.Head(space, impl, **fields, name=name)
    for key, array in layers.items():
        h._submodules[key] = lambda _x, a=array: o.jnp.asarray(a)
    first = next(iter(layers.values()))
    return h(o.jnp.zeros((*first.shape[:2], 1), o.jnp.float32))


def diff(ours: Any, theirs: Any) -> dict[str, float]:
    """Largest absolute difference, and that over the official term's largest magnitude."""
    a = np.asarray(ours.detach() if isinstance(ours, Tensor) else ours, np.float64)
    b = np.asarray(theirs, np.float64)
    err, scale = float(np.abs(a.reshape(b.shape) - b).max()), float(np.abs(b).max())
    return {"max_abs": err, "max_rel": err / max(scale, 1e-12), "scale": scale}


def peaked(rng: np.random.Generator, value: np.ndarray, width: float, bins: int) -> np.ndarray:
    """Logits of a trained-looking two-hot head: a bump at value's bin, plus noise."""
    centre = (np.sign(value) * np.log1p(np.abs(value)) + 20.0) / 40.0 * (bins - 1)
    bump = -0.5 * ((np.arange(bins) - centre[..., None]) / width) ** 2
    return bump + rng.normal(0.0, 0.3, bump.shape)


def shared_inputs(seed: int, bins: int) -> dict[str, np.ndarray]:
    """Random but realistic arrays (time-major where a horizon is involved)."""
    rng = np.random.default_rng(seed)
    B, T, H, N, A, S, C = SIZES.values()
    value = rng.gamma(2.0, 60.0, (H + 1, N))  # critic means on a dense-reward task
    done = rng.random((H + 1, N)) < 0.02
    target = np.sign(rng.normal(size=(B, T))) * np.expm1(np.abs(rng.normal(0.0, 3.0, (B, T))))
    target[:, :16] = rng.beta(0.5, 1.5, (B, 16))  # rewards
    target[1, 16:20] = [0.0, 1e10, -1e10, 4.85e8]  # zero, beyond both ends, near the top bin
    logits = peaked(rng, target * rng.uniform(0.5, 1.5, (B, T)), 2.0, bins)
    logits[0, :4] = 0.0  # flat: 0 exactly with mirror-symmetric bins
    prior = rng.normal(0.0, 1.5, (B, T, S, C))
    spread = np.exp(rng.uniform(np.log(0.02), np.log(1.5), (B, T, 1, 1)))
    x = {
        "twohot_logits": logits,
        "twohot_target": target,
        "prior": prior,
        "post": prior + spread * rng.normal(size=prior.shape),  # KL below and above free bits
        "reward": rng.beta(0.5, 1.5, (H + 1, N)),
        "cont": np.where(
            done, rng.uniform(0.0, 0.1, done.shape), rng.uniform(0.98, 1.0, done.shape)
        ),
        "start_cont": (rng.random(N) > 0.02).astype(np.float64),
        "value": value,
        "critic_logits": peaked(rng, value, 1.5, bins),
        "slow_logits": peaked(rng, value * rng.uniform(0.9, 1.1, value.shape), 2.0, bins),
        "policy_out": rng.normal(0.0, 1.0, (H + 1, N, 2 * A)),
        "policy_logits": rng.normal(0.0, 1.5, (H + 1, N, A)),
        "returns": np.stack([rng.normal(20.0 * k, 10.0 + 5.0 * k, (H, N)) for k in range(30)]),
    }
    return {k: v.astype(np.float32) for k, v in x.items()}


class Table(nn.Module):
    """Stand-in network: returns the row of a fixed array picked by (step, start) in feat."""

    def __init__(self, values: np.ndarray, grad: bool = True) -> None:
        super().__init__()
        self.values = nn.Parameter(torch.from_numpy(values.copy()), requires_grad=grad)

    def forward(self, feat: Tensor) -> Tensor:
        """values[step, start]."""
        return self.values[feat[..., 0].long(), feat[..., 1].long()]


class ScriptedModel(nn.Module):
    """Stand-in world model: imagined step t has features (t, start) and tabled reward, cont."""

    def __init__(self, reward: np.ndarray, cont: np.ndarray) -> None:
        super().__init__()
        self.reward, self.cont = Table(reward, False), Table(cont, False)

    def features(self, state: dict) -> Tensor:
        """The features are the state."""
        return state["feat"]

    def imagine_step(self, state: dict, action: Tensor) -> dict:
        """Advance the step index; the action does not matter here."""
        return {"feat": state["feat"] + torch.tensor([1.0, 0.0])}

    def outcomes(self, feat: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """The tabled reward and continue of each state reached."""
        return self.reward(feat[1:]), self.cont(feat[1:])


def twohot_and_kl(o: SimpleNamespace, oc: Any, model: dict, x: dict) -> dict[str, dict]:
    """Bins, two-hot loss and decoded mean; dyn and rep KL with free bits, raw and scaled."""
    theirs = {}

    def fn() -> None:
        logits = {"logits": x["twohot_logits"]}
        dist = head(o, o.Space(np.float32, ()), "symexp_twohot", oc.value, logits, "v")
        target = x["twohot_target"].copy()
        target[2, 16:24] = np.asarray(dist.bins)[[0, 1, 100, 126, 127, 128, 253, 254]]
        theirs.update(bins=dist.bins, target=target, loss=dist.loss(target), mean=dist.pred())
        act_space = {"action": o.Space(np.float32, (SIZES["A"],), -1, 1)}
        rssm = o.rssm.RSSM(act_space, **dict(oc.dyn.rssm), name="dyn")
        rssm.observe = lambda *a, **k: (None, None, {"logit": x["post"], "deter": None})
        rssm._prior = lambda deter: x["prior"]
        theirs.update(rssm.loss(None, None, None, None, False)[2])

    pure(o, fn)
    twohot = TwoHot(len(theirs["bins"]))
    logits, target = torch.from_numpy(x["twohot_logits"]), torch.from_numpy(theirs["target"])
    rssm = RSSM(8, 2, 64, 16, SIZES["S"], SIZES["C"], 8, unimix=model["unimix"], norm="layer")
    post, prior = torch.from_numpy(x["post"]), torch.from_numpy(x["prior"])
    dyn, rep, _ = rssm.kl_losses(post, prior, model["free_bits"])
    ours_s, their_s = model["loss_scales"], oc.loss_scales
    flat = {"ours": float(twohot.mean(logits[0, :4]).abs().max())}
    return {
        "twohot_bins": diff(twohot.bins, theirs["bins"]),
        "twohot_loss": diff(twohot.loss(logits, target), theirs["loss"]),
        "twohot_mean": diff(twohot.mean(logits), theirs["mean"]),
        "twohot_mean_flat_logits": {**flat, "official": float(abs(theirs["mean"][0, :4]).max())},
        "kl_dyn": diff(dyn, theirs["dyn"]),
        "kl_rep": diff(rep, theirs["rep"]),
        "kl_dyn_scaled": diff(ours_s["dyn"] * dyn.mean(), their_s["dyn"] * theirs["dyn"].mean()),
        "kl_rep_scaled": diff(ours_s["rep"] * rep.mean(), their_s["rep"] * theirs["rep"].mean()),
        "kl_dyn_at_free_bits": {
            "fraction": float((np.asarray(theirs["dyn"]) <= model["free_bits"]).mean())
        },
    }


def returns_terms(o: SimpleNamespace, oc: Any, ac: ActorCritic, x: dict) -> tuple[dict, dict]:
    """Lambda-returns on one trajectory; return scale after each of a sequence of updates."""
    t = lambda a: np.swapaxes(a, 0, 1)  # noqa: E731  time-major <-> batch-major
    disc, con = (1.0, x["cont"] * ac.discount) if oc.contdisc else (ac.discount, x["cont"])
    zero, rew, val = np.zeros_like(t(con)), t(x["reward"]), t(x["value"])
    out = o.agent.lambda_return(zero, 1 - t(con), rew, val, val, disc, oc.imag_loss.lam)
    r, c, v = (torch.from_numpy(x[k]) for k in ("reward", "cont", "value"))
    ours = lambda_returns(r[1:], c[1:], v, ac.discount, ac.cfg.lam)
    state, scales = {}, ([], [])
    for ret in x["returns"]:

        def norm(ret: np.ndarray = ret) -> Any:
            return o.Normalize(**dict(oc.retnorm), name="retnorm")(t(ret), True)

        state, (_, scale) = pure(o, norm, state)
        ac.return_scale.copy_(ac.return_scale_after(torch.from_numpy(ret)))
        scales[0].append(float(ac.return_scale.clamp_min(1.0)))  # as ActorCritic._targets
        scales[1].append(float(scale))
    return {"lambda_returns": diff(ours, t(out)), "return_scale": diff(*scales)}, state


def actor_critic_terms(o: Any, oc: Any, ac: ActorCritic, x: dict, state: dict, kind: str) -> dict:
    """Our whole ActorCritic.update on scripted rollouts against their imag_loss and policy."""
    A, N, discrete = SIZES["A"], SIZES["N"], kind == "discrete"
    out = x["policy_logits" if discrete else "policy_out"]
    ac.actor.net, ac.critic = Table(out), Table(x["critic_logits"])
    ac.slow_critic = Table(x["slow_logits"], False)
    kept, imagine = [], ac.imagine
    ac.imagine = lambda *a, **k: kept.append(imagine(*a, **k)) or kept[-1]
    start = {"feat": torch.stack([torch.zeros(N), torch.arange(N + 0.0)], -1)}
    torch.manual_seed(0)
    wm, start_cont = ScriptedModel(x["reward"], x["cont"]), x["start_cont"]
    metrics = ac.update(wm, start, torch.from_numpy(start_cont))
    traj = kept[-1]
    act = traj.extras.get("raw_action", traj.action).detach().numpy()  # the sample scored
    act = np.concatenate([act, act[-1:]]).swapaxes(0, 1)
    act = act.argmax(-1).astype(np.int32) if discrete else act
    out = out.swapaxes(0, 1)
    space = o.Space(np.int32, (), 0, A) if discrete else o.Space(np.float32, (A,), -1, 1)
    layers = {"logits": out} if discrete else {"mean": out[..., :A], "stddev": out[..., A:]}
    impl = oc.policy_dist_disc if discrete else oc.policy_dist_cont
    cons = np.concatenate([start_cont[:, None], x["cont"].T[:, 1:]], 1)
    cons = cons * np.float32(ac.discount) if oc.contdisc else cons  # its con head learns that
    critics = [
        (n, x[k].swapaxes(0, 1)) for n, k in (("val", "critic_logits"), ("slow", "slow_logits"))
    ]
    scale = oc.loss_scales

    def fn() -> Any:
        norms = [o.Normalize(**dict(oc[k]), name=k) for k in ("retnorm", "valnorm", "advnorm")]
        scalar = o.Space(np.float32, ())
        value, slow = (
            head(o, scalar, "symexp_twohot", oc.value, {"logits": v}, n) for n, v in critics
        )
        policy = {"action": head(o, space, impl, oc.policy, layers, "pol")}
        kw = dict(contdisc=oc.contdisc, horizon=oc.horizon, **dict(oc.imag_loss))
        rew = x["reward"].T
        out = o.agent.imag_loss({"action": act}, rew, cons, policy, value, slow, *norms, True, **kw)
        return out, policy["action"]

    new_state, ((losses, outs, _), pol) = pure(o, fn, state)
    policy_loss, value_loss = (scale[k] * losses[k].mean() for k in ("policy", "value"))
    terms = {"actor_loss": diff(metrics["actor_loss"], policy_loss)}
    terms["critic_loss"] = diff(metrics["critic_loss"], value_loss)
    terms["policy_logp"] = diff(traj.extras["log_prob"], pol.logp(act)[:, :-1].T)
    terms["policy_entropy"] = diff(traj.extras["entropy"], pol.entropy()[:, :-1].T)
    terms["imag_return_mean"] = diff(metrics["imag_return"], outs["ret"].mean())
    lo, hi = (new_state[f"retnorm/{k}/value"] for k in ("lo", "hi"))
    terms["return_scale_after_update"] = diff(metrics["return_scale"], hi - lo)
    if not discrete:  # 0 would mean our loss scored clipped actions (see policy.py)
        terms["scored_actions_outside_unit_box"] = {"fraction": float((abs(act) > 1).mean())}
    return {f"{k}_{kind}": v for k, v in terms.items()}


def main() -> None:
    """Compare every term and print JSON."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--checkout", default="~/official/dreamerv3", help="official code")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=1e-5, help="max_rel counted as agreement")
    args = parser.parse_args()
    checkout = Path(args.checkout).expanduser()
    if not (checkout / "dreamerv3" / "agent.py").is_file():
        print(GET.format(path=checkout), file=sys.stderr)
        sys.exit(2)
    o, oc = load_official(checkout)
    cfg = load_config(["agent=dreamer", "size=tiny", "agent.behavior.actor_grad=reinforce"])
    model = OmegaConf.to_container(cfg.agent.model, resolve=True)
    behavior = ActorCriticConfig(**OmegaConf.to_container(cfg.agent.behavior, resolve=True))
    x = shared_inputs(args.seed, oc.value.bins)
    acs = {
        k: ActorCritic(2, SIZES["A"], k == "discrete", behavior) for k in ("continuous", "discrete")
    }
    terms = twohot_and_kl(o, oc, model, x)
    ret_terms, state = returns_terms(o, oc, acs["continuous"], x)
    acs["discrete"].return_scale.copy_(acs["continuous"].return_scale)
    terms.update(ret_terms)
    for kind, ac in acs.items():
        terms.update(actor_critic_terms(o, oc, ac, x, state, kind))
    dyn = {"ours": model["loss_scales"]["dyn"], "theirs": oc.loss_scales["dyn"]}
    for name, term in terms.items():
        if "max_rel" in term:
            term["agree"] = term["max_rel"] <= args.tol
        if name in NOTES:
            term["note"] = NOTES[name].format(**dyn)
    git = ["git", "-C", str(checkout), "rev-parse", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() or "unknown"
    report = {
        "official": {"checkout": str(checkout), "commit": commit},
        "versions": {"torch": torch.__version__, "jax": o.jax.__version__, "numpy": np.__version__},
        "sizes": SIZES,
        "seed": args.seed,
        "terms": terms,
        "not_compared": NOT_COMPARED,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
