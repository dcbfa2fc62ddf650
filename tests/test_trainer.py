"""The training loop's schedule: the seed phase and its catch-up burst of updates."""

from pathlib import Path

import numpy as np
import pytest
import torch

import train
from agents import make_agent
from agents.run import load_config
from envs import make_env
from mbrl_sam.logger import Logger
from mbrl_sam.replay import SequenceReplay
from mbrl_sam.trainer import Counters, Trainer

TDMPC_FAST = ["agent=tdmpc", "size=tiny", "agent.batch_size=16", "eval_episodes=1"]


def trainer(tmp_path: Path, *overrides: str) -> Trainer:
    cfg = load_config([*TDMPC_FAST, "progress=false", f"run_dir={tmp_path}", *overrides])
    env = make_env(cfg.task, obs=cfg.obs, action_repeat=cfg.action_repeat, seed=0)
    agent = make_agent(cfg, env.spec, torch.device("cpu"))
    spec = env.spec
    replay = SequenceReplay(1000, spec.obs_shape, spec.obs_dtype, spec.action_dim)
    for _ in range(10):
        replay.add(
            np.zeros(spec.obs_shape, np.float32), np.zeros(spec.action_dim), 0.0, False, False
        )
    logger = Logger(tmp_path, use_tensorboard=False)
    return Trainer(cfg, agent, env, env, replay, logger, tmp_path)


@pytest.mark.parametrize(
    "task,expected",
    # TD-MPC2 acts randomly for max(1000, 5 x episode length) agent steps.
    [("dmc/cartpole-swingup", 2500), ("gym/Pendulum-v1", 1000), ("gym/MountainCar-v0", 1000)],
)
def test_tdmpc_seed_phase_is_five_episodes_and_at_least_1000_agent_steps(tmp_path, task, expected):
    # Discrete actions are for dreamer, whose default is 1000 env steps; auto is the same rule.
    base = [f"task={task}"] + (["agent=dreamer"] if "MountainCar" in task else [])
    t = trainer(tmp_path, *base, "prefill=auto")
    assert t.prefill_steps == expected
    assert trainer(tmp_path, *base, "prefill=600").prefill_steps == 600 // t.repeat


def test_catch_up_makes_one_update_per_seed_step_in_one_burst(tmp_path):
    t = trainer(tmp_path, "task=gym/Pendulum-v1", "train_ratio=32")  # one update per 2 steps
    counts = {}
    for steps in (999, 1000, 1001, 1010):
        t.counters.agent_steps = steps
        counts[steps] = t.updates_due()
    assert counts == {999: 0, 1000: 500, 1001: 500, 1010: 505}
    t = trainer(tmp_path, "task=gym/Pendulum-v1", "train_ratio=32", "agent.catch_up=false")
    t.counters.agent_steps = 1010
    assert t.updates_due() == 5


def test_a_catch_up_run_ends_with_as_many_updates_as_agent_steps(tmp_path):
    cfg = load_config(
        [*TDMPC_FAST, "task=gym/Pendulum-v1", "steps=240", "prefill=200", "train_ratio=64"]
        + ["objective=erm", "planner=none"]
        + ["eval_every=0", "progress=false", f"run_dir={tmp_path}"]
    )
    train.run(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["counters"]["agent_steps"] == 240 and state["counters"]["updates"] == 240


def test_counters_read_checkpoints_written_before_they_were_a_dataclass():
    old = {"agent_steps": 7, "updates": 3, "episodes": 1, "last_eval": -1, "last_measure": 2}
    counters = Counters.from_state({**old, "train_seconds": 4.5})
    assert counters == Counters(7, 3, 1, None, 4.5)
    assert Counters.from_state({**old, "last_eval": 200}).last_eval == 200
