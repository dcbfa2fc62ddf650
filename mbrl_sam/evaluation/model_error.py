"""Model error on held-out real trajectories (never stored in replay): k-step open-loop
prediction error of rewards, latents and observations, and the performance gap between the
return the model predicts for an episode's actions and the return the real environment gave."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mbrl_sam.agent import WorldModelAgent
from mbrl_sam.environment import Env
from mbrl_sam.evaluation.episodes import play_episodes
from mbrl_sam.imagination import EpisodeModel, imagine
from mbrl_sam.nets import eval_mode
from mbrl_sam.rollout import Rollout, Transition


def record_episodes(
    agent: WorldModelAgent,
    env: Env,
    episodes: int,
    seed: int,
    max_steps: int | None = None,
    progress: bool = False,
    on_episode: Callable[[list[dict[str, Tensor]]], None] | None = None,
) -> list[dict[str, Tensor]]:
    """Greedy episodes in replay layout (action[t] led into obs[t], reward[t] came with it),
    each cut after `max_steps` agent steps; `on_episode(recorded so far)` after each."""

    def report(results: list[dict[str, Any]]) -> None:
        if on_episode is not None:
            on_episode([r["episode"] for r in results])

    recorder, name = EpisodeRecorder(env.spec.action_dim), "model error"
    results = play_episodes(
        agent, env, episodes, seed, recorder, False, max_steps, progress, name, report
    )
    return [r["episode"] for r in results]


class EpisodeRecorder:
    """An episode's steps in replay layout, as tensors at its end."""

    def __init__(self, action_dim: int) -> None:
        self.action_dim = action_dim
        self.recorded: list[dict[str, list]] = []

    def start(self, index: int, rollout: Rollout) -> None:
        """The first observation, with no action or reward before it."""
        zero = np.zeros(self.action_dim, np.float32)
        first = {"obs": [rollout.obs], "action": [zero], "reward": [0.0]}
        self.recorded.append({**first, "is_first": [True], "is_terminal": [False]})

    def step(self, index: int, t: Transition) -> None:
        """The observation reached, the action that led there and the reward with it."""
        values = (t.next_obs, t.action, t.reward, False, t.terminated)
        for key, value in zip(("obs", "action", "reward", "is_first", "is_terminal"), values):
            self.recorded[index][key].append(value)

    def end(self, index: int, rollout: Rollout, t: Transition) -> dict[str, Any]:
        """The episode as tensors."""
        steps = self.recorded[index]
        return {"episode": {k: torch.as_tensor(np.asarray(v)) for k, v in steps.items()}}


def record_episode(
    agent: WorldModelAgent, env: Env, seed: int, max_steps: int | None = None
) -> dict[str, Tensor]:
    """One greedy episode in replay layout (see `record_episodes`)."""
    return record_episodes(agent, env, 1, seed, max_steps)[0]


@torch.no_grad()
def open_loop(
    model: EpisodeModel, episode: dict[str, Tensor], starts: Tensor, horizon: int
) -> dict[str, Tensor]:
    """From the posterior at each start, the model rolled `horizon` steps with the episode's
    real actions (N, H each): reward_pred against reward_true, latent_mse of the imagined
    features against the posterior's, and obs_mse when the model decodes observations."""
    device = next(model.parameters()).device
    ep = {k: v.to(device) for k, v in episode.items()}
    steps = starts.to(device)[:, None] + torch.arange(1, horizon + 1, device=device)  # (N, H)
    with eval_mode(model):
        posterior = model.observe_episode(ep)
        start = model.start_states(posterior, ep, starts.to(device))
        actions = ep["action"][steps.T].float()
        traj = imagine(model, start, horizon, actions=actions)
        target = model.features(posterior)[steps.T]
        out = {
            "reward_pred": traj.reward.T,
            "reward_true": ep["reward"][steps].float(),
            "latent_mse": (traj.feat[1:] - target).pow(2).mean(-1).T,
        }
        obs_error = model.observation_error(
            traj.feat[1:].flatten(0, 1), ep["obs"][steps.T.flatten()]
        )
        if obs_error is not None:
            out["obs_mse"] = obs_error.view(horizon, -1).T
    return out


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
        out = open_loop(agent.world_model, ep, starts, horizon)
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
        out = open_loop(agent.world_model, ep, torch.zeros(1, dtype=torch.long), horizon)
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
    steps; `on_episode` gets the result over the episodes finished so far after each one
    (from the first that is longer than the horizon: shorter ones have no k-step errors)."""

    last: list[dict[str, Any]] = []  # the summary over all episodes, once on_episode made it

    def summarise(recorded: list[dict[str, Tensor]]) -> None:
        last.clear()
        if on_episode is not None and any(len(ep["reward"]) > horizon for ep in recorded):
            last.append(_summary(agent, recorded, horizon, stride))
            on_episode(last[0])

    recorded = record_episodes(agent, env, episodes, seed, max_steps, progress, summarise)
    return last[0] if last else _summary(agent, recorded, horizon, stride)


def _summary(
    agent: WorldModelAgent, recorded: list[dict[str, Tensor]], horizon: int, stride: int
) -> dict[str, Any]:
    return {
        "horizon": horizon,
        "open_loop": open_loop_errors(agent, recorded, horizon, stride),
        "performance_gap": performance_gap(agent, recorded),
        "lengths": [int(ep["reward"].shape[0]) - 1 for ep in recorded],
    }
