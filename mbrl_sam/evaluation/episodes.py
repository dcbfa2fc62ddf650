"""Run whole evaluation episodes of an agent in an environment."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from mbrl_sam.agent import Agent
from mbrl_sam.environment import Env


def run_episodes(
    agent: Agent,
    env: Env,
    episodes: int,
    seed: int,
    explore: bool = False,
    progress: bool = False,
    frames: list[np.ndarray] | None = None,
) -> list[dict[str, float]]:
    """Play `episodes` episodes (episode i reset with seed + i); their returns and lengths.

    Given a `frames` list, the first episode's rendered frames are appended to it.
    """
    results = []
    for i in tqdm(range(episodes), desc="eval episodes", disable=not progress, leave=False):
        obs = env.reset(seed=seed + i)
        record = frames is not None and i == 0
        if record:
            frames.append(env.render())
        state, is_first, done, total, length = None, True, False, 0.0, 0
        while not done:
            action, state = agent.act(obs, state, is_first, explore=explore)
            obs, reward, terminated, truncated = env.step(action)
            if record:
                frames.append(env.render())
            total += float(reward)
            length += 1
            is_first, done = False, terminated or truncated
        results.append({"return": total, "length": length})
    return results
