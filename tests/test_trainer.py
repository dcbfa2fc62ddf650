"""The training loop's schedule: the seed phase and its catch-up burst of updates."""

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from agents import make_agent
from agents.run import load_config
from envs import make_env
from mbrl_sam.checkpoint import all_finite, load_checkpoint
from mbrl_sam.errors import RunError
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


# -- durable runs: exact resume, divergence, faults -------------------------------------------

EXACT = {
    # Pendulum episodes are 200 steps: the cut at 300 lands inside the second one.
    "gym": [*TDMPC_FAST, "task=gym/Pendulum-v1", "planner=none", "prefill=100"]
    + ["train_ratio=16", "eval_episodes=1"],
    # DMC: 1000 env steps per episode (500 agent steps at action repeat 2).
    "dmc": ["agent=dreamer", "size=tiny", "task=dmc/cartpole-swingup", "prefill=100"]
    + ["agent.batch_size=4", "agent.batch_length=16", "train_ratio=16"]
    + ["agent.behavior.horizon=5", "eval_episodes=1"],
}


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["agent"]


def _assert_equal_trees(a, b, path="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_equal_trees(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list | tuple):
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_trees(x, y, f"{path}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


@pytest.mark.parametrize("suite", ["gym", "dmc"])
def test_a_stopped_and_resumed_run_ends_bit_identical_to_an_uninterrupted_one(tmp_path, suite):
    args = [*EXACT[suite], "objective=erm", "progress=false", "seed=3"]
    straight = tmp_path / "straight"
    train.run(load_config([*args, "steps=600", "eval_every=200", f"run_dir={straight}"]), straight)
    # The other run checkpoints after every step and evaluates on another cadence (neither may
    # change training), and is stopped and resumed twice.
    cut = tmp_path / "cut"
    steer = ["checkpoint_minutes=1e-6", "eval_every=150", f"run_dir={cut}"]
    for steps in (50, 300, 600):  # cut in the prefill, and inside an episode after it
        train.run(load_config([*args, f"steps={steps}", *steer]), cut)
    _assert_equal_trees(_weights(straight), _weights(cut))
    for name in ("straight", "cut"):  # an episode spans the cut: no extra first record
        state = torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)
        assert (
            state["replay"]["total"]
            == 600 // (2 if suite == "dmc" else 1) + 1 + (state["counters"]["episodes"])
        )


def test_a_diverging_run_stops_with_a_clear_error_and_keeps_its_last_good_checkpoint(tmp_path):
    # An absurd learning rate: the weights blow up, and every later gradient is NaN and skipped.
    args = [*EXACT["gym"], "objective=erm", "eval_every=0", "steps=400", f"run_dir={tmp_path}"]
    args += ["agent.model_opt.lr=1e20", "max_skipped_updates=5", "checkpoint_minutes=1e-6"]
    with pytest.raises(RunError, match="5 world-model steps in a row") as err:
        train.run(load_config(args), tmp_path)
    assert "is kept" in str(err.value)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["counters"]["skipped_in_a_row"] == 0 and all_finite(state["agent"])


def test_an_unexpected_error_writes_an_emergency_checkpoint(tmp_path, monkeypatch):
    from mbrl_sam import trainer as trainer_module

    original = trainer_module.Trainer._train

    def fail_after_some_updates(self):
        original(self)
        if self.counters.updates >= 20:
            raise OSError("simulated fault")

    monkeypatch.setattr(trainer_module.Trainer, "_train", fail_after_some_updates)
    args = [*EXACT["gym"], "objective=erm", "eval_every=0", "steps=400", f"run_dir={tmp_path}"]
    with pytest.raises(OSError, match="simulated fault"):
        train.run(load_config(args), tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["counters"]["updates"] >= 20 and state["counters"]["step_pending"]


def test_signals_during_a_slow_checkpoint_write_cannot_abort_it(tmp_path, monkeypatch):
    from mbrl_sam import trainer as trainer_module

    real_save = trainer_module.save_checkpoint
    writes = []

    def slow_save_under_fire(path, state):
        for _ in range(2):  # a second and a third signal, while the write is under way
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        real_save(path, state)
        writes.append(state["counters"]["agent_steps"])

    monkeypatch.setattr(trainer_module, "save_checkpoint", slow_save_under_fire)
    previous = signal.signal(signal.SIGTERM, lambda s, f: train.STOP.request("SIGTERM"))
    try:
        args = [*EXACT["gym"], "objective=erm", "eval_every=0", "steps=400"]
        cfg = load_config([*args, "checkpoint_minutes=1e-6", f"run_dir={tmp_path}"])
        with pytest.raises(KeyboardInterrupt):
            train.run(cfg, tmp_path)
    finally:
        signal.signal(signal.SIGTERM, previous)
        train.STOP.clear()
    # The periodic write ran to its end, then the run stopped at its next safe point.
    assert len(writes) == 2 and writes[0] == writes[1] == 1
    assert load_checkpoint(tmp_path / "checkpoint.pt")["counters"]["agent_steps"] == 1


@pytest.mark.parametrize("explore", [False, True])
def test_evaluation_acts_greedily_unless_eval_explore(tmp_path, explore):
    args = ["task=gym/Pendulum-v1", "planner=none", "eval_episodes=1", f"eval_explore={explore}"]
    t = trainer(tmp_path, *args)
    seen = []
    act = t.agent.act

    def recording_act(obs, state, is_first, explore):
        seen.append(explore)
        return act(obs, state, is_first, explore)

    t.agent.act = recording_act
    t.evaluate()
    assert len(seen) == 200 and set(seen) == {explore}
