"""The one loop that plays whole episodes of an agent in an environment, for evaluation, videos,
the value gap and the model error; each use observes the steps through its callbacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from mbrl_sam.agent import Agent
from mbrl_sam.environment import Env, EnvSpec, random_action
from mbrl_sam.progress import bar
from mbrl_sam.rollout import Rollout, Transition


class EpisodeObserver(Protocol):
    """What a use of the episode loop records: called after each reset, after each step, and
    at each episode's end (its return value joins the episode's result)."""

    def start(self, index: int, rollout: Rollout) -> None:
        """Episode `index` has been reset; `rollout.obs` is its first observation."""
        ...

    def step(self, index: int, t: Transition) -> None:
        """Episode `index` took step `t`."""
        ...

    def end(self, index: int, rollout: Rollout, t: Transition) -> dict[str, Any]:
        """Episode `index` ended with step `t`; what to add to its result."""
        ...


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
    observer: EpisodeObserver | None = None,
    explore: bool = False,
    max_steps: int | None = None,
    progress: bool = False,
    desc: str = "eval",
    on_episode: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Play `episodes` episodes (episode i reset with seed + i), each until it ends or reaches
    `max_steps` agent steps (a truncation), shown to `observer`; per episode its return, length
    and whether it terminated, plus what the observer adds. `on_episode(results so far)` runs
    after each; `progress` shows a bar of env steps."""
    rollout, results = Rollout(agent, env, explore), []
    with steps_bar(env, episodes, desc, progress, max_steps) as steps:
        for i in range(episodes):
            show_episode(steps, i, episodes, results[-1]["return"] if results else None)
            rollout.reset(seed + i)
            if observer is not None:
                observer.start(i, rollout)
            done = False
            while not done:
                t = rollout.step()
                if observer is not None:
                    observer.step(i, t)
                steps.update(env.spec.action_repeat)
                done = t.done or (max_steps is not None and rollout.length >= max_steps)
            result = {"return": rollout.ret, "length": rollout.length, "terminated": t.terminated}
            if observer is not None:
                result.update(observer.end(i, rollout, t))
            results.append(result)
            if on_episode is not None:
                on_episode(results)
        show_episode(steps, episodes - 1, episodes, results[-1]["return"])
        steps.total = steps.n  # episodes that ended early leave the total short of it
    return results


class Frames:
    """Records the first episode's rendered frames into a list."""

    def __init__(self, env: Env, frames: list[np.ndarray]) -> None:
        self.env, self.frames = env, frames

    def start(self, index: int, rollout: Rollout) -> None:
        """The first frame, after the reset."""
        self._frame(index)

    def step(self, index: int, t: Transition) -> None:
        """A frame after each step."""
        self._frame(index)

    def _frame(self, index: int) -> None:
        if index == 0:
            self.frames.append(self.env.render())

    def end(self, index: int, rollout: Rollout, t: Transition) -> dict[str, Any]:
        """Nothing to add."""
        return {}


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
    observer = Frames(env, frames) if frames is not None else None
    return play_episodes(
        agent, env, episodes, seed, observer, explore, progress=progress, on_episode=on_episode
    )


class UniformRandom:
    """Acts with uniform random actions: the floor a task's learned returns are read against."""

    def __init__(self, spec: EnvSpec, seed: int) -> None:
        self.spec, self.rng = spec, np.random.default_rng(seed)

    def act(self, obs: np.ndarray, state: Any, is_first: bool, explore: bool) -> tuple[Any, None]:
        """A uniform random action, whatever it sees."""
        return random_action(self.spec, self.rng), None


def random_returns(
    env: Env, episodes: int, reset_seed: int, action_seed: int, progress: bool = False
) -> list[float]:
    """The returns of `episodes` episodes of uniform random actions drawn from `action_seed`,
    episode i reset with `reset_seed` + i."""
    actor = UniformRandom(env.spec, action_seed)
    # Playing needs only act(), which UniformRandom has.
    results = play_episodes(actor, env, episodes, reset_seed, progress=progress, desc="random")  # type: ignore[arg-type]
    return [r["return"] for r in results]
