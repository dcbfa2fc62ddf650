"""One environment's stream of experience into one replay buffer.

The collector plays the agent (after a prefill of uniform random actions) step by step, writes
every step to replay, starts each episode from its own seed, and keeps the episode in progress
across a checkpoint. A run with several seeds would have one collector per env and seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mbrl_sam import seeds
from mbrl_sam.agent import Agent
from mbrl_sam.environment import Env, EnvSpec, random_action
from mbrl_sam.replay import SequenceReplay
from mbrl_sam.replay_store import ChunkStore
from mbrl_sam.rollout import Rollout


def prefill_steps(prefill: int | str, spec: EnvSpec) -> int:
    """Agent steps of uniform random actions before the agent acts and learns: `prefill` env
    steps, or auto (TD-MPC2's seed phase: five episodes, at least 1,000 agent steps)."""
    if prefill == "auto":
        return max(1000, 5 * (spec.episode_length or 0))
    return int(prefill) // spec.action_repeat


class Collector:
    """Steps one env with the agent's exploring actions (random ones in the prefill) and writes
    each step to replay, mirrored on disk when given a chunk store."""

    def __init__(
        self,
        agent: Agent,
        env: Env,
        replay: SequenceReplay,
        seed: int,
        prefill: int,
        store: ChunkStore | None = None,
    ) -> None:
        """`seed` (the run's) seeds the prefill's actions and each episode's reset; `prefill`
        counts agent steps (`prefill_steps`)."""
        self.env, self.replay, self.store = env, replay, store
        self.seed, self.prefill = int(seed), int(prefill)
        self.rollout = Rollout(agent, env, explore=True)
        self.rng = np.random.default_rng(seed)  # the prefill's actions, and only they
        self.agent_steps = 0
        self.episodes = 0  # finished ones
        self.last_return = float("nan")
        self._saved_episode: dict[str, Any] | None = None  # a checkpoint's episode in progress

    @property
    def env_steps(self) -> int:
        """Environment steps so far, counted with action repeat."""
        return self.agent_steps * self.env.spec.action_repeat

    def start(self) -> None:
        """Continue a checkpoint's episode in progress, or start a new episode."""
        if not self._restore_episode():
            self._reset_episode()

    def step(self) -> dict[str, float] | None:
        """One agent step, stored in replay; when it ends the episode, a new one starts and the
        finished one's return and length are returned."""
        prefill = self.agent_steps < self.prefill
        step = self.rollout.step(random_action(self.env.spec, self.rng) if prefill else None)
        self.agent_steps += 1
        self._store(step.next_obs, step.action, step.reward, False, step.terminated)
        if not step.done:
            return None
        self.episodes += 1
        self.last_return = self.rollout.ret
        finished = {"return": self.rollout.ret, "length": self.rollout.length}
        self._reset_episode()
        return finished

    def _store(
        self, obs: np.ndarray, action: np.ndarray, reward: float, first: bool, terminal: bool
    ) -> None:
        self.replay.add(obs, action, reward, first, terminal)
        if self.store is not None:
            self.store.write_due()

    def _reset_episode(self) -> None:
        obs = self.rollout.reset(seeds.training_episode(self.seed, self.episodes))
        self._store(obs, np.zeros(self.env.spec.action_dim, np.float32), 0.0, True, False)

    def _restore_episode(self) -> bool:
        """Continue a checkpoint's episode in progress where it stopped; False when there is
        none, or when the env cannot be brought back (then a new episode starts)."""
        saved, self._saved_episode = self._saved_episode, None
        records = self.replay.current_episode() if saved is not None else None
        if records is None:
            return False
        seed = seeds.training_episode(self.seed, self.episodes)
        if self.rollout.restore(seed, records["action"][1:], records["obs"][-1], saved):
            return True
        print("Note: the env did not replay the episode in progress exactly; a new one starts.")
        return False

    def state_dict(self) -> dict[str, Any]:
        """Counts, the prefill generator, the episode in progress (the agent's carried state and
        tallies; its steps are in replay) and the last episode's return."""
        return {
            "agent_steps": self.agent_steps,
            "episodes": self.episodes,
            "rng": self.rng.bit_generator.state,
            "episode": self.rollout.state_dict(),
            "last_return": self.last_return,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`; `start()` then continues the episode in progress."""
        self.agent_steps, self.episodes = int(state["agent_steps"]), int(state["episodes"])
        self.rng.bit_generator.state = state["rng"]
        self._saved_episode = state.get("episode")
        self.last_return = state.get("last_return", float("nan"))
