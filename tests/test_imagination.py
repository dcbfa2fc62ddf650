"""The one in-model rollout against hand-computed trajectories and returns."""

import pytest
import torch

from mbrl_sam.imagination import discounted_value, expand_state, imagine
from mbrl_sam.planners.model_value import model_value, policy_proposals


class Counter:
    """A latent model on numbers: the state adds the action; the reward of a step is the
    state reached; it goes on with probability 0.6 below 3, 0.4 from there."""

    def features(self, state: torch.Tensor) -> torch.Tensor:
        return state

    def imagine_step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state + action

    def outcomes(self, feat: torch.Tensor, action: torch.Tensor) -> tuple:
        return feat[1:, :, 0], 0.4 + 0.2 * (feat[1:, :, 0] < 3).float()


def test_given_actions_roll_the_states_and_their_outcomes():
    start = torch.tensor([[0.0], [1.0]])
    actions = torch.tensor([[[1.0], [1.0]], [[2.0], [0.5]]])  # (H=2, N=2, A=1)
    traj = imagine(Counter(), start, 2, actions=actions)
    torch.testing.assert_close(traj.feat[:, :, 0], torch.tensor([[0, 1], [1, 2], [3, 2.5]]))
    torch.testing.assert_close(traj.reward, torch.tensor([[1, 2], [3, 2.5]]))
    torch.testing.assert_close(traj.cont, torch.tensor([[0.6, 0.6], [0.4, 0.6]]))


def test_a_policy_acts_on_each_states_features_and_its_outputs_are_kept():
    def policy(feat):
        return torch.ones_like(feat), {"seen": feat[:, 0].clone()}

    traj = imagine(Counter(), torch.zeros(3, 1), 4, policy=policy, outcomes=False)
    assert traj.reward is None and traj.action.shape == (4, 3, 1)
    torch.testing.assert_close(traj.extras["seen"], torch.arange(4.0)[:, None].expand(4, 3))


def test_it_takes_a_policy_or_actions():
    with pytest.raises(ValueError, match="policy or actions"):
        imagine(Counter(), torch.zeros(1, 1), 2)


def test_discounted_value_by_hand():
    reward = torch.tensor([[1.0], [2.0], [4.0]])
    cont = torch.tensor([[1.0], [0.5], [1.0]])
    g = 0.9
    expected = 1 + g * 2 + g * g * 0.5 * 4 + g**3 * 0.5 * 10
    value = discounted_value(reward, cont, torch.tensor([10.0]), g)
    torch.testing.assert_close(value, torch.tensor([expected]))


def test_model_value_stops_at_a_predicted_end_only_when_hard():
    actions = torch.full((1, 3, 1), 2.0)  # states 2, 4, 6; continues 0.6, 0.4, 0.4
    ten = lambda feat: torch.full(feat.shape[:1], 10.0)  # noqa: E731
    soft = model_value(Counter(), torch.zeros(1, 1), actions, 1.0, ten)
    hard = model_value(Counter(), torch.zeros(1, 1), actions, 1.0, ten, hard_continue=True)
    torch.testing.assert_close(soft, torch.tensor([2 + 0.6 * 4 + 0.24 * 6 + 0.096 * 10]))
    torch.testing.assert_close(hard, torch.tensor([2.0 + 4.0]))  # continues 1, 0, 0
    half = model_value(Counter(), torch.zeros(1, 1), torch.full((1, 2, 1), 1.0), 0.5, ten)
    torch.testing.assert_close(half, torch.tensor([1 + 0.3 * 2 + 0.09 * 10]))


def test_policy_proposals_are_sequences_from_one_state():
    def policy(feat):
        return feat + 1, {}

    proposals = policy_proposals(Counter(), torch.ones(1, 1), 5, 3, policy)
    assert proposals.shape == (5, 3, 1)
    torch.testing.assert_close(proposals[0, :, 0], torch.tensor([2.0, 4.0, 8.0]))
    assert policy_proposals(Counter(), torch.ones(1, 1), 0, 3, policy) is None
    state = expand_state({"a": torch.ones(1, 2)}, 4)
    assert state["a"].shape == (4, 2)
