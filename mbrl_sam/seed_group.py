"""Several seeds of one config trained in one process (`python train.py seeds=K`).

Each seed is a complete run of its own, in `<run_dir>/seed-<s>/`: its Trainer, env, replay,
logs, evaluations and checkpoint, and its own global random state (swapped in whenever its
trainer runs). The trainers run in lockstep as generators (`Trainer.steps`): each runs until
it has a batch to learn from, and once every seed has one, a stacked update (the agent's
`StackedUpdate`) learns from all K batches in one pass, drawing from each seed's own random
stream, and hands each trainer its metrics back. Every seed directory can also be resumed as
a single run (`seed=<s> run_dir=<run_dir>/seed-<s>`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from mbrl_sam.checkpoint import rng_state, set_rng_state
from mbrl_sam.errors import ConfigError, RunError
from mbrl_sam.schedules import Clock
from mbrl_sam.stop import StopSignal
from mbrl_sam.trainer import Trainer


class StackedUpdate(Protocol):
    """An agent's updates of K seeds as one (e.g. agents/tdmpc_seeds.py)."""

    def update(
        self, batches: Sequence[dict[str, Tensor]], step: int, generators: Sequence[torch.Generator]
    ) -> list[dict[str, float]]:
        """Seed k learns from batches[k], drawing from generators[k]; its metrics."""
        ...


class SharedTimeLimit:
    """One time limit for all the seeds, decided between rounds: every trainer then stops at
    the same step, as lockstep needs."""

    def __init__(self, clock: Clock) -> None:
        self.clock, self.reached = clock, False

    def reset(self) -> None:
        """Start the clock (each trainer does as it starts; they start together)."""
        self.clock.reset()

    def due(self) -> bool:
        """Whether the limit was reached at the last round's end."""
        return self.reached

    def latch(self) -> None:
        """Read the clock, between rounds."""
        self.reached = self.reached or self.clock.due()


class SharedSaves:
    """The periodic checkpoint clock as the seeds see it: due for every seed in the same round
    (decided between rounds, once per seed), so that a group killed later finds all its seeds
    saved at one step. A clock per seed would start with each seed's prefill, one after the
    other, and leave the seeds' checkpoints at different steps."""

    def __init__(self, clock: Clock, seeds: int) -> None:
        self.clock, self.pending = clock, False
        self.views = [_SeedSaves(self) for _ in range(seeds)]

    def latch(self) -> None:
        """Read the clock, between rounds; start it again once every seed has saved."""
        if self.pending:
            if all(v.saved for v in self.views):
                self.pending = False
                self.clock.reset()
        elif self.clock.due():
            self.pending = True
            for v in self.views:
                v.saved = False


class _SeedSaves:
    """One seed's view of SharedSaves, in the place of its trainer's own save clock."""

    def __init__(self, group: SharedSaves) -> None:
        self.group, self.saved = group, False

    def due(self) -> bool:
        """Whether this seed is to save now: once per group decision."""
        return self.group.pending and not self.saved

    def reset(self) -> None:
        """This seed has saved (or started): no more saves until the group's next decision."""
        self.saved = True


class SharedStop:
    """The run's stop request as the seeds see it: decided between rounds, so that every
    seed stops at the same update. Evaluations are not abandoned (they would stop one seed in
    the middle of a round); the stop waits for them."""

    def __init__(self, stop: StopSignal | None) -> None:
        self.signal = stop or StopSignal()
        self.latched = False

    @property
    def training(self) -> bool:
        """Whether a trainer runs (the signal's flag)."""
        return self.signal.training

    @training.setter
    def training(self, value: bool) -> None:
        self.signal.training = value

    def is_set(self) -> bool:
        """Whether a stop was requested by the last round's end."""
        return self.latched

    def deferred(self) -> contextlib.AbstractContextManager:
        """The signal's deferral (requests wait for a safe point)."""
        return self.signal.deferred()

    def abandonable(self) -> contextlib.AbstractContextManager:
        """Nothing: a group's evaluations finish before a stop."""
        return contextlib.nullcontext()

    def latch(self) -> None:
        """Read the signal, between rounds."""
        self.latched = self.latched or self.signal.is_set()


class SeedGroup:
    """Trains K seeds' trainers in lockstep with one stacked update."""

    def __init__(
        self,
        trainers: Sequence[Trainer],
        update: StackedUpdate,
        seats: Sequence[dict[str, Any]],
        device: torch.device,
    ) -> None:
        """`seats[k]`: seed k's global random state (`rng_state()`) as its own run would hold
        it when its trainer starts."""
        self.trainers, self.stacked, self.seats = list(trainers), update, list(seats)
        first = self.trainers[0]
        for t in self.trainers[1:]:
            if t.counters.updates != first.counters.updates or t.env_steps != first.env_steps:
                raise ConfigError(
                    f"the seeds of {first.checkpoint.run_dir.parent} are at different steps "
                    f"({t.checkpoint.run_dir.name}: {t.env_steps} env steps, "
                    f"{first.checkpoint.run_dir.name}: {first.env_steps}); a seed group resumes "
                    "only together: resume each seed alone with seeds=1 and its seed-<s> run_dir"
                )
        self.limit: SharedTimeLimit | None = None
        if first.time_limit is not None:
            self.limit = SharedTimeLimit(first.time_limit)
            for t in self.trainers:
                t.time_limit = self.limit  # type: ignore[assignment]
        self.stop = SharedStop(first.stop)
        self.saves = SharedSaves(first.saves, len(self.trainers))
        for t, view in zip(self.trainers, self.saves.views):
            t.stop = self.stop  # type: ignore[assignment]
            t.saves = view  # type: ignore[assignment]
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device) for _ in self.trainers]

    def run(self) -> list[dict[str, float]]:
        """Train every seed to the end; each one's last evaluation."""
        loops = [t.steps() for t in self.trainers]
        batches = self._round(loops, [None] * len(loops))
        while not all(isinstance(b, _Done) for b in batches):
            if any(isinstance(b, _Done) for b in batches):
                raise RuntimeError("the seeds of a group left lockstep")  # a bug, not input
            try:
                metrics = self._update(batches, self.trainers[0].counters.updates)
            except BaseException as err:
                self._stop_all(loops, range(len(loops)), err)
                raise
            batches = self._round(loops, metrics)
        return [b.result for b in batches if isinstance(b, _Done)]

    def _round(self, loops: list[Generator], metrics: list[Any]) -> list[Any]:
        """Hand each seed its update's metrics and run it to its next batch. A stop (a signal,
        a diverged seed, an error) first reaches every seed at the same point, so each saves
        the same update count; then the first seed's reason is raised."""
        out: list[Any] = []
        failure: BaseException | None = None
        for k, loop in enumerate(loops):
            try:
                out.append(self._advance(k, loop, metrics[k]))
            except BaseException as err:
                if failure is None:
                    failure = err
                    self.stop.latched = True  # the seeds after k stop where k did
                    self._stop_all(loops, range(k), err)  # those before are a batch ahead
                out.append(None)
        if failure is not None:
            raise failure
        self.stop.latch()
        self.saves.latch()
        if self.limit is not None:
            self.limit.latch()
        return out

    def _stop_all(self, loops: list[Generator], seeds: range, err: BaseException) -> None:
        """Stop the seeds `seeds` where they wait, each saving as its own run would (a seed
        that diverged keeps its checkpoint; the others save theirs)."""
        stop = KeyboardInterrupt() if isinstance(err, RunError) else err
        for k in seeds:
            set_rng_state(self.seats[k])
            with contextlib.suppress(BaseException):  # each reports itself; err is raised
                loops[k].throw(stop)

    def _advance(
        self, k: int, loop: Generator, metrics: dict[str, float] | None
    ) -> dict[str, Tensor] | _Done:
        """Run seed k's trainer, with its random state, to its next batch (or its end)."""
        set_rng_state(self.seats[k])
        try:
            return next(loop) if metrics is None else loop.send(metrics)
        except StopIteration as end:
            return _Done(end.value)
        finally:
            self.seats[k] = rng_state()

    def _update(self, batches: list[dict[str, Tensor]], step: int) -> list[dict[str, float]]:
        """One stacked update, each seed drawing from its own torch generator."""
        key = "torch" if self.device.type == "cpu" else "cuda"
        index = self.device.index or 0
        for g, seat in zip(self.generators, self.seats):
            g.set_state(seat[key] if key == "torch" else seat[key][index])
        metrics = self.stacked.update(batches, step, self.generators)
        for g, seat in zip(self.generators, self.seats):
            if key == "torch":
                seat[key] = g.get_state()
            else:
                seat[key][index] = g.get_state()
        return metrics


class _Done:
    """A trainer's end, with its result."""

    def __init__(self, result: dict[str, float]) -> None:
        self.result = result
