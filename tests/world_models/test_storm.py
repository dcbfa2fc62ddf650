"""The STORM world model: its loss terms against STORM's formulas written out by hand, and
imagination with the KV cache against recomputing every step from scratch."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import OneHotCategorical, kl_divergence

from mbrl_sam.distributions import symlog, unimix_probs
from mbrl_sam.nets import eval_mode
from mbrl_sam.world_models.storm import StormModelConfig, StormWorldModel

TINY = dict(stoch=4, classes=3, dim=16, layers=2, heads=2, ffn=32, units=16, head_layers=1)


def world_model(obs_shape=(5,), dropout=0.0, max_len=7, **extra) -> StormWorldModel:
    torch.manual_seed(0)
    cfg = StormModelConfig(**{**TINY, "depth": 4, "dropout": dropout, **extra})
    return StormWorldModel(obs_shape, 2, cfg, max_len, context=4)


def batch(b=3, t=8, obs_shape=(5,), seed=1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[0, 5] = True  # sequence 0: an episode ends at step 4, the next starts at 5
    is_terminal = torch.zeros(b, t, dtype=torch.bool)
    is_terminal[0, 4] = True
    is_terminal[2, 6] = True
    action = F.one_hot(torch.randint(0, 2, (b, t), generator=g), 2).float()
    action[is_first] = 0
    if len(obs_shape) == 3:
        obs = torch.randint(0, 256, (b, t, *obs_shape), generator=g, dtype=torch.uint8)
    else:
        obs = torch.randn(b, t, *obs_shape, generator=g) * 3
    reward = torch.randn(b, t, generator=g) * 4
    reward[is_first] = 0
    return {"obs": obs, "action": action, "reward": reward, "is_first": is_first,
            "is_terminal": is_terminal}  # fmt: skip


def storm_terms(wm: StormWorldModel, data: dict, stoch: torch.Tensor) -> dict[str, float]:
    """STORM's loss terms (sub_models/world_models.py), one (b, t) at a time, from the model's
    networks and the latent sample the loss drew: what the loss must equal."""
    b, t = stoch.shape[:2]
    target = symlog(data["obs"]) if not wm.pixels else data["obs"].float() / 255
    rec = sum(
        (wm.decoder(stoch[i, j].flatten()) - target[i, j]).pow(2).sum()
        for i in range(b)
        for j in range(t)
    ) / (b * t)
    post_logits = wm.posterior_logits(data["obs"])
    bins = torch.linspace(-20, 20, 255)
    rew, ter, kl, count = 0.0, 0.0, 0.0, 0
    for i in range(b):
        first = [j for j in range(t) if data["is_first"][i, j]] + [t]
        for start, end in zip(first[:-1], first[1:]):  # one episode: tokens start..end-2
            tokens = wm.token(stoch[i, start : end - 1], data["action"][i, start + 1 : end])
            n = tokens.shape[0]
            if n == 0:
                continue
            # The episode's tokens sit where they are in the sequence.
            pad = torch.zeros(start, tokens.shape[-1])
            mask = torch.ones(start + n, start + n, dtype=torch.bool).tril()
            mask[start:, :start] = False
            hidden, _, _ = wm.transformer(torch.cat([pad, tokens])[None], mask[None])
            for k in range(n):
                h, j = hidden[0, start + k], start + k + 1  # token start+k predicts step j
                # Two-hot over symlog bins, built as STORM's SymLogTwoHotLoss builds it.
                y = symlog(data["reward"][i, j])
                index = torch.bucketize(y, bins)
                weight = ((y - bins[index - 1]) / (40 / 254)).clamp(0, 1)
                two_hot = (1 - weight) * F.one_hot(index - 1, 255) + weight * F.one_hot(index, 255)
                rew += -(two_hot * F.log_softmax(wm.reward_head(h), -1)).sum()
                logit, z = wm.termination_logit(h), float(data["is_terminal"][i, j])
                ter += -(z * F.logsigmoid(logit) + (1 - z) * F.logsigmoid(-logit))
                post = OneHotCategorical(probs=unimix_probs(post_logits[i, j], 0.01))
                prior = OneHotCategorical(probs=unimix_probs(wm.prior_logits(h), 0.01))
                kl += kl_divergence(post, prior).sum()
                count += 1
    kl = kl / count
    return {
        "rec": float(rec),
        "rew": float(rew / count),
        "ter": float(ter / count),
        "dyn": max(1.0, float(kl)),
        "rep": max(1.0, float(kl)),
        "kl": float(kl),
    }


@pytest.mark.parametrize("obs_shape", [(5,), (3, 64, 64)], ids=["state", "pixels"])
def test_loss_terms_equal_storms_formulas_written_out(obs_shape):
    wm = world_model(obs_shape, free_bits=0.0 if obs_shape == (5,) else 1.0)
    with torch.no_grad():  # its zero init would make the reward loss ln 255 whatever the target
        wm.reward_head[-1].weight.normal_()
    data = batch(obs_shape=obs_shape)
    loss, aux = wm.loss(data)
    got = {k: float(v) for k, v in aux["metrics"].items()}
    with torch.no_grad():
        ref = storm_terms(wm, data, aux["post"]["stoch"])
    if wm.cfg.free_bits == 0.0:
        ref["dyn"] = ref["rep"] = ref["kl"]
    for term in ("rec", "rew", "ter", "dyn", "rep"):
        assert got[f"{term}_loss"] == pytest.approx(ref[term], rel=1e-4), term
    assert got["kl"] == pytest.approx(ref["kl"], rel=1e-4)
    scales = {"rec": 1.0, "rew": 1.0, "ter": 1.0, "dyn": 0.5, "rep": 0.1}
    assert float(loss.detach()) == pytest.approx(sum(scales[k] * ref[k] for k in scales), rel=1e-4)


def test_at_initialisation_the_reward_loss_is_log_bins():
    """The reward head's output layer starts at zero: a uniform distribution over 255 bins,
    whose cross-entropy to any two-hot target is ln 255."""
    _, aux = world_model().loss(batch())
    assert float(aux["metrics"]["rew_loss"]) == pytest.approx(math.log(255), rel=1e-6)


def test_free_bits_clip_the_batch_mean_kl_and_stop_its_gradient():
    wm = world_model(free_bits=100.0)
    loss, aux = wm.loss(batch())
    assert float(aux["metrics"]["dyn_loss"]) == 100.0 > float(aux["metrics"]["kl"])
    loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in wm.prior_head.parameters())


def test_transitions_into_an_episode_start_are_not_learned():
    """The reward and observation at a first step say nothing about the step before it."""
    wm = world_model()
    data = batch()
    _, aux = wm.loss(data)
    changed = {k: v.clone() for k, v in data.items()}
    changed["reward"][0, 5] = 1e4  # the first step of sequence 0's second episode
    _, aux2 = wm.loss(changed)
    assert float(aux2["metrics"]["rew_loss"]) == pytest.approx(float(aux["metrics"]["rew_loss"]))


def test_imagination_starts_see_exactly_their_own_past():
    wm = world_model(max_len=7)
    data = batch()
    _, aux = wm.loss(data)
    horizon = 2
    with eval_mode(wm):
        state, cont = wm.starts(aux["post"]["stoch"], data, horizon)
    count = 7 - horizon + 1  # starts k = 0..5: their imagined tokens reach position 6
    assert state["stoch"].shape == (3 * count, 4, 3) and cont.shape == (3 * count,)
    mask = state["context_mask"].view(3, count, count - 1)
    assert mask[1].tolist() == [[j < k for j in range(count - 1)] for k in range(count)]
    # Sequence 0's step 5 starts an episode: it sees nothing before it, and h_4 is not its.
    assert not mask[0, 5].any() and mask[0, 4].tolist() == [True] * 4 + [False]
    hidden = state["hidden"].view(3, count, -1)
    assert hidden[:, 0].abs().sum() == 0 and hidden[0, 5].abs().sum() == 0
    assert hidden[0, 4].abs().sum() > 0
    assert state["pos"].view(3, count)[0].tolist() == list(range(count))
    assert cont.view(3, count)[0].tolist() == [1, 1, 1, 1, 0, 1]  # step 4 is terminal


def rollout_from_scratch(wm, data, stoch, actions, seed):
    """Every imagined step recomputed from all tokens so far, without a cache: per start, the
    real tokens before it in its episode and the imagined ones, at their positions."""
    b, t = stoch.shape[:2]
    horizon = actions.shape[1]
    count = wm.max_len - horizon + 1
    segment = data["is_first"].long().cumsum(1)
    torch.manual_seed(seed)
    hiddens, latents = [], []
    current = stoch[:, :count].flatten(0, 1).clone()
    sequences = []
    for i in range(b):
        for k in range(count):
            real = wm.token(stoch[i, :k], data["action"][i, 1 : k + 1])
            valid = (segment[i, :k] == segment[i, k]).tolist()
            sequences.append((real, valid))
    for step in range(horizon):
        hs = []
        for n, (real, valid) in enumerate(sequences):
            tokens = torch.cat([real, wm.token(current[n : n + 1], actions[n : n + 1, step])])
            sequences[n] = (tokens, valid + [True])
            keys = torch.tensor(sequences[n][1])
            mask = torch.ones(len(keys), len(keys), dtype=torch.bool).tril() & keys[None]
            mask |= torch.eye(len(keys), dtype=torch.bool)
            out, _, _ = wm.transformer(tokens[None], mask[None])
            hs.append(out[0, -1])
        hidden = torch.stack(hs)
        current = wm.sample(wm.prior_logits(hidden))
        hiddens.append(hidden)
        latents.append(current)
    return torch.stack(hiddens, 1), torch.stack(latents, 1)


def test_cached_and_uncached_rollouts_give_the_same_latents():
    wm = world_model(max_len=7)
    data = batch()
    horizon = 3
    with torch.no_grad(), eval_mode(wm):
        _, aux = wm.loss(data)
        stoch = aux["post"]["stoch"]
        state, _ = wm.starts(stoch, data, horizon)
        actions = F.one_hot(torch.randint(0, 2, (len(state["stoch"]), horizon)), 2).float()
        torch.manual_seed(5)
        hiddens, latents = [], []
        for step in range(horizon):
            state = wm.imagine_step(state, actions[:, step])
            hiddens.append(state["hidden"])
            latents.append(state["stoch"])
        cached_h, cached_z = torch.stack(hiddens, 1), torch.stack(latents, 1)
        scratch_h, scratch_z = rollout_from_scratch(wm, data, stoch, actions, seed=5)
    torch.testing.assert_close(cached_h, scratch_h, atol=1e-5, rtol=0)
    assert torch.equal(cached_z, scratch_z)
    assert state["own_k1"].shape[-2] == horizon


def test_imagined_features_carry_reward_and_termination_from_the_hidden_part():
    wm = world_model()
    feat = torch.randn(6, wm.stoch_dim + 16)
    changed = feat.clone()
    changed[:, : wm.stoch_dim] = 0  # the latent part: not read by reward or continuation
    torch.testing.assert_close(wm.reward(changed), wm.reward(feat))
    torch.testing.assert_close(wm.cont(changed), wm.cont(feat))
    assert torch.all((wm.cont(feat) > 0) & (wm.cont(feat) < 1))


def test_parameter_groups_cover_the_model_once():
    wm = world_model((3, 64, 64))
    groups = wm.param_groups()
    assert list(groups) == ["encoder", "transformer", "decoder", "reward", "continue"]
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(wm.parameters()))


def test_twisters_contrastive_term_joins_the_loss_with_its_own_group():
    wm = world_model(cpc_steps=3, cpc_units=8)
    assert list(wm.param_groups())[-1] == "cpc"
    data = batch()
    torch.manual_seed(3)
    loss, aux = wm.loss(data)
    metrics = aux["metrics"]
    assert {"cpc_loss", "cpc_acc", "cpc_loss_3"} <= set(metrics)
    scales = {"rec": 1.0, "rew": 1.0, "ter": 1.0, "dyn": 0.5, "rep": 0.1, "cpc": 1.0}
    total = sum(scales[k] * float(metrics[f"{k}_loss"]) for k in scales)
    assert float(loss.detach()) == pytest.approx(total, rel=1e-5)
    # Its gradient reaches the transformer and the encoder (TWISTER detaches neither side).
    wm.cfg.loss_scales.update({k: 0.0 for k in ("rec", "rew", "ter", "dyn", "rep")})
    torch.manual_seed(3)
    wm.loss(data)[0].backward()
    for group in ("transformer", "encoder", "cpc"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in wm.param_groups()[group])
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in wm.decoder.parameters())
