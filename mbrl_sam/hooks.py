"""Work a run does beside collecting and updating, as trainer hooks: the progress bar, the train
metrics logged every `log_every` env steps, and the watch for a diverged world model.

A hook overrides the events it needs; the rest are no-ops. Hooks with a `name` keep their state
in the run's checkpoint under it. The trainer re-seeds the global generators around `after_step`
for hooks that may draw from them (`uses_global_rng`), so a measurement never shifts training.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from mbrl_sam.errors import RunError
from mbrl_sam.schedules import Every

if TYPE_CHECKING:
    from mbrl_sam.trainer import Trainer


class TrainerHook:
    """The events of a run; every one a no-op here."""

    name = ""  # non-empty: the checkpoint keeps `state_dict()` under this key
    uses_global_rng = True  # after_step may draw from python/numpy/torch's global generators

    def start(self, trainer: Trainer) -> None:
        """The run loop begins (after any resume)."""

    def after_update(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """One update is done; `metrics` are its scalars. Draws nothing from the global RNGs."""

    def after_step(self, trainer: Trainer) -> None:
        """One agent step and the updates it was due are done."""

    def close(self) -> None:
        """The run ends, however it ends; its last checkpoint may still be written after."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the hook (with a `name`)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""


class MetricsWindow(TrainerHook):
    """Logs the mean of each update metric over the last `log_every` env steps, with speed,
    update count, replay size and training hours."""

    uses_global_rng = False

    def __init__(self, log_every: int) -> None:
        """Logs each time the env steps cross a multiple of `log_every`."""
        self.schedule = Every(log_every)
        self._window: dict[str, list[float]] = defaultdict(list)
        self._since: tuple[float, int] = (time.monotonic(), 0)  # (time, env steps) at start

    def start(self, trainer: Trainer) -> None:
        """Steps per second count from here."""
        self._since = (time.monotonic(), trainer.env_steps)

    def after_update(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Add the update's metrics to the window."""
        for key, value in metrics.items():
            self._window[key].append(value)

    def after_step(self, trainer: Trainer) -> None:
        """Log and empty the window when due."""
        steps, repeat = trainer.env_steps, trainer.collector.env.spec.action_repeat
        if not self.schedule.due(steps, steps - repeat):
            return
        elapsed = max(time.monotonic() - self._since[0], 1e-9)
        metrics = {key: float(np.mean(values)) for key, values in self._window.items()}
        metrics.update(fps=(steps - self._since[1]) / elapsed, updates=trainer.counters.updates)
        metrics.update(replay_size=len(trainer.replay), hours=trainer.train_seconds() / 3600)
        trainer.logger.log(steps, metrics, "train")
        self._window.clear()


class DivergenceWatch(TrainerHook):
    """Stops the run with a RunError after `max_skipped` world-model steps in a row were skipped
    for a non-finite gradient; the streak is in the trainer's counters (and checkpoint)."""

    uses_global_rng = False

    def __init__(self, max_skipped: int) -> None:
        """Tolerates up to `max_skipped` - 1 skipped steps in a row."""
        self.max_skipped = int(max_skipped)
        self.skipped_total = 0  # skipped steps since this start, for the progress bar

    def after_update(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Count a skipped step; raise when the streak reaches the limit."""
        counters = trainer.counters
        skipped = metrics.get("model/skipped_step", 0.0) > 0
        self.skipped_total += int(skipped)
        counters.skipped_in_a_row = counters.skipped_in_a_row + 1 if skipped else 0
        if counters.skipped_in_a_row >= self.max_skipped:
            loss = metrics.get("model/loss", float("nan"))
            kept = "is kept" if trainer.checkpoint.path.exists() else "was never written"
            raise RunError(
                f"training diverged: {counters.skipped_in_a_row} world-model steps in a row had "
                f"a non-finite gradient (last loss {loss:.3g}) at env step {trainer.env_steps}; "
                f"the last checkpoint in {trainer.checkpoint.run_dir} {kept}. Lower the "
                "learning rate or raise max_skipped_updates"
            )


class ProgressBar(TrainerHook):
    """A tqdm bar of env steps with the last returns, updates and skipped steps."""

    uses_global_rng = False

    def __init__(self, enabled: bool) -> None:
        """No bar at all when not `enabled`."""
        self.enabled = enabled
        self._bar: tqdm | None = None

    def start(self, trainer: Trainer) -> None:
        """Open the bar at the run's current step."""
        if not self.enabled:
            return
        self._bar = tqdm(
            total=trainer.config.steps,
            initial=trainer.env_steps,
            unit="step",
            # Off a terminal (CI logs) the bar is redrawn rarely instead of ten times a second.
            mininterval=0.5 if sys.stderr.isatty() else 60.0,
            dynamic_ncols=True,
        )

    def after_step(self, trainer: Trainer) -> None:
        """Advance to the run's env steps; refresh the numbers every 50 env steps."""
        if self._bar is None:
            return
        # To the count, not by one step: a resume's pending step is already in `initial`.
        self._bar.update(trainer.env_steps - self._bar.n)
        if self._bar.n % 50 == 0:
            self._bar.set_postfix(
                ret=f"{trainer.collector.last_return:.1f}",
                eval=f"{trainer.last_eval_return:.1f}",
                upd=trainer.counters.updates,
                skip=trainer.divergence.skipped_total,
                refresh=False,
            )

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
