"""Composing the run config from configs/, and the check that a resumed run is the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mbrl_sam.errors import ConfigError


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
