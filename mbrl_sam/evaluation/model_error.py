"""Model error on held-out real trajectories (never stored in replay): k-step open-loop
prediction error of rewards, latents and observations, and the performance gap between the
return the model predicts for an episode's actions and the return the real environment gave."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from mbrl_sam.agent import WorldModelAgent
from mbrl_sam.environment import Env
from mbrl_sam.evaluation.episodes import episode_over, show_episode, steps_bar
from mbrl_sam.rollout import Rollout


def record_episode(
    agent: WorldModelAgent,
    env: Env,
    seed: int,
    max_steps: int | None = None,
    progress: tqdm | None = None,
) -> dict[str, Tensor]:
    """One greedy episode in replay layout: action[t] led into obs[t], reward[t] came with it.

    `max_steps` agent steps cut the episode; `progress` is advanced by each step's env steps."""
    rollout = Rollout(agent, env)
    obs = rollout.reset(seed)
    steps = {"obs": [obs], "action": [np.zeros(env.spec.action_dim, np.float32)], "reward": [0.0]}
    steps["is_first"], steps["is_terminal"] = [True], [False]
    done = False
    while not done:
        t = rollout.step()
        for key, value in (("obs", t.next_obs), ("action", t.action), ("reward", t.reward)):
            steps[key].append(value)
        steps["is_first"].append(False)
        steps["is_terminal"].append(t.terminated)
        done = episode_over(t, rollout, max_steps)
        if progress is not None:
            progress.update(env.spec.action_repeat)
    return {k: torch.as_tensor(np.asarray(v)) for k, v in steps.items()}


def open_loop_errors(
    agent: WorldModelAgent, episodes: list[dict[str, Tensor]], horizon: int, stride: int = 1
) -> dict[str, list[float]]:
    """Mean error at each of k = 1..horizon steps after the start, over all starts."""
    sums: dict[str, np.ndarray] = {}
    count = 0
    for ep in episodes:
        length = ep["reward"].shape[0]
        starts = torch.arange(0, length - horizon, stride)
        if len(starts) == 0:
            continue
        out = agent.open_loop(ep, starts, horizon)
        errors = {"reward_abs": (out["reward_pred"] - out["reward_true"]).abs()}
        errors.update({k: v for k, v in out.items() if k.endswith("_mse")})
        for key, value in errors.items():
            sums[key] = sums.get(key, 0) + value.sum(0).cpu().double().numpy()
        count += len(starts)
    if count == 0:
        raise ValueError(f"no episode is longer than horizon={horizon}")
    return {key: (value / count).tolist() for key, value in sums.items()}


def performance_gap(agent: WorldModelAgent, episodes: list[dict[str, Tensor]]) -> dict[str, Any]:
    """Return predicted open loop from each episode's first state for its real actions, against
    the real return (undiscounted, over the whole episode)."""
    predicted, real = [], []
    for ep in episodes:
        horizon = ep["reward"].shape[0] - 1
        out = agent.open_loop(ep, torch.zeros(1, dtype=torch.long), horizon)
        predicted.append(float(out["reward_pred"].sum()))
        real.append(float(out["reward_true"].sum()))
    diff = np.asarray(predicted) - np.asarray(real)
    return {
        "predicted_returns": predicted,
        "real_returns": real,
        "gap": float(diff.mean()),
        "abs_gap": float(np.abs(diff).mean()),
    }


def measure_model_error(
    agent: WorldModelAgent,
    env: Env,
    episodes: int,
    seed: int,
    horizon: int,
    stride: int = 4,
    max_steps: int | None = None,
    progress: bool = False,
    on_episode: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Record fresh greedy episodes, then their k-step errors and the performance gap.

    Episodes stop after `max_steps` agent steps if not before; `progress` shows their env
    steps; `on_episode` gets the result over the episodes finished so far after each one."""
    recorded: list[dict[str, Tensor]] = []
    summary = None
    with steps_bar(env, episodes, "model error", progress, max_steps) as steps:
        for i in range(episodes):
            last = float(recorded[-1]["reward"].sum()) if recorded else None
            show_episode(steps, i, episodes, last)
            recorded.append(record_episode(agent, env, seed + i, max_steps, steps))
            summary = None  # (episodes no longer than the horizon have no k-step errors yet)
            if on_episode is not None and any(len(ep["reward"]) > horizon for ep in recorded):
                summary = _summary(agent, recorded, horizon, stride)
                on_episode(summary)
        show_episode(steps, episodes - 1, episodes, float(recorded[-1]["reward"].sum()))
        steps.total = steps.n
    return summary or _summary(agent, recorded, horizon, stride)


def _summary(
    agent: WorldModelAgent, recorded: list[dict[str, Tensor]], horizon: int, stride: int
) -> dict[str, Any]:
    return {
        "horizon": horizon,
        "open_loop": open_loop_errors(agent, recorded, horizon, stride),
        "performance_gap": performance_gap(agent, recorded),
        "lengths": [int(ep["reward"].shape[0]) - 1 for ep in recorded],
    }
