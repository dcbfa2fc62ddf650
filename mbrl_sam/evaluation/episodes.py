"""Run whole evaluation episodes of an agent in an environment, with progress in env steps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from mbrl_sam.agent import Agent
from mbrl_sam.environment import Env
from mbrl_sam.progress import bar
from mbrl_sam.rollout import Rollout, Transition


def steps_bar(
    env: Env, episodes: int, desc: str, enabled: bool, max_steps: int | None = None
) -> tqdm:
    """A progress bar over the env steps of `episodes` episodes (with a total when the env's
    episode length or `max_steps`, in agent steps, bounds them)."""
    length = getattr(env.spec, "episode_length", None)
    if max_steps is not None:
        length = max_steps if length is None else min(length, max_steps)
    total = None if length is None else episodes * length * env.spec.action_repeat
    return bar(total, desc, "step", enabled)


def episode_over(t: Transition, rollout: Rollout, max_steps: int | None = None) -> bool:
    """Whether the episode ended with `t`, or reached `max_steps` agent steps (a truncation)."""
    return t.done or (max_steps is not None and rollout.length >= max_steps)


def show_episode(progress: tqdm, i: int, episodes: int, last_return: float | None) -> None:
    """Show on `progress` that episode i (0-based) of `episodes` is under way, and the return
    of the last finished one."""
    postfix = {"episode": f"{i + 1}/{episodes}"}
    if last_return is not None:
        postfix["return"] = f"{last_return:.1f}"
    progress.set_postfix(postfix, refresh=False)


def run_episodes(
    agent: Agent,
    env: Env,
    episodes: int,
    seed: int,
    explore: bool = False,
    progress: bool = False,
    frames: list[np.ndarray] | None = None,
    on_episode: Callable[[list[dict[str, float]]], None] | None = None,
) -> list[dict[str, float]]:
    """Play `episodes` episodes (episode i reset with seed + i); their returns and lengths.

    Given a `frames` list, the first episode's rendered frames are appended to it. `progress`
    shows a bar of env steps; `on_episode(results so far)` runs after each finished episode.
    """
    rollout, results = Rollout(agent, env, explore), []
    repeat = env.spec.action_repeat
    with steps_bar(env, episodes, "eval", progress) as steps:
        for i in range(episodes):
            show_episode(steps, i, episodes, results[-1]["return"] if results else None)
            rollout.reset(seed + i)
            record = frames is not None and i == 0
            if record:
                frames.append(env.render())
            done = False
            while not done:
                done = rollout.step().done
                steps.update(repeat)
                if record:
                    frames.append(env.render())
            results.append({"return": rollout.ret, "length": rollout.length})
            if on_episode is not None:
                on_episode(results)
        show_episode(steps, episodes - 1, episodes, results[-1]["return"])
        steps.total = steps.n  # episodes that ended early leave the total short of it
    return results
