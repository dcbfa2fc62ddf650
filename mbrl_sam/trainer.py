"""The training loop shared by all agents: collect, update, evaluate, checkpoint.

The loop only orders the run's parts: schedules (`schedules`) say when, a collector
(`collector`) steps the env into replay, a run checkpoint (`run_checkpoint`) saves and resumes,
and hooks (`hooks`) do the rest: progress bar, train metrics, divergence, measurements.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Sequence

import numpy as np
from torch import Tensor

from mbrl_sam import seeds
from mbrl_sam.agent import Agent
from mbrl_sam.checkpoint import all_finite, isolated_rng
from mbrl_sam.collector import Collector
from mbrl_sam.config import RunConfig
from mbrl_sam.environment import Env
from mbrl_sam.errors import RunError
from mbrl_sam.evaluation.episodes import run_episodes
from mbrl_sam.hooks import DivergenceWatch, MetricsWindow, ProgressBar, TrainerHook
from mbrl_sam.logger import Logger
from mbrl_sam.run_checkpoint import Counters, RunCheckpoint
from mbrl_sam.schedules import Clock, Every, Ratio, Stopwatch
from mbrl_sam.stop import StopSignal

Batch = dict[str, Tensor]  # a replayed batch, (B, T, ...) per key


class Trainer:
    """Trains one agent on one collector's env until `config.steps` env steps, resumable from
    its checkpoint's run_dir."""

    def __init__(
        self,
        config: RunConfig,
        agent: Agent,
        collector: Collector,
        eval_env: Env,
        logger: Logger,
        checkpoint: RunCheckpoint,
        stop: StopSignal | None = None,
        hooks: Sequence[TrainerHook] = (),
    ) -> None:
        """`stop`, once set, makes run() save a checkpoint at its next safe point and raise
        KeyboardInterrupt; `hooks` run after the trainer's own (train metrics, divergence)."""
        self.config, self.agent, self.collector, self.eval_env = config, agent, collector, eval_env
        self.replay, self.repeat = collector.replay, collector.env.spec.action_repeat
        self.logger, self.checkpoint, self.stop = logger, checkpoint, stop
        self.counters = Counters()
        self.last_eval_return = float("nan")
        a = config.agent
        batch_steps = a.batch_size * a.batch_length
        self.ratio = Ratio(config.train_ratio, batch_steps, collector.prefill, a.catch_up)
        self.evals = Every(config.eval_every)
        self.divergence = DivergenceWatch(config.max_skipped_updates)
        # In this order after each step: the train log line comes before a measurement's.
        self.hooks = [MetricsWindow(config.log_every), self.divergence, *hooks]
        self.hooks.append(ProgressBar(config.progress))
        self.saves = Clock(60 * config.checkpoint_minutes)
        limit = config.time_limit_minutes
        self.time_limit = None if limit is None else Clock(60 * float(limit))
        self._stopwatch: Stopwatch | None = None  # from run()'s start, after any resume

    @property
    def env_steps(self) -> int:
        """Environment steps so far, counted with action repeat."""
        return self.collector.env_steps

    def updates_due(self) -> int:
        """Updates the train ratio asks for in total at the current step count (none until the
        replay holds one sequence)."""
        if len(self.replay) < self.config.agent.batch_length:
            return 0
        return self.ratio.total(self.collector.agent_steps)

    def train_seconds(self) -> float:
        """Wall-clock seconds this run has spent training, summed over resumes."""
        if self._stopwatch is None:
            return self.counters.train_seconds
        return self._stopwatch.seconds()

    def save(self) -> None:
        """Write the run's checkpoint and progress.json."""
        self.checkpoint.save(self)

    def try_resume(self) -> bool:
        """Load run_dir's checkpoint if there is one; True when resumed."""
        return self.checkpoint.try_resume(self)

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        """Train until config.steps env steps (or the time limit); returns the last evaluation."""
        loop = self.steps()
        try:
            batch = next(loop)
            while True:
                batch = loop.send(self.agent.update(batch, self.counters.updates))
        except StopIteration as done:
            return done.value

    def steps(self) -> Generator[Batch, dict[str, float], dict[str, float]]:
        """The training loop as a generator: it yields each replayed batch and takes that
        update's metrics back, so that the updates of several seeds can run as one
        (`seed_group`); `run()` updates with the agent. Returns the last evaluation."""
        with self.stop.deferred() if self.stop is not None else contextlib.nullcontext():
            if self.stop is not None:
                self.stop.training = True  # a stop from here on is the trainer's to report
            self._start()
            with self._exit_policy():
                if self.counters.step_pending:  # stopped inside the updates of the last step
                    yield from self._update()
                    self._after_step()
                while self.collector.agent_steps < self.config.steps // self.repeat:
                    self._check_stop()
                    if self._time_limit_reached():
                        break
                    # Before collecting, so the first evaluation is of the untrained agent.
                    if self.evals.due(self.env_steps, self.counters.last_eval):
                        self.evaluate()
                    self._collect()
                    self.counters.step_pending = True
                    yield from self._update()
                    self._after_step()
                    # Not inside a streak of skipped steps: the checkpoint kept is one from before.
                    if self.saves.due() and self.counters.skipped_in_a_row == 0:
                        self.save()
                        self.saves.reset()
                if self.counters.last_eval != self.env_steps:
                    self.evaluate()
                self.save()
        return {"eval_return": self.last_eval_return}

    def _start(self) -> None:
        """Continue the episode in progress (or start one), start the clocks and the hooks."""
        self.collector.start()
        self.saves.reset()
        if self.time_limit is not None:
            self.time_limit.reset()
        self._stopwatch = Stopwatch(self.counters.train_seconds)
        for hook in self.hooks:
            hook.start(self)

    @contextlib.contextmanager
    def _exit_policy(self) -> Iterator[None]:
        """How a run ends, in one place. Ctrl-C, SIGTERM or a stop request: save and say how to
        resume. A RunError (diverged, disk full) keeps the last checkpoint as it is. Any other
        error: an emergency checkpoint, if the weights are finite. In every case the hooks
        close first (the progress bar ends its line before any message), the logs last."""
        try:
            try:
                yield
            finally:
                for hook in self.hooks:
                    hook.close()
        except KeyboardInterrupt:
            self.save()
            print(f"\nInterrupted: checkpoint saved in {self.checkpoint.run_dir}; rerun to resume.")
            raise
        except RunError:
            raise
        except Exception:
            if all_finite(self.agent.state_dict()):
                self.save()
                print(f"\nEmergency checkpoint saved in {self.checkpoint.run_dir}.", flush=True)
            raise
        finally:
            self.logger.close()

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise KeyboardInterrupt

    def _time_limit_reached(self) -> bool:
        if self.time_limit is None or not self.time_limit.due():
            return False
        limit = self.config.time_limit_minutes
        print(f"\nTime limit of {limit} minutes reached at {self.env_steps} env steps.")
        return True

    def _collect(self) -> None:
        """One agent step into replay; a finished episode's return is logged."""
        finished = self.collector.step()
        if finished is not None:
            self.logger.log(self.env_steps, finished, "episode")

    def _update(self) -> Generator[Batch, dict[str, float], None]:
        """The updates the train ratio asks for: each batch out, its metrics back; a stop
        request is honoured between them."""
        a = self.config.agent
        while self.counters.updates < self.updates_due():
            self._check_stop()
            batch = self.replay.sample(a.batch_size, a.batch_length)
            metrics = yield batch
            self.counters.updates += 1
            for hook in self.hooks:
                hook.after_update(self, metrics)

    def _after_step(self) -> None:
        """The hooks after a step and its updates; the step is then complete."""
        seed = seeds.MEASURE_IN_TRAINING + self.env_steps
        for hook in self.hooks:
            if hook.uses_global_rng:
                with isolated_rng(seed):  # measurements never shift the training run's draws
                    hook.after_step(self)
            else:
                hook.after_step(self)
        self.counters.step_pending = False

    def evaluate(self) -> dict[str, float]:
        """Run config.eval_episodes episodes on the eval env (greedy, or sampling actions with
        config.eval_explore) and log their returns.

        Evaluation draws from its own seeded generators, so when and how often a run evaluates
        never changes its training; a stop request abandons it (a resume redoes it)."""
        seed = seeds.training_evaluation(self.config.seed)
        abandonable = self.stop.abandonable() if self.stop else contextlib.nullcontext()
        with abandonable, isolated_rng(seed + self.env_steps):
            episodes = run_episodes(
                self.agent, self.eval_env, self.config.eval_episodes, seed, self.config.eval_explore
            )
        returns = [e["return"] for e in episodes]
        result = {"return": float(np.mean(returns)), "return_std": float(np.std(returns))}
        self.logger.log(self.env_steps, result, "eval")
        # Per-episode returns too: success rates and bootstrap statistics need them.
        record = {"step": self.env_steps, "returns": returns, "hours": self.train_seconds() / 3600}
        self.logger.record("evals.jsonl", record)
        self.counters.last_eval = self.env_steps
        self.last_eval_return = result["return"]
        return {"eval_return": result["return"]}
