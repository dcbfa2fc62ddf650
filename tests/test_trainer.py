"""The training loop: its schedule in a real run, hooks, and how a run ends (exact resume,
divergence, faults, signals)."""

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from agents import make_agent
from agents.run import load_config, validate_config
from envs import make_env
from mbrl_sam.checkpoint import all_finite, load_checkpoint
from mbrl_sam.collector import Collector, prefill_steps
from mbrl_sam.errors import RunError
from mbrl_sam.hooks import TrainerHook
from mbrl_sam.logger import Logger
from mbrl_sam.replay import SequenceReplay
from mbrl_sam.replay_chunks import ReplayChunks
from mbrl_sam.replay_store import ChunkStore
from mbrl_sam.run_checkpoint import RunCheckpoint
from mbrl_sam.trainer import Trainer

TDMPC_FAST = ["agent=tdmpc", "size=tiny", "agent.batch_size=16", "eval_episodes=1"]


def trainer(
    tmp_path: Path,
    *overrides: str,
    hooks: Sequence[TrainerHook] = (),
    chunk_size: int | None = None,
    capacity: int = 1000,
) -> Trainer:
    """A trainer of a tiny TD-MPC agent in run_dir tmp_path, its replay kept in chunk files of
    `chunk_size` records when given (else in the checkpoint)."""
    run = validate_config(
        load_config([*TDMPC_FAST, "progress=false", f"run_dir={tmp_path}", *overrides]), tmp_path
    )
    env = make_env(run.task, obs=run.obs, action_repeat=run.action_repeat, seed=run.seed)
    agent = make_agent(run, env.spec, torch.device("cpu"))
    spec = env.spec
    replay = SequenceReplay(capacity, spec.obs_shape, spec.obs_dtype, spec.action_dim, run.seed)
    store = None
    if chunk_size is not None:
        store = ChunkStore(ReplayChunks(tmp_path / "replay"), replay, chunk_size)
    collector = Collector(agent, env, replay, run.seed, prefill_steps(run.prefill, spec), store)
    logger = Logger(tmp_path, use_tensorboard=False)
    checkpoint = RunCheckpoint(tmp_path, run, store)
    return Trainer(run, agent, collector, env, logger, checkpoint, hooks=hooks)


def add_zero_steps(t: Trainer, n: int) -> None:
    spec = t.collector.env.spec
    for _ in range(n):
        t.replay.add(np.zeros(spec.obs_shape, np.float32), np.zeros(spec.action_dim), 0, 0, 0)


def test_catch_up_makes_one_update_per_seed_step_in_one_burst(tmp_path):
    t = trainer(tmp_path, "task=gym/Pendulum-v1", "train_ratio=32")  # one update per 2 steps
    add_zero_steps(t, 10)
    counts = {}
    for steps in (999, 1000, 1001, 1010):
        t.collector.agent_steps = steps
        counts[steps] = t.updates_due()
    assert counts == {999: 0, 1000: 500, 1001: 500, 1010: 505}
    t = trainer(tmp_path, "task=gym/Pendulum-v1", "train_ratio=32", "agent.catch_up=false")
    add_zero_steps(t, 10)
    t.collector.agent_steps = 1010
    assert t.updates_due() == 5


def test_no_update_is_due_before_replay_holds_one_sequence(tmp_path):
    t = trainer(tmp_path, "task=gym/Pendulum-v1", "train_ratio=32", "agent.batch_length=11")
    add_zero_steps(t, 10)
    t.collector.agent_steps = 1010
    assert len(t.replay) == 10 and t.updates_due() == 0


def test_a_catch_up_run_ends_with_as_many_updates_as_agent_steps(tmp_path):
    cfg = load_config(
        [*TDMPC_FAST, "task=gym/Pendulum-v1", "steps=240", "prefill=200", "train_ratio=64"]
        + ["objective=erm", "planner=none"]
        + ["eval_every=0", "progress=false", f"run_dir={tmp_path}"]
    )
    train.run(cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["counters"]["agent_steps"] == 240 and state["counters"]["updates"] == 240


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

    original = trainer_module.Trainer._update

    def fail_after_some_updates(self):
        yield from original(self)
        if self.counters.updates >= 20:
            raise OSError("simulated fault")

    monkeypatch.setattr(trainer_module.Trainer, "_update", fail_after_some_updates)
    args = [*EXACT["gym"], "objective=erm", "eval_every=0", "steps=400", f"run_dir={tmp_path}"]
    with pytest.raises(OSError, match="simulated fault"):
        train.run(load_config(args), tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["counters"]["updates"] >= 20 and state["counters"]["step_pending"]


def test_signals_during_a_slow_checkpoint_write_cannot_abort_it(tmp_path, monkeypatch):
    from mbrl_sam import run_checkpoint

    real_save = run_checkpoint.save_checkpoint
    writes = []

    def slow_save_under_fire(path, state):
        for _ in range(2):  # a second and a third signal, while the write is under way
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        real_save(path, state)
        writes.append(state["counters"]["agent_steps"])

    monkeypatch.setattr(run_checkpoint, "save_checkpoint", slow_save_under_fire)
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


class Recorder(TrainerHook):
    """Records the events it sees; its state is how many steps it saw."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[str] = []
        self.steps_seen = 0

    def start(self, trainer: Trainer) -> None:
        self.events.append("start")

    def after_update(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.events.append("update")

    def after_step(self, trainer: Trainer) -> None:
        self.events.append("step")
        self.steps_seen += 1

    def close(self) -> None:
        self.events.append("close")

    def state_dict(self) -> dict:
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state: dict) -> None:
        self.steps_seen = state["steps_seen"]


def test_hooks_see_every_event_and_their_state_rides_in_the_checkpoint(tmp_path):
    args = ["task=gym/Pendulum-v1", "planner=none", "prefill=20", "train_ratio=64"]
    args += ["eval_every=0", "objective=erm", "agent.catch_up=false"]
    hook = Recorder()
    t = trainer(tmp_path, *args, "steps=30", hooks=[hook], chunk_size=64)
    t.try_resume()
    t.run()
    assert hook.events[0] == "start" and hook.events[-1] == "close"
    assert hook.events.count("step") == 30 and hook.events.count("close") == 1
    assert hook.events.count("update") == t.counters.updates == 10
    # An update comes in the step it is due in, before that step's hooks.
    assert hook.events[1:24] == ["step"] * 20 + ["update", "step", "update"]
    again = Recorder()
    resumed = trainer(tmp_path, *args, "steps=40", hooks=[again], chunk_size=64)
    assert resumed.try_resume() and again.steps_seen == 30
