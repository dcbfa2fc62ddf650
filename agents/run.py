"""Building a run from its config: the start-up checks, and rebuilding a saved run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from agents import AGENTS, PLANNER_CHOICES, build_objective, make_agent
from envs import make_env, validate_task
from mbrl_sam.checkpoint import CHECKPOINT, load_checkpoint
from mbrl_sam.errors import ConfigError, check_choice, check_int, check_positive
from mbrl_sam.runtime import MATMUL_PRECISIONS, resolve_device, seed_everything


def validate_config(cfg: Any, run_dir: Path) -> None:
    """Raise ConfigError naming the first invalid value and what would be valid."""
    check_choice("obs", cfg.obs, ("state", "pixels"))
    validate_task(cfg.task, cfg.obs)
    check_choice("agent", cfg.agent.name, AGENTS)
    check_choice("planner", cfg.planner.name, PLANNER_CHOICES)
    build_objective(cfg.objective)  # checks the name, rho, eta and the option names
    check_choice("resume", cfg.resume, ("auto", True, False))
    if cfg.action_repeat is not None:
        check_int("action_repeat", cfg.action_repeat, 1)
    check_int("steps", cfg.steps, 1)
    check_int("seed", cfg.seed, 0)
    if cfg.prefill != "auto" and (not isinstance(cfg.prefill, int) or cfg.prefill < 0):
        raise ConfigError(f"prefill={cfg.prefill!r} is not valid; it must be auto or an int >= 0")
    check_int("eval_every", cfg.eval_every, 0)
    check_int("eval_episodes", cfg.eval_episodes, 1)
    check_int("log_every", cfg.log_every, 1)
    check_int("agent.batch_size", cfg.agent.batch_size, 1)
    check_int("agent.batch_length", cfg.agent.batch_length, 2)
    check_int("replay_capacity", cfg.replay_capacity, cfg.agent.batch_length)
    check_positive("train_ratio", cfg.train_ratio)
    check_positive("checkpoint_minutes", cfg.checkpoint_minutes)
    if cfg.time_limit_minutes is not None:
        check_positive("time_limit_minutes", cfg.time_limit_minutes)
    if cfg.threads is not None:
        check_int("threads", cfg.threads, 1)
    check_choice("matmul_precision", cfg.matmul_precision, MATMUL_PRECISIONS)
    checkpoint = Path(run_dir) / CHECKPOINT
    if cfg.resume is True and not checkpoint.exists():
        raise ConfigError(f"resume=true but {checkpoint} does not exist; check run_dir={run_dir}")
    if cfg.resume is False and checkpoint.exists():
        raise ConfigError(
            f"run_dir={str(run_dir)!r} already holds a checkpoint and resume=false; "
            "pass resume=auto to continue it or choose another run_dir"
        )


def load_saved_run(
    run_dir: Path, device: str | None, seed: int, render: bool = False
) -> tuple[Any, Any, Any, dict]:
    """(config, agent with the checkpoint's weights, a fresh env, the checkpoint's state)."""
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
