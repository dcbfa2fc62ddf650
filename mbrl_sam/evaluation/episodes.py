"""The one loop that plays whole episodes of an agent in an environment, for evaluation, videos,
the value gap and the model error; each use observes the steps through its callbacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from mbrl_sam.agent import Agent
from mbrl_sam.environment import Env
from mbrl_sam.progress import bar
from mbrl_sam.rollout import Rollout, Transition

# on_start(index, rollout) after the reset; on_step(index, transition) after each step;
# on_end(index, rollout, last transition) -> what to add to the episode's result.
OnStart = Callable[[int, Rollout], None]
OnStep = Callable[[int, Transition], None]
OnEnd = Callable[[int, Rollout, Transition], dict[str, Any]]


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


def show_episode(progress: tqdm, i: int, episodes: int, last_return: float | None) -> None:
    """Show on `progress` that episode i (0-based) of `episodes` is under way, and the return
    of the last finished one."""
    postfix = {"episode": f"{i + 1}/{episodes}"}
    if last_return is not None:
        postfix["return"] = f"{last_return:.1f}"
    progress.set_postfix(postfix, refresh=False)


def play_episodes(
    agent: Agent,
    env: Env,
    episodes: int,
    seed: int,
    explore: bool = False,
    max_steps: int | None = None,
    progress: bool = False,
    desc: str = "eval",
    on_start: OnStart | None = None,
    on_step: OnStep | None = None,
    on_end: OnEnd | None = None,
    on_episode: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Play `episodes` episodes (episode i reset with seed + i), each until it ends or reaches
    `max_steps` agent steps (a truncation); per episode its return, length and whether it
    terminated, plus what `on_end` returns. `on_episode(results so far)` runs after each;
    `progress` shows a bar of env steps."""
    rollout, results = Rollout(agent, env, explore), []
    with steps_bar(env, episodes, desc, progress, max_steps) as steps:
        for i in range(episodes):
            show_episode(steps, i, episodes, results[-1]["return"] if results else None)
            rollout.reset(seed + i)
            if on_start is not None:
                on_start(i, rollout)
            done = False
            while not done:
                t = rollout.step()
                if on_step is not None:
                    on_step(i, t)
                steps.update(env.spec.action_repeat)
                done = t.done or (max_steps is not None and rollout.length >= max_steps)
            result = {"return": rollout.ret, "length": rollout.length, "terminated": t.terminated}
            if on_end is not None:
                result.update(on_end(i, rollout, t))
            results.append(result)
            if on_episode is not None:
                on_episode(results)
        show_episode(steps, episodes - 1, episodes, results[-1]["return"])
        steps.total = steps.n  # episodes that ended early leave the total short of it
    return results


def run_episodes(
    agent: Agent,
    env: Env,
    episodes: int,
    seed: int,
    explore: bool = False,
    progress: bool = False,
    frames: list[np.ndarray] | None = None,
    on_episode: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate: play `episodes` episodes; their returns and lengths. Given a `frames` list,
    the first episode's rendered frames are appended to it."""

    def render(i: int, *_: object) -> None:
        if frames is not None and i == 0:
            frames.append(env.render())

    return play_episodes(
        agent,
        env,
        episodes,
        seed,
        explore,
        progress=progress,
        on_start=render,
        on_step=render,
        on_episode=on_episode,
    )
