"""TD-MPC2-style latent model: shapes, SimNorm, ensemble, policy log-prob, TD targets, loss mask."""

import math

import pytest
import torch
from torch import nn

from mbrl_sam.nets import EnsembleMLP, SimNorm
from mbrl_sam.world_models.tdmpc import (
    TDMPCModelConfig,
    TDMPCWorldModel,
)

OBS, ACT, B, H = 5, 3, 7, 3


def small_model(**kw) -> TDMPCWorldModel:
    torch.manual_seed(0)
    cfg = TDMPCModelConfig(latent_dim=16, enc_dim=12, mlp_dim=12, num_q=3, **kw)
    return TDMPCWorldModel(OBS, ACT, cfg)


def window(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(H + 1, B, OBS, generator=g),
        "action": torch.rand(H, B, ACT, generator=g) * 2 - 1,
        "reward": torch.randn(H, B, generator=g),
        "terminal": torch.zeros(H, B, dtype=torch.bool),
    }


def test_latents_lie_on_simplices_and_heads_have_their_shapes():
    wm = small_model()
    z = wm.encode(torch.randn(B, OBS))
    assert z.shape == (B, 16)
    torch.testing.assert_close(z.view(B, 2, 8).sum(-1), torch.ones(B, 2))
    a = torch.rand(B, ACT) * 2 - 1
    assert wm.next(z, a).shape == (B, 16)
    assert wm.reward(z, a).shape == (B,)
    assert wm.q_logits(z, a).shape == (3, B, 101)
    assert wm.q(z, a, "min").shape == (B,) and wm.q(z, a, "avg").shape == (B,)
    torch.testing.assert_close(wm.continues(z), torch.ones(B))
    # Zero-initialised reward and Q heads predict zero at the start (the bins' mean).
    torch.testing.assert_close(wm.reward(z, a), torch.zeros(B), atol=1e-6, rtol=0)
    torch.testing.assert_close(wm.q(z, a), torch.zeros(B), atol=1e-6, rtol=0)


def test_simnorm_is_a_softmax_per_group():
    x = torch.randn(4, 24)
    out = SimNorm(8)(x)
    torch.testing.assert_close(out, x.view(4, 3, 8).softmax(-1).view(4, 24))


def test_ensemble_matches_members_computed_one_by_one():
    torch.manual_seed(1)
    ens = EnsembleMLP(members=3, in_dim=5, hidden=6, layers=2, out_dim=4, dropout=0.0)
    for w in ens.ln_weights:
        w.data.normal_()
    x = torch.randn(2, 7, 5)
    out = ens(x)
    assert out.shape == (3, 2, 7, 4)
    for m in range(3):
        h = x
        for i in range(3):
            h = h @ ens.weights[i][m] + ens.biases[i][m]
            if i < 2:
                h = nn.functional.layer_norm(h, (6,)) * ens.ln_weights[i][m] + ens.ln_biases[i][m]
                h = nn.functional.mish(h)
        torch.testing.assert_close(out[m], h)
    torch.testing.assert_close(ens(x, torch.tensor([2, 0])), out[[2, 0]])


def test_td_targets_with_zero_q_heads_are_the_rewards():
    wm = small_model()
    w = window()
    next_z, target = wm.td_targets(w["obs"][1:], w["reward"], w["terminal"], 0.99)
    assert next_z.shape == (H, B, 16)
    torch.testing.assert_close(target, w["reward"], atol=1e-3, rtol=0)


def test_td_targets_are_identical_across_calls_in_training_mode():
    # Heavy dropout and non-zero Q outputs: any dropout inside the targets would show.
    wm = small_model(dropout=0.5)
    with torch.no_grad():
        for q in (wm.qs, wm.target_qs):
            q.weights[-1].normal_()
    # Fresh from construction (training mode, never switched): the first updates of a run
    # come before any act() or eval() call.
    assert wm.training and not wm.target_qs.training
    w = window()
    # The same seed picks the same two target Qs (TD-MPC2 draws them); dropout, if it were on,
    # would make the training-mode targets differ from the eval-mode ones.
    torch.manual_seed(5)
    _, first = wm.td_targets(w["obs"][1:], w["reward"], w["terminal"], 0.99)
    torch.manual_seed(5)
    _, second = wm.td_targets(w["obs"][1:], w["reward"], w["terminal"], 0.99)
    wm.eval()
    torch.manual_seed(5)
    _, in_eval = wm.td_targets(w["obs"][1:], w["reward"], w["terminal"], 0.99)
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, in_eval)
    assert wm.qs.training is False and wm.train().qs.training and not wm.target_qs.training


def test_encoder_sees_raw_observations():
    wm = small_model()
    obs = torch.tensor([[50.0, -3.0, 0.5, 0.0, 7.0]])
    torch.testing.assert_close(wm.encode(obs), wm.encoder(obs))
    assert not torch.allclose(wm.encode(obs), wm.encoder(torch.sign(obs) * obs.abs().log1p()))


def test_termination_loss_is_an_unweighted_mean_over_the_window():
    wm = small_model(
        episodic=True, consistency_coef=0.0, reward_coef=0.0, value_coef=0.0, horizon_decay=0.5
    )
    w = window()
    terminal = torch.zeros(H, B, dtype=torch.bool)
    terminal[2, :3] = True
    next_z, target = wm.td_targets(w["obs"][1:], w["reward"], terminal, 0.99)
    valid = torch.ones(H, B, dtype=torch.long)
    loss, aux = wm.loss(w["obs"][0], w["action"], w["reward"], terminal, next_z, target, valid)
    logits = wm.termination_head(aux["zs"][1:]).squeeze(-1)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, terminal.float())
    torch.testing.assert_close(loss, expected)


def test_td_targets_bootstrap_with_the_smaller_of_two_target_qs():
    wm = small_model()
    with torch.no_grad():
        # Constant Q per member (bias of the last layer): 1, 2 and 3 in two-hot value.
        for m, v in enumerate([1.0, 2.0, 3.0]):
            wm.target_qs.biases[-1][m].copy_(wm.twohot.encode(torch.tensor(v)).log())
    w = window()
    terminal = w["terminal"].clone()
    terminal[0, 0] = True
    torch.manual_seed(0)
    _, target = wm.td_targets(w["obs"][1:], w["reward"], terminal, 0.5)
    bootstrap = (target - w["reward"]) / 0.5
    assert bootstrap[0, 0] == 0  # terminal: no bootstrap
    values = bootstrap.flatten()[1:]
    # The min of two of {1, 2, 3} is 1 or 2, the same for the whole batch.
    assert torch.allclose(values, values[0]) and float(values[0]) in (
        pytest.approx(1.0, abs=1e-4),
        pytest.approx(2.0, abs=1e-4),
    )


def test_loss_ignores_steps_after_an_episode_boundary():
    wm = small_model()
    w = window()
    next_z, target = wm.td_targets(w["obs"][1:], w["reward"], w["terminal"], 0.99)
    valid = torch.ones(H, B, dtype=torch.long)
    valid[1:, 0] = 0  # sequence 0 crosses into a new episode after its first step
    loss, aux = wm.loss(w["obs"][0], w["action"], w["reward"], w["terminal"], next_z, target, valid)
    assert aux["zs"].shape == (H + 1, B, 16) and torch.isfinite(loss)
    # Changing what sequence 0 sees after the boundary leaves the loss unchanged...
    reward, target2, next_z2 = w["reward"].clone(), target.clone(), next_z.clone()
    reward[1:, 0] += 50.0
    target2[1:, 0] -= 30.0
    next_z2[1:, 0] = next_z2[1:, 0].flip(-1)
    loss2, _ = wm.loss(w["obs"][0], w["action"], reward, w["terminal"], next_z2, target2, valid)
    torch.testing.assert_close(loss, loss2)
    # ...while a change before it does (zero-initialised heads ignore reward targets, so
    # change the consistency target).
    next_z3 = next_z.clone()
    next_z3[0, 0] = next_z3[0, 0].flip(-1)
    loss3, _ = wm.loss(w["obs"][0], w["action"], reward, w["terminal"], next_z3, target, valid)
    assert not torch.isclose(loss, loss3)


def test_loss_weights_steps_by_rho_and_mixes_terms_by_their_coefficients():
    wm = small_model(consistency_coef=1.0, reward_coef=0.0, value_coef=0.0, horizon_decay=0.5)
    w = window()
    next_z, target = wm.td_targets(w["obs"][1:], w["reward"], w["terminal"], 0.99)
    valid = torch.ones(H, B, dtype=torch.long)
    loss, aux = wm.loss(w["obs"][0], w["action"], w["reward"], w["terminal"], next_z, target, valid)
    zs = aux["zs"]
    per_step = ((zs[1:] - next_z) ** 2).mean(-1).mean(-1)
    expected = sum(0.5**t * per_step[t] for t in range(H)) / H
    torch.testing.assert_close(loss, expected)
    reported = float(aux["metrics"]["consistency_loss"])
    assert math.isclose(reported, float(expected.detach()), rel_tol=1e-5)


def test_param_groups_cover_the_world_model_but_not_the_policy_or_targets():
    wm = small_model(episodic=True)
    groups = wm.param_groups()
    assert set(groups) == {"encoder", "dynamics", "reward", "value", "termination"}
    ids = {id(p) for ps in groups.values() for p in ps}
    assert not ids & {id(p) for p in wm.pi.parameters()}
    assert not ids & {id(p) for p in wm.target_qs.parameters()}
    expected = {id(p) for p in wm.parameters()} - {id(p) for p in wm.pi.parameters()}
    expected -= {id(p) for p in wm.target_qs.parameters()}
    assert ids == expected
