"""A run directory's checkpoint: the state assembled from the run's parts, written with
`progress.json` beside it, loaded back into them, and what a start finds (resume or fresh).

The checkpoint's layout is kept as it was before the run loop was split into parts (counters,
`loop_rng`, `episode`, `last_returns` at the top level), so older run directories still resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import OmegaConf

from mbrl_sam.checkpoint import CHECKPOINT, rng_state, save_checkpoint, set_rng_state
from mbrl_sam.config import RunConfig
from mbrl_sam.errors import ConfigError
from mbrl_sam.progress import write_json
from mbrl_sam.replay_store import ChunkStore
from mbrl_sam.resume import move_aside_outputs, resumable_state

if TYPE_CHECKING:
    from mbrl_sam.trainer import Trainer


@dataclass
class Counters:
    """How far the trainer has got beside its collector's steps and episodes; the checkpoint
    keeps them in one dict with those two."""

    updates: int = 0
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


def compact(tree: Any) -> Any:
    """A nested state dict whose tensors that view a larger storage (a seed's slice of stacked
    weights, `seeds=K`) are copied out: torch.save would write the whole storage."""
    if isinstance(tree, torch.Tensor):
        whole = tree.untyped_storage().nbytes()
        return tree.clone() if whole > tree.numel() * tree.element_size() else tree
    if isinstance(tree, dict):
        return {k: compact(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(compact(v) for v in tree)
    return tree


class RunCheckpoint:
    """The checkpoint of the run in `run_dir`, whose replay records live in `store`'s chunk
    files (without a store, in the checkpoint itself)."""

    def __init__(self, run_dir: Path, config: RunConfig, store: ChunkStore | None = None) -> None:
        """`config` is the run's; the checkpoint keeps it resolved, to refuse a resume with
        other settings."""
        self.run_dir, self.path, self.store = Path(run_dir), Path(run_dir) / CHECKPOINT, store
        self.config = config
        # As the run's DictConfig would give it, so checkpoints old and new compare.
        self._resolved = OmegaConf.to_container(OmegaConf.structured(config), resolve=True)

    def state(self, trainer: Trainer) -> dict[str, Any]:
        """Everything a resumed run needs (the replay's records apart: flush the store first).
        Reads only: nothing is written or deleted."""
        collector = trainer.collector.state_dict()
        counters = replace(trainer.counters, train_seconds=trainer.train_seconds())
        replay = self.store.state_dict() if self.store else trainer.replay.state_dict()
        return {
            "agent": compact(trainer.agent.state_dict()),
            "replay": replay,
            "counters": {
                "agent_steps": collector["agent_steps"],
                "episodes": collector["episodes"],
                **asdict(counters),
            },
            "rng": rng_state(),
            "loop_rng": collector["rng"],
            "episode": collector["episode"],
            "task": self.config.task,
            "agent_name": self.config.agent.name,
            "config": self._resolved,
            **{hook.name: hook.state_dict() for hook in trainer.hooks if hook.name},
            # So a resumed (or already finished) run shows and returns them before its next eval.
            "last_returns": {"episode": collector["last_return"], "eval": trainer.last_eval_return},
        }

    def save(self, trainer: Trainer) -> None:
        """Flush the replay to its chunk files, write the checkpoint (atomic, checksummed, the
        previous one kept) and `progress.json` beside it (how far the run is, for sweeps and
        status tables without torch); then delete the chunks no kept checkpoint needs."""
        if self.store is not None:
            self.store.flush()
        state = self.state(trainer)
        save_checkpoint(self.path, state)
        if self.store is not None:
            self.store.retain(state["replay"]["total"])
        steps, last_eval = self.config.steps, trainer.last_eval_return
        progress = {
            "env_steps": trainer.env_steps,
            "steps": int(steps),
            "finished": trainer.collector.agent_steps >= steps // trainer.repeat,
            "last_eval": None if np.isnan(last_eval) else last_eval,
            "hours": trainer.train_seconds() / 3600,
        }
        write_json(self.run_dir / "progress.json", progress)

    def load(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """Restore the run's parts from a checkpoint's state."""
        trainer.agent.load_state_dict(state["agent"])
        if self.store is not None:
            self.store.load_state_dict(state["replay"])
        else:
            trainer.replay.load_state_dict(state["replay"])
        counters = state["counters"]
        trainer.counters = Counters.from_state(counters)
        set_rng_state(state["rng"])
        last = state.get("last_returns", {})
        trainer.collector.load_state_dict(
            {
                "agent_steps": counters["agent_steps"],
                "episodes": counters["episodes"],
                "rng": state["loop_rng"],
                "episode": state.get("episode"),
                "last_return": last.get("episode", float("nan")),
            }
        )
        for hook in trainer.hooks:
            if hook.name and hook.name in state:
                hook.load_state_dict(state[hook.name])
        trainer.last_eval_return = last.get("eval", float("nan"))

    def try_resume(self, trainer: Trainer) -> bool:
        """Load run_dir's checkpoint if there is one; True when resumed. A fresh start moves
        what an earlier start left in run_dir aside, so no step is logged twice."""
        state, steering = resumable_state(self.run_dir, self.config)
        if state is None:
            aside = move_aside_outputs(self.run_dir)
            if aside is not None:
                print(
                    f"No checkpoint in {self.run_dir}: an earlier start's outputs moved to {aside}."
                )
            return False
        try:
            self.load(trainer, state)
        except (KeyError, ValueError, RuntimeError) as err:
            raise ConfigError(
                f"the checkpoint in {self.run_dir} does not fit this config (was it written "
                f"with another size, obs or agent?): {str(err).splitlines()[0]}"
            ) from None
        trainer.logger.rewind(trainer.env_steps)
        if steering:
            listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in steering.items())
            print(f"Resuming with changed settings: {listed}")
            changed = {k: {"saved": a, "now": b} for k, (a, b) in steering.items()}
            trainer.logger.record("resumes.jsonl", {"step": trainer.env_steps, "changed": changed})
        return True
