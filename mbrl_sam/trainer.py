"""The training loop shared by all agents: collect, replay, update, evaluate, checkpoint."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from envs.base import Env
from mbrl_sam.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mbrl_sam.config import CHECKPOINT, check_resume_matches
from mbrl_sam.logger import Logger
from mbrl_sam.replay import SequenceReplay


class Agent(Protocol):
    """What the loop needs from an agent."""

    def act(
        self, obs: np.ndarray, state: Any, is_first: bool, explore: bool
    ) -> tuple[np.ndarray, Any]: ...

    def update(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def random_action(spec: Any, rng: np.random.Generator) -> np.ndarray:
    """A uniform random action in the agent's action format (one-hot when discrete)."""
    if spec.discrete:
        action = np.zeros(spec.action_dim, np.float32)
        action[rng.integers(spec.action_dim)] = 1.0
        return action
    return rng.uniform(-1, 1, spec.action_dim).astype(np.float32)


class Trainer:
    """Runs one agent on one environment until `steps` env steps, resumable from run_dir."""

    def __init__(
        self,
        cfg: Any,
        agent: Agent,
        env: Env,
        eval_env: Env,
        replay: SequenceReplay,
        logger: Logger,
        run_dir: Path,
    ) -> None:
        self.cfg, self.agent, self.env, self.eval_env = cfg, agent, env, eval_env
        self.replay, self.logger, self.run_dir = replay, logger, Path(run_dir)
        self.repeat = env.spec.action_repeat
        self.counters = {"agent_steps": 0, "updates": 0, "episodes": 0, "last_eval": -1}
        self.rng = np.random.default_rng(cfg.seed)
        self.last_return = float("nan")
        self.last_eval_return = float("nan")

    @property
    def env_steps(self) -> int:
        """Environment steps so far, counted with action repeat."""
        return self.counters["agent_steps"] * self.repeat

    def updates_due(self) -> int:
        """Updates that the train ratio asks for at the current step count."""
        a = self.cfg.agent
        prefill_steps = self.cfg.prefill // self.repeat
        learned = self.counters["agent_steps"] - prefill_steps
        if learned <= 0 or len(self.replay) < a.batch_length:
            return 0
        return int(learned * a.train_ratio / (a.batch_size * a.batch_length))

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs."""
        return {
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "counters": dict(self.counters),
            "rng": rng_state(),
            "loop_rng": self.rng.bit_generator.state,
            "task": self.cfg.task,
            "agent_name": self.cfg.agent.name,
        }

    def save(self) -> None:
        """Write the checkpoint atomically."""
        save_checkpoint(self.run_dir / CHECKPOINT, self.state_dict())

    def load(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint's state."""
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.counters.update(state["counters"])
        set_rng_state(state["rng"])
        self.rng.bit_generator.state = state["loop_rng"]

    def try_resume(self) -> bool:
        """Load run_dir's checkpoint if there is one; True when resumed."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        state = load_checkpoint(path, map_location="cpu")
        check_resume_matches(self.cfg, state, self.run_dir)
        self.load(state)
        return True

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        """Train until cfg.steps env steps; returns the final evaluation."""
        cfg, spec = self.cfg, self.env.spec
        total_agent_steps = cfg.steps // self.repeat
        prefill_steps = cfg.prefill // self.repeat
        tty = sys.stderr.isatty()
        bar = tqdm(
            total=cfg.steps,
            initial=self.env_steps,
            unit="step",
            disable=not cfg.progress,
            mininterval=0.5 if tty else 60.0,
            dynamic_ncols=True,
        )
        window: dict[str, list[float]] = defaultdict(list)
        obs, is_first, act_state, ep_return, ep_len = self._reset_episode()
        last_save, last_log = time.monotonic(), self.env_steps
        start_time, start_steps = time.monotonic(), self.env_steps
        try:
            while self.counters["agent_steps"] < total_agent_steps:
                if self.counters["agent_steps"] < prefill_steps:
                    action = random_action(spec, self.rng)
                else:
                    action, act_state = self.agent.act(obs, act_state, is_first, explore=True)
                obs, reward, terminated, truncated = self.env.step(action)
                self.counters["agent_steps"] += 1
                self.replay.add(obs, action, reward, False, terminated)
                ep_return += reward
                ep_len += 1
                is_first = False
                if terminated or truncated:
                    self.counters["episodes"] += 1
                    self.last_return = ep_return
                    self.logger.log(
                        self.env_steps, {"return": ep_return, "length": ep_len}, "episode"
                    )
                    obs, is_first, act_state, ep_return, ep_len = self._reset_episode()
                while self.counters["updates"] < self.updates_due():
                    batch = self.replay.sample(cfg.agent.batch_size, cfg.agent.batch_length)
                    metrics = self.agent.update(batch, self.counters["updates"])
                    self.counters["updates"] += 1
                    for k, v in metrics.items():
                        window[k].append(v)
                if self.env_steps - last_log >= cfg.log_every:
                    fps = (self.env_steps - start_steps) / max(time.monotonic() - start_time, 1e-9)
                    self._log_window(window, fps)
                    last_log = self.env_steps
                if self._eval_due():
                    self.evaluate()
                if time.monotonic() - last_save >= 60 * cfg.checkpoint_minutes:
                    self.save()
                    last_save = time.monotonic()
                bar.update(self.repeat)
                if bar.n % 50 == 0:
                    bar.set_postfix(
                        ret=f"{self.last_return:.1f}",
                        eval=f"{self.last_eval_return:.1f}",
                        upd=self.counters["updates"],
                        refresh=False,
                    )
        except KeyboardInterrupt:
            bar.close()
            self.save()
            self.logger.close()
            print(f"\nInterrupted: checkpoint saved in {self.run_dir}; rerun to resume.")
            raise
        bar.close()
        result = self.evaluate() if self.counters["last_eval"] != self.env_steps else {}
        result = result or {"eval_return": self.last_eval_return}
        self.save()
        self.logger.close()
        return result

    def _reset_episode(self) -> tuple[np.ndarray, bool, Any, float, int]:
        seed = int(self.cfg.seed) * 100_003 + self.counters["episodes"]
        obs = self.env.reset(seed=seed)
        self.replay.add(obs, np.zeros(self.env.spec.action_dim, np.float32), 0.0, True, False)
        return obs, True, None, 0.0, 0

    def _eval_due(self) -> bool:
        every = self.cfg.eval_every
        if every > 0 and self.counters["last_eval"] < 0:
            return (
                True  # a first evaluation before learning: the curve starts at the untrained agent
            )
        return every > 0 and self.env_steps // every > max(self.counters["last_eval"], 0) // every

    def _log_window(self, window: dict[str, list[float]], fps: float) -> None:
        metrics = {k: float(np.mean(v)) for k, v in window.items()}
        metrics.update(fps=fps, updates=self.counters["updates"], replay_size=len(self.replay))
        self.logger.log(self.env_steps, metrics, "train")
        window.clear()

    def evaluate(self) -> dict[str, float]:
        """Run cfg.eval_episodes greedy episodes on the eval env and log their returns."""
        returns = []
        for i in range(self.cfg.eval_episodes):
            obs = self.eval_env.reset(seed=10**6 + int(self.cfg.seed) * 1000 + i)
            state, is_first, done, total = None, True, False, 0.0
            while not done:
                action, state = self.agent.act(obs, state, is_first, explore=False)
                obs, reward, terminated, truncated = self.eval_env.step(action)
                total += reward
                is_first, done = False, terminated or truncated
            returns.append(total)
        result = {"return": float(np.mean(returns)), "return_std": float(np.std(returns))}
        self.logger.log(self.env_steps, result, "eval")
        self.counters["last_eval"] = self.env_steps
        self.last_eval_return = result["return"]
        return {"eval_return": result["return"]}
