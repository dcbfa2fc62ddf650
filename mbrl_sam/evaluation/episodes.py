"""Run whole evaluation episodes of an agent in an environment."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from mbrl_sam.agent import Agent
from mbrl_sam.environment import Env
from mbrl_sam.rollout import Rollout


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
    rollout, results = Rollout(agent, env, explore), []
    for i in tqdm(range(episodes), desc="eval episodes", disable=not progress, leave=False):
        rollout.reset(seed + i)
        record = frames is not None and i == 0
        if record:
            frames.append(env.render())
        done = False
        while not done:
            done = rollout.step().done
            if record:
                frames.append(env.render())
        results.append({"return": rollout.ret, "length": rollout.length})
    return results
