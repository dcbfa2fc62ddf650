"""The training loop shared by all agents: collect, replay, update, evaluate, checkpoint."""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from mbrl_sam import seeds
from mbrl_sam.agent import Agent
from mbrl_sam.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mbrl_sam.config import check_resume_matches
from mbrl_sam.environment import Env, EnvSpec
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.episodes import run_episodes
from mbrl_sam.logger import Logger
from mbrl_sam.replay import SequenceReplay
from mbrl_sam.rollout import Rollout


def random_action(spec: EnvSpec, rng: np.random.Generator) -> np.ndarray:
    """A uniform random action in the agent's action format (one-hot when discrete)."""
    if spec.discrete:
        action = np.zeros(spec.action_dim, np.float32)
        action[rng.integers(spec.action_dim)] = 1.0
        return action
    return rng.uniform(-1, 1, spec.action_dim).astype(np.float32)


@dataclass
class Counters:
    """How far a run has got; its checkpoint keeps them as a dict of these keys."""

    agent_steps: int = 0
    updates: int = 0
    episodes: int = 0
    last_eval: int | None = None  # env steps at the last evaluation; None: none yet
    train_seconds: float = 0.0  # wall-clock seconds in run() over all resumes: the run's cost

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Counters:
        """From a checkpoint's dict (older ones wrote last_eval=-1 for none, and more keys)."""
        known = {k: v for k, v in state.items() if k in {f.name for f in fields(cls)}}
        if (known.get("last_eval") or 0) < 0:
            known["last_eval"] = None
        return cls(**known)


class TrainerHook(Protocol):
    """Work a run does between steps beside training (e.g. flatness measurements), with state
    that its checkpoint keeps under `name`."""

    name: str

    def after_step(self, trainer: Trainer) -> None:
        """Called after every agent step and its updates."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the hook."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        ...


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
        stop: threading.Event | None = None,
        hooks: Sequence[TrainerHook] = (),
    ) -> None:
        """`stop`, once set, makes run() save a checkpoint and raise KeyboardInterrupt; each
        hook runs after every step."""
        self.cfg, self.agent, self.env, self.eval_env = cfg, agent, env, eval_env
        self.rollout = Rollout(agent, env, explore=True)
        self.stop = stop
        self.replay, self.logger, self.run_dir = replay, logger, Path(run_dir)
        self.repeat = env.spec.action_repeat
        self.counters = Counters()
        self.hooks = list(hooks)
        self._clock: tuple[float, float] | None = None
        self.rng = np.random.default_rng(cfg.seed)
        self.last_return = float("nan")
        self.last_eval_return = float("nan")

    @property
    def env_steps(self) -> int:
        """Environment steps so far, counted with action repeat."""
        return self.counters.agent_steps * self.repeat

    @property
    def prefill_steps(self) -> int:
        """Agent steps of uniform random actions before the agent acts and learns."""
        if self.cfg.prefill == "auto":
            # TD-MPC2's seed phase: five episodes, at least 1,000 agent steps.
            return max(1000, 5 * (self.env.spec.episode_length or 0))
        return int(self.cfg.prefill) // self.repeat

    def updates_due(self) -> int:
        """Updates that the train ratio asks for at the current step count.

        With `agent.catch_up` the prefill's steps count too, so learning starts with one burst
        of the updates they would have had (TD-MPC2's pretraining on its seed data).
        """
        a = self.cfg.agent
        steps, prefill = self.counters.agent_steps, self.prefill_steps
        learned = steps if a.get("catch_up", False) and steps >= prefill else steps - prefill
        if learned <= 0 or len(self.replay) < a.batch_length:
            return 0
        return int(learned * self.cfg.train_ratio / (a.batch_size * a.batch_length))

    def train_hours(self) -> float:
        """Wall-clock hours this run has spent training, summed over resumes."""
        seconds = self.counters.train_seconds
        if self._clock is not None:
            seconds = self._clock[1] + time.monotonic() - self._clock[0]
        return seconds / 3600

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs."""
        return {
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "counters": asdict(replace(self.counters, train_seconds=3600 * self.train_hours())),
            "rng": rng_state(),
            "loop_rng": self.rng.bit_generator.state,
            "task": self.cfg.task,
            "agent_name": self.cfg.agent.name,
            **{hook.name: hook.state_dict() for hook in self.hooks},
            # So a resumed (or already finished) run shows and returns them before its next eval.
            "last_returns": {"episode": self.last_return, "eval": self.last_eval_return},
        }

    def save(self) -> None:
        """Write the checkpoint atomically."""
        save_checkpoint(self.run_dir / CHECKPOINT, self.state_dict())

    def load(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint's state."""
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.counters = Counters.from_state(state["counters"])
        set_rng_state(state["rng"])
        self.rng.bit_generator.state = state["loop_rng"]
        for hook in self.hooks:
            if hook.name in state:
                hook.load_state_dict(state[hook.name])
        last = state.get("last_returns", {})
        self.last_return = last.get("episode", float("nan"))
        self.last_eval_return = last.get("eval", float("nan"))

    def try_resume(self) -> bool:
        """Load run_dir's checkpoint if there is one; True when resumed."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        state = load_checkpoint(path, map_location="cpu")
        check_resume_matches(self.cfg, state, self.run_dir)
        try:
            self.load(state)
        except (KeyError, ValueError, RuntimeError) as err:
            raise ConfigError(
                f"{path} does not fit this config (was it written with another size, obs or "
                f"agent?): {str(err).splitlines()[0]}"
            ) from None
        self.logger.rewind(self.env_steps)
        return True

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        """Train until cfg.steps env steps; returns the final evaluation."""
        cfg = self.cfg
        total_agent_steps = cfg.steps // self.repeat
        bar = tqdm(
            total=cfg.steps,
            initial=self.env_steps,
            unit="step",
            disable=not cfg.progress,
            # Off a terminal (CI logs) the bar is redrawn rarely instead of ten times a second.
            mininterval=0.5 if sys.stderr.isatty() else 60.0,
            dynamic_ncols=True,
        )
        window: dict[str, list[float]] = defaultdict(list)
        self._reset_episode()
        last_save, last_log = time.monotonic(), self.env_steps
        start_time, start_steps = time.monotonic(), self.env_steps
        self._clock = (start_time, float(self.counters.train_seconds))
        try:
            limit = self.cfg.time_limit_minutes
            deadline = None if limit is None else start_time + 60 * float(limit)
            while self.counters.agent_steps < total_agent_steps:
                if self.stop is not None and self.stop.is_set():
                    raise KeyboardInterrupt
                if deadline is not None and time.monotonic() >= deadline:
                    print(f"\nTime limit of {limit} minutes reached at {self.env_steps} env steps.")
                    break
                # Before collecting, so the first evaluation is of the untrained agent at step 0.
                if self._eval_due():
                    self.evaluate()
                self._collect()
                self._train(window)
                if self.env_steps - last_log >= cfg.log_every:
                    elapsed = max(time.monotonic() - start_time, 1e-9)
                    self._log_window(window, (self.env_steps - start_steps) / elapsed)
                    last_log = self.env_steps
                for hook in self.hooks:
                    hook.after_step(self)
                if time.monotonic() - last_save >= 60 * cfg.checkpoint_minutes:
                    self.save()
                    last_save = time.monotonic()
                bar.update(self.repeat)
                if bar.n % 50 == 0:
                    bar.set_postfix(
                        ret=f"{self.last_return:.1f}",
                        eval=f"{self.last_eval_return:.1f}",
                        upd=self.counters.updates,
                        refresh=False,
                    )
        except KeyboardInterrupt:
            bar.close()
            self.save()
            self.logger.close()
            print(f"\nInterrupted: checkpoint saved in {self.run_dir}; rerun to resume.")
            raise
        bar.close()
        if self.counters.last_eval != self.env_steps:
            self.evaluate()
        self.save()
        self.logger.close()
        return {"eval_return": self.last_eval_return}

    def _collect(self) -> None:
        """One agent step in the environment, stored in replay; a new episode when it ends."""
        prefill = self.counters.agent_steps < self.prefill_steps
        step = self.rollout.step(random_action(self.env.spec, self.rng) if prefill else None)
        self.counters.agent_steps += 1
        self.replay.add(step.next_obs, step.action, step.reward, False, step.terminated)
        if not step.done:
            return
        self.counters.episodes += 1
        self.last_return = self.rollout.ret
        result = {"return": self.rollout.ret, "length": self.rollout.length}
        self.logger.log(self.env_steps, result, "episode")
        self._reset_episode()

    def _train(self, window: dict[str, list[float]]) -> None:
        """Run the updates the train ratio asks for, collecting their metrics in `window`."""
        a = self.cfg.agent
        while self.counters.updates < self.updates_due():
            batch = self.replay.sample(a.batch_size, a.batch_length)
            metrics = self.agent.update(batch, self.counters.updates)
            self.counters.updates += 1
            for k, v in metrics.items():
                window[k].append(v)

    def _reset_episode(self) -> None:
        seed = seeds.training_episode(int(self.cfg.seed), self.counters.episodes)
        obs = self.rollout.reset(seed)
        self.replay.add(obs, np.zeros(self.env.spec.action_dim, np.float32), 0.0, True, False)

    def _eval_due(self) -> bool:
        every = self.cfg.eval_every
        last = self.counters.last_eval
        if every > 0 and last is None:
            return True  # evaluate once before learning, so curves start at the untrained agent
        return every > 0 and self.env_steps // every > (last or 0) // every

    def _log_window(self, window: dict[str, list[float]], fps: float) -> None:
        metrics = {k: float(np.mean(v)) for k, v in window.items()}
        metrics.update(fps=fps, updates=self.counters.updates, replay_size=len(self.replay))
        metrics["hours"] = self.train_hours()
        self.logger.log(self.env_steps, metrics, "train")
        window.clear()

    def evaluate(self) -> dict[str, float]:
        """Run cfg.eval_episodes greedy episodes on the eval env and log their returns."""
        seed = seeds.training_evaluation(int(self.cfg.seed))
        episodes = run_episodes(self.agent, self.eval_env, self.cfg.eval_episodes, seed)
        returns = [e["return"] for e in episodes]
        result = {"return": float(np.mean(returns)), "return_std": float(np.std(returns))}
        self.logger.log(self.env_steps, result, "eval")
        # Per-episode returns too: success rates and bootstrap statistics need them.
        record = {"step": self.env_steps, "returns": returns, "hours": self.train_hours()}
        self.logger.record("evals.jsonl", record)
        self.counters.last_eval = self.env_steps
        self.last_eval_return = result["return"]
        return {"eval_return": result["return"]}
