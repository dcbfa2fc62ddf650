"""Rolling a policy, or given actions, through a latent model: the one loop behind the
actor-critic's imagination, planning's value estimates and policy proposals, and open-loop
prediction of real episodes (`mbrl_sam/evaluation/model_error.py`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

# A latent state: one tensor (TD-MPC's z) or named parts (an RSSM's deter and stoch).
State = Any
# Features (N, F) -> the action (N, A) given to the model and per-step outputs to keep.
Policy = Callable[[Tensor], tuple[Tensor, dict[str, Tensor]]]


@runtime_checkable
class LatentModel(Protocol):
    """A world model that can imagine: step a latent state with an action, read features from
    it, and predict what each imagined transition earns."""

    def features(self, state: State) -> Tensor:
        """The features actor, critic and planner read from a latent state."""
        ...

    def imagine_step(self, state: State, action: Tensor) -> State:
        """The next latent state after `action`, without an observation."""
        ...

    def outcomes(self, feat: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Reward and continue probability (H, N) of the transitions between the features
        (H + 1, N, F) of consecutive states, taking `action` (H, N, A)."""
        ...


@runtime_checkable
class EpisodeModel(LatentModel, Protocol):
    """A latent model that can follow a real episode, so its open-loop predictions from any
    step can be held against what happened."""

    def observe_episode(self, episode: dict[str, Tensor]) -> State:
        """The posterior latent state at each step of a real episode (a batch of T states)."""
        ...

    def start_states(self, posterior: State, episode: dict[str, Tensor], starts: Tensor) -> State:
        """Imagination start states at steps `starts`, with whatever context they need."""
        ...

    def observation_error(self, feat: Tensor, obs: Tensor) -> Tensor | None:
        """Per-sample squared error (N,) of the observations predicted from `feat` (N, F);
        None when the model predicts none."""
        ...


@dataclass
class Imagined:
    """A rollout of N trajectories over H steps in a latent model."""

    feat: Tensor  # (H + 1, N, F): the start state's features, then each imagined state's
    action: Tensor  # (H, N, A): what the model received
    reward: Tensor | None = None  # (H, N); None when outcomes were not asked for
    cont: Tensor | None = None  # (H, N): probability that the episode goes on
    extras: dict[str, Tensor] = field(default_factory=dict)  # the policy's outputs, (H, N, ...)


def map_state(state: State, fn: Callable[[Tensor], Tensor]) -> State:
    """`fn` applied to a state's tensor, or to each of its named parts."""
    if isinstance(state, dict):
        return {k: fn(v) for k, v in state.items()}
    return fn(state)


def expand_state(state: State, count: int) -> State:
    """One state (batch 1) as `count` copies, without copying memory."""
    return map_state(state, lambda v: v.expand(count, *v.shape[1:]))


def imagine(
    model: LatentModel,
    start: State,
    horizon: int,
    policy: Policy | None = None,
    actions: Tensor | None = None,
    outcomes: bool = True,
) -> Imagined:
    """Roll `horizon` steps from `start` (N states), acting with `policy` on each state's
    features or taking the given `actions` (H, N, A); `outcomes` adds rewards and continues."""
    if (policy is None) == (actions is None):
        raise ValueError("imagine takes a policy or actions, not both or neither")
    state = start
    feats, taken, extras = [model.features(state)], [], []
    for t in range(horizon):
        if policy is not None:
            action, extra = policy(feats[-1])
            extras.append(extra)
        else:
            action = actions[t]
        state = model.imagine_step(state, action)
        feats.append(model.features(state))
        taken.append(action)
    traj = Imagined(torch.stack(feats), torch.stack(taken))
    if extras and extras[0]:
        traj.extras = {k: torch.stack([e[k] for e in extras]) for k in extras[0]}
    if outcomes:
        traj.reward, traj.cont = model.outcomes(traj.feat, traj.action)
    return traj


def discounted_value(reward: Tensor, cont: Tensor, end_value: Tensor, discount: float) -> Tensor:
    """sum_t w_t r_t + w_H V with w_0 = 1, w_{t+1} = w_t * discount * c_t: the model return of
    (H, N) rewards and continues, closed by the value (N,) of the last state."""
    ret = torch.zeros_like(end_value)
    weight = torch.ones_like(end_value)
    for t in range(reward.shape[0]):
        ret = ret + weight * reward[t]
        weight = weight * discount * cont[t]
    return ret + weight * end_value
