"""Flatness measurements during training: a trainer hook, every `measure.every` updates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mbrl_sam import seeds
from mbrl_sam.evaluation.flatness import MeasureConfig, measure_all
from mbrl_sam.hooks import TrainerHook

if TYPE_CHECKING:
    from mbrl_sam.trainer import Trainer


class FlatnessHook(TrainerHook):
    """Measures the world model's flatness on one fixed probe batch, and the value gap and model
    error on fresh eval-env episodes; logs them to TensorBoard (`measure/`) and measure.jsonl."""

    name = "flatness"
    uses_global_rng = True  # the value gap's and model error's episodes and probes draw

    def __init__(self, cfg: MeasureConfig) -> None:
        self.cfg = cfg
        self.probe_batch: dict[str, torch.Tensor] | None = None
        self.last_measure = 0  # updates at the last measurement

    def due(self, updates: int) -> bool:
        """Whether `updates` has crossed the next multiple of `every` since the last one."""
        every = self.cfg.every
        return every > 0 and updates // every > self.last_measure // every

    def after_step(self, trainer: Trainer) -> None:
        """Measure when due."""
        if self.due(trainer.counters.updates):
            self.measure(trainer)

    def measure(self, trainer: Trainer) -> dict[str, Any]:
        """Measure now; return and log the result."""
        if self.probe_batch is None:
            # Drawn once with its own generator, so it is the same batch for the whole run.
            a = trainer.config.agent
            rng = np.random.default_rng(self.cfg.seed)
            self.probe_batch = trainer.replay.sample(a.batch_size, a.batch_length, rng)
        result = measure_all(
            trainer.agent, self.probe_batch, trainer.eval_env, self.cfg, seeds.MEASURE_IN_TRAINING
        )
        trainer.logger.log(trainer.env_steps, result["flat"], "measure")
        trainer.logger.record("measure.jsonl", {"step": trainer.env_steps, **result})
        self.last_measure = trainer.counters.updates
        return result

    def state_dict(self) -> dict[str, Any]:
        """The probe batch (so a resumed run measures the same batch) and the last measure."""
        return {"probe_batch": self.probe_batch, "last_measure": self.last_measure}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`."""
        self.probe_batch, self.last_measure = state["probe_batch"], state["last_measure"]
