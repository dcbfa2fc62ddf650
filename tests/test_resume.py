"""One run, one identity: what a resume may change, and what a fresh start leaves behind."""

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from agents.run import load_config
from mbrl_sam.config import check_resume_matches
from mbrl_sam.errors import ConfigError
from mbrl_sam.resume import move_aside_outputs

ROOT = Path(__file__).resolve().parent.parent
BASE = ["agent=tdmpc", "task=gym/Pendulum-v1", "objective=sam", "seed=0", "size=tiny"]


def _saved(*overrides: str) -> dict:
    cfg = load_config([*BASE, *overrides])
    return {
        "task": cfg.task,
        "agent_name": cfg.agent.name,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


@pytest.mark.parametrize(
    "override,key",
    [
        ("objective=erm", "objective.name"),
        ("objective.rho=0.2", "objective.rho"),
        ("seed=1", "seed"),
        ("planner=none", "planner.name"),
        ("size=1M", "size.name"),
        ("agent.model.latent_dim=32", "agent.model.latent_dim"),
        ("train_ratio=64", "train_ratio"),
        ("action_repeat=2", "action_repeat"),
        ("obs=pixels", "obs"),
        ("replay_capacity=5000", "replay_capacity"),
    ],
)
def test_a_resume_with_another_defining_setting_is_refused_naming_both_values(override, key):
    saved = _saved()
    cfg = load_config([*BASE, override])
    with pytest.raises(ConfigError) as err:
        check_resume_matches(cfg, saved, Path("runs/x"))
    message = str(err.value)
    assert f"{key}: saved " in message and "\n" not in message
    old, new = OmegaConf.select(OmegaConf.create(saved["config"]), key), OmegaConf.select(cfg, key)
    assert f"saved {old!r}, now {new!r}" in message


def test_every_differing_defining_key_is_listed():
    cfg = load_config([*BASE, "objective=erm", "seed=4"])
    with pytest.raises(ConfigError, match="objective.name: .*seed: saved 0, now 4"):
        check_resume_matches(cfg, _saved(), Path("runs/x"))


@pytest.mark.parametrize(
    "override,key",
    [
        ("steps=20000", "steps"),
        ("eval_every=500", "eval_every"),
        ("eval_episodes=2", "eval_episodes"),
        ("threads=2", "threads"),
        ("time_limit_minutes=30", "time_limit_minutes"),
        ("log_every=50", "log_every"),
        ("checkpoint_minutes=1", "checkpoint_minutes"),
        ("device=cpu", "device"),
        ("progress=false", "progress"),
        ("tensorboard=false", "tensorboard"),
    ],
)
def test_steering_settings_may_change_and_are_reported(override, key):
    changed = check_resume_matches(load_config([*BASE, override]), _saved(), Path("runs/x"))
    assert list(changed) == [key]


def test_checkpoints_without_a_config_are_checked_on_task_and_agent_only():
    saved = {"task": "gym/Pendulum-v1", "agent_name": "tdmpc"}
    assert check_resume_matches(load_config([*BASE, "seed=3"]), saved, Path("x")) == {}
    with pytest.raises(ConfigError, match="task="):
        check_resume_matches(load_config([*BASE, "task=gym/CartPole-v1"]), saved, Path("x"))


def test_resuming_a_sam_run_as_erm_fails_at_start_up_and_leaves_the_run_as_it_was(tmp_path):
    args = [*BASE, "planner=none", "steps=60", "prefill=50", "eval_every=0", "progress=false"]
    train = [sys.executable, str(ROOT / "train.py"), f"run_dir={tmp_path}"]
    first = subprocess.run([*train, *args], capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    saved_yaml = (tmp_path / "config.yaml").read_text()
    again = subprocess.run([*train, *args, "objective=erm"], capture_output=True, text=True)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert "objective.name: saved 'sam', now 'erm'" in again.stderr
    assert (tmp_path / "config.yaml").read_text() == saved_yaml


def test_a_fresh_start_moves_an_earlier_starts_outputs_aside(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 5}\n')
    (tmp_path / "tb").mkdir()
    (tmp_path / "notes.txt").write_text("the user's own file")
    aside = move_aside_outputs(tmp_path)
    assert sorted(p.name for p in aside.iterdir()) == ["metrics.jsonl", "tb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "stale"]
    assert move_aside_outputs(tmp_path) is None
