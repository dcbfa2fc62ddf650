"""TWISTER's AC-CPC loss: InfoNCE against hand-computed values, the pairing of h_t with
z_{t+k} and the actions between them, masking across episode starts, and gradients."""

import math

import pytest
import torch

from mbrl_sam.world_models.cpc import ActionConditionedCPC, info_nce, pair_valid

HID, TGT, ACT = 6, 5, 3


def module(steps: int = 3, seed: int = 0) -> ActionConditionedCPC:
    torch.manual_seed(seed)
    return ActionConditionedCPC(HID, TGT, ACT, steps=steps, units=8, out_dim=7)


def inputs(b: int = 2, t: int = 7, seed: int = 1):
    """Random hidden (B, T-1), targets and actions (B, T); row 0 has an episode start at 3."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(b, t - 1, HID, generator=g)
    targets = torch.randn(b, t, TGT, generator=g)
    actions = torch.randn(b, t, ACT, generator=g)
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[0, 3] = True
    return hidden, targets, actions, is_first


def lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


def test_info_nce_matches_the_hand_computed_value():
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    key = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, -1.0]])
    # logits rows: [2, 0, 1], [0, 3, -1], [2, 3, 0]; row 2 picks key 1, not its own.
    loss, acc = info_nce(query, key, torch.ones(3, dtype=torch.bool))
    want = (lse(2, 0, 1) - 2 + lse(0, 3, -1) - 3 + lse(2, 3, 0) - 0) / 3
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert acc.item() == pytest.approx(2 / 3)
    # Dropping pair 1 removes its row and its key from the other rows' candidates.
    loss, acc = info_nce(query, key, torch.tensor([True, False, True]))
    assert loss.item() == pytest.approx((lse(2, 1) - 2 + lse(2, 0) - 0) / 2, rel=1e-6)
    assert acc.item() == pytest.approx(1 / 2)


def test_uniform_logits_give_the_log_of_the_number_of_candidates():
    cpc = module(steps=3)
    with torch.no_grad():
        for layer in cpc.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.zero_()
                layer.bias.fill_(0.5)  # every query and key is the same vector
    hidden, targets, actions, is_first = inputs(b=2, t=6)
    loss, metrics = cpc.loss(hidden, targets, actions, is_first)
    # Valid pairs (t, t+k), row 0 starting an episode at 3, row 1 one episode:
    # k=1: row 0 (0,1) (1,2) (3,4) (4,5), row 1: 5 -> 9; k=2: row 0 (0,2) (3,5), row 1: 4 -> 6;
    # k=3: row 0 none, row 1: 3 -> 3.
    counts = [9, 6, 3]
    weights = [1.0, 0.75, 0.5625]
    want = sum(w * math.log(n) for w, n in zip(weights, counts)) / sum(weights)
    assert loss.item() == pytest.approx(want, rel=1e-6)
    for k, n in enumerate(counts, 1):
        assert metrics[f"cpc_loss_{k}"].item() == pytest.approx(math.log(n), rel=1e-6)
        assert metrics[f"cpc_acc_{k}"].item() == pytest.approx(1 / n)  # argmax takes the first


def reference_loss(cpc: ActionConditionedCPC, hidden, targets, actions, is_first) -> torch.Tensor:
    """The loss pair by pair: h_t and the actions taken at t+1..t+k-1 (actions[:, s+1] is the
    action taken at step s) against z_{t+k}, for pairs with no episode start in (t, t+k]."""
    b, t = targets.shape[:2]
    total = 0.0
    for k in range(1, cpc.steps + 1):
        queries, keys = [], []
        for i in range(b):
            for j in range(t - k):
                if is_first[i, j + 1 : j + k + 1].any():
                    continue
                taken = [actions[i, s + 1] for s in range(j + 1, j + k)]
                queries.append(cpc.query_heads[k - 1](torch.cat([hidden[i, j], *taken])))
                keys.append(cpc.key_heads[k - 1](targets[i, j + k]))
        logits = torch.stack(queries) @ torch.stack(keys).T
        step = (torch.logsumexp(logits, -1) - logits.diagonal()).mean()
        total = total + cpc.weights[k - 1] * step
    return total


@pytest.mark.parametrize("steps", [1, 3, 5])
def test_loss_matches_the_pair_by_pair_reference(steps):
    cpc = module(steps=steps)
    data = inputs(b=3, t=8)
    data[3][2, 6] = True  # another episode start, in row 2
    loss, _ = cpc.loss(*data)
    torch.testing.assert_close(loss, reference_loss(cpc, *data), rtol=1e-5, atol=1e-6)


def test_step_k_query_reads_exactly_the_actions_taken_between_t_and_t_plus_k():
    cpc = module(steps=4)
    hidden, _, actions, _ = inputs(b=2, t=9)
    t0 = 2
    for k in range(1, 5):
        base = cpc.query(k, hidden, actions)
        assert base.shape == (2, 9 - k, 7)
        for s in range(actions.shape[1]):
            changed = actions.clone()
            changed[:, s] += 1.0
            moved = (cpc.query(k, hidden, changed)[:, t0] - base[:, t0]).abs().amax().item()
            # actions[:, t0 + 1] was taken at t0 and is already in h_t0; actions[:, t0 + k + 1]
            # is taken at t0 + k, after the predicted step.
            if t0 + 2 <= s <= t0 + k:
                assert moved > 1e-4, (k, s)
            else:
                assert moved == 0.0, (k, s)


def test_pairs_across_an_episode_start_take_no_part():
    cpc = module(steps=3)
    hidden, targets, actions, is_first = inputs(b=2, t=7)  # row 0: an episode starts at 3
    loss, _ = cpc.loss(hidden, targets, actions, is_first)
    # z_3 can only be predicted from tokens of the previous episode, and every prediction
    # from token 2 (the last of that episode) lands in the next one.
    changed_t, changed_h = targets.clone(), hidden.clone()
    changed_t[0, 3] += 10 * torch.randn(TGT)
    changed_h[0, 2] += 10 * torch.randn(HID)
    loss2, _ = cpc.loss(changed_h, changed_t, actions, is_first)
    assert loss2.item() == loss.item()
    # Without the episode start they do count.
    loss3, _ = cpc.loss(changed_h, changed_t, actions, torch.zeros_like(is_first))
    loss4, _ = cpc.loss(hidden, targets, actions, torch.zeros_like(is_first))
    assert abs(loss3.item() - loss4.item()) > 1e-4


def test_pair_valid_marks_pairs_without_an_episode_start_in_between():
    is_first = torch.tensor([[True, False, False, True, False, False]])
    assert pair_valid(is_first, 1).tolist() == [[True, True, False, True, True]]
    assert pair_valid(is_first, 2).tolist() == [[True, False, False, True]]
    assert pair_valid(is_first, 3).tolist() == [[False, False, False]]


@pytest.mark.parametrize("steps", [1, 2, 6])
def test_shapes_metrics_and_step_weights(steps):
    cpc = module(steps=steps)
    hidden, targets, actions, is_first = inputs(b=3, t=7)
    loss, metrics = cpc.loss(hidden, targets, actions, is_first)
    assert loss.shape == () and torch.isfinite(loss)
    names = {f"cpc_{m}_{k}" for m in ("loss", "acc") for k in range(1, steps + 1)}
    assert set(metrics) == names | {"cpc_loss", "cpc_acc"}
    assert not any(v.requires_grad for v in metrics.values())
    for k in range(1, steps + 1):
        assert cpc.key(k, targets).shape == (3, 7 - k, 7)
    want = torch.tensor([0.75**k for k in range(steps)])
    torch.testing.assert_close(cpc.weights, want / want.sum())


def test_too_many_steps_for_the_sequence_is_an_error():
    cpc = module(steps=7)
    with pytest.raises(ValueError, match="at least 8"):
        cpc.loss(*inputs(b=2, t=7))


def test_gradients_reach_hidden_and_targets_and_stay_finite():
    cpc = module(steps=3)
    hidden, targets, actions, is_first = inputs(b=2, t=7)
    hidden.requires_grad_(True)
    targets.requires_grad_(True)
    loss, _ = cpc.loss(hidden, targets, actions, is_first)
    loss.backward()
    assert torch.isfinite(hidden.grad).all() and torch.isfinite(targets.grad).all()
    assert hidden.grad[1].abs().amin(-1).gt(0).all()  # every token of the one-episode row
    assert hidden.grad[0, 2].abs().amax() == 0  # all its pairs cross the start at 3
    assert targets.grad[0, 3].abs().amax() == 0 and targets.grad[0, 0].abs().amax() == 0
    assert targets.grad[1, 1:].abs().amin(-1).gt(0).all()


def test_a_step_with_no_valid_pair_adds_nothing_and_keeps_gradients_finite():
    cpc = module(steps=2)
    hidden, targets, actions, _ = inputs(b=2, t=4)
    hidden.requires_grad_(True)
    is_first = torch.ones(2, 4, dtype=torch.bool)  # every step starts an episode
    loss, metrics = cpc.loss(hidden, targets, actions, is_first)
    loss.backward()
    assert loss.item() == 0.0 and metrics["cpc_acc"].item() == 0.0
    assert torch.isfinite(hidden.grad).all() and hidden.grad.abs().amax() == 0


def test_default_heads_follow_twister():
    cpc = ActionConditionedCPC(hidden_dim=1536, target_dim=1024, action_dim=4)
    assert cpc.steps == 10 and len(cpc.query_heads) == len(cpc.key_heads) == 10
    for k in range(1, 11):
        for head, in_dim in (
            (cpc.query_heads[k - 1], 1536 + (k - 1) * 4),
            (cpc.key_heads[k - 1], 1024),
        ):
            kinds = [type(layer) for layer in head]
            assert kinds == [torch.nn.Linear, torch.nn.ELU, torch.nn.Linear, torch.nn.ELU]
            assert (head[0].in_features, head[0].out_features) == (in_dim, 512)
            assert (head[2].out_features, head[2].bias is not None) == (512, True)
    assert cpc.weights[1].item() == pytest.approx(0.75 * cpc.weights[0].item())
