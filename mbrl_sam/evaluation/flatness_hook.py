"""Flatness measurements during training: a trainer hook, every `measure.every` updates."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mbrl_sam import seeds
from mbrl_sam.evaluation.flatness import MeasureConfig, measure_all
from mbrl_sam.hooks import TrainerHook
from mbrl_sam.progress import write_json

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


def final_measurement(trainer: Trainer, cfg: MeasureConfig, run_dir: Path) -> dict[str, float]:
    """Measure the trained agent as measure.py measures its last checkpoint (same probe batch,
    same seed) into run_dir/measure/step_<env steps>.json; a complete file there is reused."""
    out = run_dir / "measure" / f"step_{trainer.env_steps}.json"
    if out.exists():
        saved = json.loads(out.read_text())
        if saved.get("complete"):
            return saved["flat"]
    hook = next((h for h in trainer.hooks if isinstance(h, FlatnessHook)), None)
    batch = hook.probe_batch if hook is not None else None
    if batch is None:
        a = trainer.config.agent
        batch = trainer.replay.sample(a.batch_size, a.batch_length, np.random.default_rng(cfg.seed))
    result = measure_all(trainer.agent, batch, trainer.eval_env, cfg, seeds.MEASURE_SCRIPT)
    config = trainer.config
    about = dict(task=config.task, objective=config.objective.name, env_steps=trainer.env_steps)
    write_json(out, {**result, **about, "settings": dataclasses.asdict(cfg), "complete": True})
    return result["flat"]
