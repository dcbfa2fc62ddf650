"""The training loop shared by all agents: collect, replay, update, evaluate, checkpoint."""

from __future__ import annotations

import contextlib
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from omegaconf import OmegaConf
from tqdm import tqdm

from mbrl_sam import seeds
from mbrl_sam.agent import Agent
from mbrl_sam.checkpoint import (
    CHECKPOINT,
    all_finite,
    isolated_rng,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mbrl_sam.environment import Env, random_action
from mbrl_sam.errors import ConfigError, RunError
from mbrl_sam.evaluation.episodes import run_episodes
from mbrl_sam.logger import Logger
from mbrl_sam.progress import write_json
from mbrl_sam.replay import SequenceReplay
from mbrl_sam.resume import move_aside_outputs, resumable_state
from mbrl_sam.rollout import Rollout
from mbrl_sam.stop import StopSignal


@dataclass
class Counters:
    """How far a run has got; its checkpoint keeps them as a dict of these keys."""

    agent_steps: int = 0
    updates: int = 0
    episodes: int = 0
    last_eval: int | None = None  # env steps at the last evaluation; None: none yet
    train_seconds: float = 0.0  # wall-clock seconds in run() over all resumes: the run's cost
    skipped_in_a_row: int = 0  # world-model steps skipped for a non-finite gradient, in a row
    step_pending: bool = False  # stopped inside a step's updates: a resume finishes them first

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
        stop: StopSignal | None = None,
        hooks: Sequence[TrainerHook] = (),
    ) -> None:
        """`stop`, once set, makes run() save a checkpoint at its next safe point and raise
        KeyboardInterrupt; each hook runs after every step."""
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
        self.skipped_total = 0
        self._episode: dict[str, Any] | None = None  # a checkpoint's episode in progress
        self._window: dict[str, list[float]] = defaultdict(list)

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
        """Everything a resumed run needs; the replay's records live in its chunk files."""
        return {
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "counters": asdict(replace(self.counters, train_seconds=3600 * self.train_hours())),
            "rng": rng_state(),
            "loop_rng": self.rng.bit_generator.state,
            "episode": self.rollout.state_dict(),
            "task": self.cfg.task,
            "agent_name": self.cfg.agent.name,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            **{hook.name: hook.state_dict() for hook in self.hooks},
            # So a resumed (or already finished) run shows and returns them before its next eval.
            "last_returns": {"episode": self.last_return, "eval": self.last_eval_return},
        }

    def save(self) -> None:
        """Write the checkpoint (atomic, checksummed, the previous one kept), and beside it
        `progress.json`: how far the run is, for sweeps and status tables without torch."""
        save_checkpoint(self.run_dir / CHECKPOINT, self.state_dict())
        progress = {
            "env_steps": self.env_steps,
            "steps": int(self.cfg.steps),
            "finished": self.counters.agent_steps >= self.cfg.steps // self.repeat,
            "last_eval": None if np.isnan(self.last_eval_return) else self.last_eval_return,
            "hours": self.train_hours(),
        }
        write_json(self.run_dir / "progress.json", progress)

    def load(self, state: dict[str, Any]) -> None:
        """Restore from a checkpoint's state."""
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.counters = Counters.from_state(state["counters"])
        set_rng_state(state["rng"])
        self.rng.bit_generator.state = state["loop_rng"]
        self._episode = state.get("episode")
        for hook in self.hooks:
            if hook.name in state:
                hook.load_state_dict(state[hook.name])
        last = state.get("last_returns", {})
        self.last_return = last.get("episode", float("nan"))
        self.last_eval_return = last.get("eval", float("nan"))

    def try_resume(self) -> bool:
        """Load run_dir's checkpoint if there is one; True when resumed. A fresh start moves
        what an earlier start left in run_dir aside, so no step is logged twice."""
        state, steering = resumable_state(self.run_dir, self.cfg)
        if state is None:
            aside = move_aside_outputs(self.run_dir)
            if aside is not None:
                print(
                    f"No checkpoint in {self.run_dir}: an earlier start's outputs moved to {aside}."
                )
            return False
        try:
            self.load(state)
        except (KeyError, ValueError, RuntimeError) as err:
            raise ConfigError(
                f"the checkpoint in {self.run_dir} does not fit this config (was it written "
                f"with another size, obs or agent?): {str(err).splitlines()[0]}"
            ) from None
        self.logger.rewind(self.env_steps)
        if steering:
            listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in steering.items())
            print(f"Resuming with changed settings: {listed}")
            changed = {k: {"saved": a, "now": b} for k, (a, b) in steering.items()}
            self.logger.record("resumes.jsonl", {"step": self.env_steps, "changed": changed})
        return True

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        """Train until cfg.steps env steps; returns the final evaluation."""
        with self.stop.deferred() if self.stop is not None else contextlib.nullcontext():
            if self.stop is not None:
                self.stop.training = True  # a stop from here on is the trainer's to report
            return self._run()

    def _run(self) -> dict[str, float]:
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
        if not self._restore_episode():
            self._reset_episode()
        last_save = time.monotonic()
        start_time, start_steps = time.monotonic(), self.env_steps
        self._clock = (start_time, float(self.counters.train_seconds))
        self._fps = (start_time, start_steps)
        try:
            if self.counters.step_pending:  # stopped inside the updates of the last step
                self._finish_step()
            limit = self.cfg.time_limit_minutes
            deadline = None if limit is None else start_time + 60 * float(limit)
            while self.counters.agent_steps < total_agent_steps:
                self._check_stop()
                if deadline is not None and time.monotonic() >= deadline:
                    print(f"\nTime limit of {limit} minutes reached at {self.env_steps} env steps.")
                    break
                # Before collecting, so the first evaluation is of the untrained agent at step 0.
                if self._eval_due():
                    self.evaluate()
                self._collect()
                self.counters.step_pending = True
                self._finish_step()
                # Not inside a streak of skipped steps: the checkpoint kept is one from before.
                due = time.monotonic() - last_save >= 60 * cfg.checkpoint_minutes
                if due and self.counters.skipped_in_a_row == 0:
                    self.save()
                    last_save = time.monotonic()
                bar.update(self.repeat)
                if bar.n % 50 == 0:
                    bar.set_postfix(
                        ret=f"{self.last_return:.1f}",
                        eval=f"{self.last_eval_return:.1f}",
                        upd=self.counters.updates,
                        skip=self.skipped_total,
                        refresh=False,
                    )
            if self.counters.last_eval != self.env_steps:
                self.evaluate()
            self.save()
        except KeyboardInterrupt:
            bar.close()
            self.save()
            self.logger.close()
            print(f"\nInterrupted: checkpoint saved in {self.run_dir}; rerun to resume.")
            raise
        except RunError:
            bar.close()
            self.logger.close()
            raise
        except Exception:
            bar.close()
            if all_finite(self.agent.state_dict()):
                self.save()
                print(f"\nEmergency checkpoint saved in {self.run_dir}.", flush=True)
            self.logger.close()
            raise
        bar.close()
        self.logger.close()
        return {"eval_return": self.last_eval_return}

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise KeyboardInterrupt

    def _finish_step(self) -> None:
        """The rest of a step after collecting: its updates, logs and hooks."""
        self._train()
        if (
            self.env_steps // self.cfg.log_every
            > (self.env_steps - self.repeat) // self.cfg.log_every
        ):
            elapsed = max(time.monotonic() - self._fps[0], 1e-9)
            self._log_window((self.env_steps - self._fps[1]) / elapsed)
        seed = seeds.MEASURE_IN_TRAINING + self.env_steps
        for hook in self.hooks:
            with isolated_rng(seed):  # measurements never shift the training run's draws
                hook.after_step(self)
        self.counters.step_pending = False

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

    def _train(self) -> None:
        """Run the updates the train ratio asks for; a stop request is honoured between them."""
        a = self.cfg.agent
        while self.counters.updates < self.updates_due():
            self._check_stop()
            batch = self.replay.sample(a.batch_size, a.batch_length)
            metrics = self.agent.update(batch, self.counters.updates)
            self.counters.updates += 1
            for k, v in metrics.items():
                self._window[k].append(v)
            self._watch_divergence(metrics)

    def _watch_divergence(self, metrics: dict[str, float]) -> None:
        skipped = metrics.get("model/skipped_step", 0.0) > 0
        self.skipped_total += int(skipped)
        self.counters.skipped_in_a_row = self.counters.skipped_in_a_row + 1 if skipped else 0
        if self.counters.skipped_in_a_row >= self.cfg.max_skipped_updates:
            loss = metrics.get("model/loss", float("nan"))
            kept = "is kept" if (self.run_dir / CHECKPOINT).exists() else "was never written"
            raise RunError(
                f"training diverged: {self.counters.skipped_in_a_row} world-model steps in a "
                f"row had a non-finite gradient (last loss {loss:.3g}) at env step "
                f"{self.env_steps}; the last checkpoint in {self.run_dir} {kept}. Lower the "
                "learning rate or raise max_skipped_updates"
            )

    def _reset_episode(self) -> None:
        seed = seeds.training_episode(int(self.cfg.seed), self.counters.episodes)
        obs = self.rollout.reset(seed)
        self.replay.add(obs, np.zeros(self.env.spec.action_dim, np.float32), 0.0, True, False)

    def _restore_episode(self) -> bool:
        """Continue a checkpoint's episode in progress where it stopped; False when there is
        none, or when the env cannot be brought back (then a new episode starts)."""
        saved, self._episode = self._episode, None
        records = self.replay.current_episode() if saved is not None else None
        if records is None:
            return False
        seed = seeds.training_episode(int(self.cfg.seed), self.counters.episodes)
        if self.rollout.restore(seed, records["action"][1:], records["obs"][-1], saved):
            return True
        print("Note: the env did not replay the episode in progress exactly; a new one starts.")
        return False

    def _eval_due(self) -> bool:
        every = self.cfg.eval_every
        last = self.counters.last_eval
        if every > 0 and last is None:
            return True  # evaluate once before learning, so curves start at the untrained agent
        return every > 0 and self.env_steps // every > (last or 0) // every

    def _log_window(self, fps: float) -> None:
        metrics = {k: float(np.mean(v)) for k, v in self._window.items()}
        metrics.update(fps=fps, updates=self.counters.updates, replay_size=len(self.replay))
        metrics["hours"] = self.train_hours()
        self.logger.log(self.env_steps, metrics, "train")
        self._window.clear()

    def evaluate(self) -> dict[str, float]:
        """Run cfg.eval_episodes episodes on the eval env (greedy, or sampling actions with
        cfg.eval_explore) and log their returns.

        Evaluation draws from its own seeded generators, so when and how often a run evaluates
        never changes its training; a stop request abandons it (a resume redoes it)."""
        seed = seeds.training_evaluation(int(self.cfg.seed))
        with self._abandonable(), isolated_rng(seed + self.env_steps):
            episodes = run_episodes(
                self.agent, self.eval_env, self.cfg.eval_episodes, seed, self.cfg.eval_explore
            )
        returns = [e["return"] for e in episodes]
        result = {"return": float(np.mean(returns)), "return_std": float(np.std(returns))}
        self.logger.log(self.env_steps, result, "eval")
        # Per-episode returns too: success rates and bootstrap statistics need them.
        record = {"step": self.env_steps, "returns": returns, "hours": self.train_hours()}
        self.logger.record("evals.jsonl", record)
        self.counters.last_eval = self.env_steps
        self.last_eval_return = result["return"]
        return {"eval_return": result["return"]}

    def _abandonable(self) -> contextlib.AbstractContextManager:
        return self.stop.abandonable() if self.stop is not None else contextlib.nullcontext()
