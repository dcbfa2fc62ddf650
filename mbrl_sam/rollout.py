"""An agent stepping an environment one step at a time, carrying its state between steps.

Training's collection and the episode loop of evaluation, videos, the value gap and the model
error (`mbrl_sam/evaluation/episodes.py`) all step a `Rollout`, so acting, the agent's carried
state and the end-of-episode rule are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mbrl_sam.agent import Agent
from mbrl_sam.environment import Env


@dataclass(frozen=True)
class Transition:
    """One agent step: what it saw and carried, what it did, what followed."""

    obs: np.ndarray  # the observation acted on
    act_state: Any  # the agent's state after acting on `obs` (what `state_value` takes)
    action: np.ndarray
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool

    @property
    def done(self) -> bool:
        """The episode ended with this step."""
        return self.terminated or self.truncated


class Rollout:
    """An agent playing one episode at a time in an env; `reset` starts one, `step` advances it."""

    def __init__(self, agent: Agent, env: Env, explore: bool = False) -> None:
        self.agent, self.env, self.explore = agent, env, explore
        self.obs: np.ndarray | None = None
        self.act_state: Any = None
        self.is_first = True
        self.ret, self.length = 0.0, 0

    def reset(self, seed: int) -> np.ndarray:
        """Start an episode with `seed`; return its first observation."""
        self.obs = self.env.reset(seed=seed)
        self.act_state, self.is_first = None, True
        self.ret, self.length = 0.0, 0
        return self.obs

    def act(self) -> np.ndarray:
        """The agent's action for the current observation (its carried state moves on)."""
        if self.obs is None:
            raise RuntimeError("call reset() before act() or step()")
        action, self.act_state = self.agent.act(
            self.obs, self.act_state, self.is_first, explore=self.explore
        )
        return action

    def step(self, action: np.ndarray | None = None) -> Transition:
        """One env step with `action`, or with the agent's own when None."""
        if action is None:
            action = self.act()
        obs = self.obs
        next_obs, reward, terminated, truncated = self.env.step(action)
        self.obs, self.is_first = next_obs, False
        self.ret += float(reward)
        self.length += 1
        return Transition(
            obs, self.act_state, action, float(reward), next_obs, terminated, truncated
        )

    def state_dict(self) -> dict[str, Any]:
        """The episode in progress apart from the env: the agent's carried state and tallies."""
        return {
            "act_state": self.act_state,
            "is_first": self.is_first,
            "ret": self.ret,
            "length": self.length,
        }

    def restore(self, seed: int, actions: np.ndarray, obs: np.ndarray, state: dict) -> bool:
        """Bring back an episode in progress: reset with its `seed` and replay its `actions`,
        which must lead to `obs`; then take the carried `state`. False, with nothing restored,
        when the env ends elsewhere (it is not deterministic given seed and actions)."""
        current = self.env.reset(seed=seed)
        for action in actions:
            current, _, terminated, truncated = self.env.step(action)
            if terminated or truncated:
                return False
        if not np.array_equal(current, obs):
            return False
        self.obs, self.act_state = current, state["act_state"]
        self.is_first, self.ret, self.length = state["is_first"], state["ret"], state["length"]
        return True
