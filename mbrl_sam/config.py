"""Start-up checks of a run's config, so bad values fail in seconds with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mbrl_sam.errors import ConfigError, check_choice, check_int, check_positive

CHECKPOINT = "checkpoint.pt"


def validate_config(cfg: Any, run_dir: Path) -> None:
    """Raise ConfigError naming the first invalid value and what would be valid."""
    from agents import AGENTS, PLANNER_CHOICES, build_objective
    from envs import validate_task
    from mbrl_sam.runtime import MATMUL_PRECISIONS

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


def check_resume_matches(cfg: Any, saved: dict, run_dir: Path) -> None:
    """Refuse to resume a checkpoint made for another task or agent."""
    for key, now in (("task", cfg.task), ("agent_name", cfg.agent.name)):
        if saved.get(key) != now:
            raise ConfigError(
                f"run_dir={str(run_dir)!r} holds a checkpoint for {key}={saved.get(key)!r}, "
                f"not {now!r}; use another run_dir or the same {key}"
            )


def config_dir() -> Path:
    """The repository's `configs/` folder."""
    return Path(__file__).resolve().parent.parent / "configs"


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Compose configs/config.yaml with `key=value` overrides, as train.py would."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", overrides=list(overrides))
