"""Value-estimation gap: the agent's own value of real states against the discounted return it
then actually obtained from them in the real environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mbrl_sam.agent import WorldModelAgent
from mbrl_sam.environment import Env
from mbrl_sam.evaluation.episodes import play_episodes
from mbrl_sam.rollout import Rollout, Transition


def discounted_returns(rewards: np.ndarray, discount: float, tail: float = 0.0) -> np.ndarray:
    """G_t = r_t + discount * G_{t+1}, with G_T = tail; r_t is the reward after acting at t."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = float(tail)
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + discount * running
        out[t] = running
    return out


def gap_statistics(values: np.ndarray, returns: np.ndarray) -> dict[str, float]:
    """Bias (mean of value - return), mean absolute gap and RMSE."""
    diff = np.asarray(values, dtype=np.float64) - np.asarray(returns, dtype=np.float64)
    return {
        "bias": float(diff.mean()),
        "abs_gap": float(np.abs(diff).mean()),
        "rmse": float(np.sqrt((diff**2).mean())),
    }


def value_gap(
    episodes: list[dict[str, Any]], discount: float, tail: str = "bootstrap"
) -> dict[str, Any]:
    """Gap statistics per episode and over all states.

    Episodes cut by a time limit have no real return beyond the cut: `tail="bootstrap"`
    closes them with the agent's value of the final state (discounted), `"zero"` with 0
    (which makes late values look too high).
    """
    if tail not in ("bootstrap", "zero"):
        raise ValueError(f"tail={tail!r}; choose bootstrap or zero")
    per_episode, all_values, all_returns = [], [], []
    for ep in episodes:
        end = ep["final"] if tail == "bootstrap" and not ep["terminated"] else 0.0
        returns = discounted_returns(np.asarray(ep["rewards"]), discount, end)
        per_episode.append(gap_statistics(np.asarray(ep["values"]), returns))
        all_values.extend(ep["values"])
        all_returns.extend(returns)
    overall = gap_statistics(np.asarray(all_values), np.asarray(all_returns))
    overall["mean_value"] = float(np.mean(all_values))
    overall["mean_return"] = float(np.mean(all_returns))
    return {"overall": overall, "episodes": per_episode, "tail": tail, "discount": discount}


def measure_value_gap(
    agent: WorldModelAgent,
    env: Env,
    episodes: int,
    seed: int,
    tail: str = "bootstrap",
    max_steps: int | None = None,
    progress: bool = False,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Play `episodes` greedy episodes and report the agent's value-estimation gap on them:
    per step the agent's value of the state it acted in against the discounted return that
    followed. Episodes stop after `max_steps` agent steps if not before; `progress` shows their
    env steps; `on_episode` gets the result over the episodes finished so far after each one."""

    def summarise(results: list[dict[str, Any]]) -> None:
        if on_episode is not None:
            on_episode(_summary(results, agent.discount, tail))

    recorder, name = ValueRecorder(agent), "value gap"
    results = play_episodes(
        agent, env, episodes, seed, recorder, False, max_steps, progress, name, summarise
    )
    return _summary(results, agent.discount, tail)


class ValueRecorder:
    """Per step the agent's value of the state it acted in and the reward; at the end the
    value of the final state."""

    def __init__(self, agent: WorldModelAgent) -> None:
        self.agent = agent
        self.played: list[dict[str, list[float]]] = []

    def start(self, index: int, rollout: Rollout) -> None:
        """A new episode."""
        self.played.append({"values": [], "rewards": []})

    def step(self, index: int, t: Transition) -> None:
        """The value of the state acted in, and the reward that followed."""
        self.played[index]["values"].append(self.agent.state_value(t.obs, t.act_state))
        self.played[index]["rewards"].append(t.reward)

    def end(self, index: int, rollout: Rollout, t: Transition) -> dict[str, Any]:
        """The episode's values and rewards, and the final state's value."""
        # Filtering the final state in needs one more act() (its action is unused).
        rollout.act()
        final = 0.0 if t.terminated else self.agent.state_value(rollout.obs, rollout.act_state)
        return {**self.played[index], "final": final}


def _summary(played: list[dict[str, Any]], discount: float, tail: str) -> dict[str, Any]:
    result = value_gap(played, discount, tail)
    result["real_returns"] = [float(np.sum(ep["rewards"])) for ep in played]
    result["lengths"] = [len(ep["rewards"]) for ep in played]
    return result
