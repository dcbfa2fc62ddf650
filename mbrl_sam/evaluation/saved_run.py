"""Rebuild a training run's agent and environment from its run_dir (config + checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mbrl_sam.config import CHECKPOINT
from mbrl_sam.errors import ConfigError


def load_saved_run(
    run_dir: Path, device: str | None, seed: int, render: bool = False
) -> tuple[Any, Any, Any, dict]:
    """(config, agent with the checkpoint's weights, a fresh env, the checkpoint's state)."""
    from agents import make_agent
    from envs import make_env
    from mbrl_sam.checkpoint import load_checkpoint
    from mbrl_sam.runtime import resolve_device, seed_everything

    for needed in ("config.yaml", CHECKPOINT):
        if not (run_dir / needed).exists():
            raise ConfigError(f"run_dir={str(run_dir)!r} has no {needed}; is it a training run?")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    device = resolve_device(device or cfg.device)
    seed_everything(seed)
    env = make_env(cfg.task, obs=cfg.obs, action_repeat=cfg.action_repeat, seed=seed, render=render)
    agent = make_agent(cfg, env.spec, device)
    state = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
    agent.load_state_dict(state["agent"])
    return cfg, agent, env, state
