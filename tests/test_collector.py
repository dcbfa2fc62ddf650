"""One env's experience into replay: the prefill's own random actions, then the agent's; seeded
episodes and their returns; the episode in progress carried across a checkpoint."""

from pathlib import Path

import numpy as np
import pytest
import torch

from agents import make_agent
from agents.run import load_config, validate_config
from envs import make_env
from mbrl_sam import seeds
from mbrl_sam.collector import Collector, prefill_steps
from mbrl_sam.environment import random_action
from mbrl_sam.replay import SequenceReplay
from mbrl_sam.replay_chunks import ReplayChunks
from mbrl_sam.replay_store import ChunkStore

PENDULUM = "gym/Pendulum-v1"  # 200 agent steps per episode, action repeat 1


@pytest.fixture(scope="module")
def agent():
    """A tiny TD-MPC agent for Pendulum that acts with its policy (no planner)."""
    cfg = load_config(["agent=tdmpc", "size=tiny", "planner=none", f"task={PENDULUM}"])
    run = validate_config(cfg, Path("runs/unused"))
    return make_agent(run, make_env(PENDULUM, seed=0).spec, torch.device("cpu"))


def collector(agent, seed: int = 0, prefill: int = 1000, store_dir: Path | None = None):
    env = make_env(PENDULUM, seed=seed)
    spec = env.spec
    replay = SequenceReplay(1000, spec.obs_shape, spec.obs_dtype, spec.action_dim, seed)
    store = None if store_dir is None else ChunkStore(ReplayChunks(store_dir), replay, 64)
    return Collector(agent, env, replay, seed, prefill, store)


def stored(c: Collector) -> dict[str, np.ndarray]:
    return c.replay.records(0, c.replay.total_added)


@pytest.mark.parametrize(
    "task,expected",
    # TD-MPC2 acts randomly for max(1000, 5 x episode length) agent steps.
    [("dmc/cartpole-swingup", 2500), (PENDULUM, 1000), ("gym/MountainCar-v0", 1000)],
)
def test_auto_prefill_is_five_episodes_and_at_least_1000_agent_steps(task, expected):
    spec = make_env(task, seed=0).spec
    assert prefill_steps("auto", spec) == expected
    assert prefill_steps(600, spec) == 600 // spec.action_repeat


def test_the_prefill_acts_from_its_own_seeded_generator_then_the_agent_explores(agent):
    c = collector(agent, seed=3, prefill=5)
    seen = []
    act = agent.act

    def recording_act(obs, state, is_first, explore):
        seen.append(explore)
        return act(obs, state, is_first, explore)

    c.start()
    agent.act = recording_act
    try:
        for _ in range(8):
            c.step()
    finally:
        del agent.act
    rng = np.random.default_rng(3)
    expected = np.stack([random_action(c.env.spec, rng) for _ in range(5)])
    np.testing.assert_array_equal(stored(c)["action"][1:6], expected)
    assert seen == [True, True, True] and c.agent_steps == 8 and c.env_steps == 8


def test_episodes_start_from_their_seeds_and_report_their_return(agent):
    c = collector(agent, seed=2)
    c.start()
    finished = {}
    for _ in range(450):
        result = c.step()
        if result is not None:
            finished[c.agent_steps] = result
    assert list(finished) == [200, 400] and c.episodes == 2
    records = stored(c)
    assert c.replay.total_added == 450 + 3  # a first record per episode begun
    np.testing.assert_array_equal(np.flatnonzero(records["is_first"]), [0, 201, 402])
    second = records["reward"][202:402]
    assert finished[400] == {"return": pytest.approx(float(second.sum())), "length": 200}
    assert c.last_return == finished[400]["return"]
    fresh = make_env(PENDULUM, seed=0)
    np.testing.assert_array_equal(
        records["obs"][201], fresh.reset(seed=seeds.training_episode(2, 1))
    )


def test_an_episode_in_progress_continues_after_a_checkpoint(agent):
    a = collector(agent, seed=1)
    a.start()
    for _ in range(250):
        a.step()
    replay_state, state = a.replay.state_dict(), a.state_dict()
    b = collector(agent, seed=1)
    b.replay.load_state_dict(replay_state)
    b.load_state_dict(state)
    b.start()
    for _ in range(30):
        a.step()
        b.step()
    for key, values in stored(a).items():
        np.testing.assert_array_equal(values, stored(b)[key], err_msg=key)
    assert b.episodes == a.episodes == 1 and b.agent_steps == 280


def test_an_episode_the_env_cannot_replay_is_replaced_by_a_new_one(agent, capsys):
    a = collector(agent, seed=1)
    a.start()
    for _ in range(50):
        a.step()
    a.replay._data["obs"][50] += 1.0  # the last obs no longer follows from the actions
    b = collector(agent, seed=1)
    b.replay.load_state_dict(a.replay.state_dict())
    b.load_state_dict(a.state_dict())
    b.start()
    assert "did not replay the episode in progress exactly" in capsys.readouterr().out
    assert b.replay.total_added == 52 and b.replay.records(51, 52)["is_first"][0]


def test_with_a_chunk_store_full_chunks_are_written_as_steps_arrive(agent, tmp_path):
    c = collector(agent, store_dir=tmp_path / "replay")
    c.start()
    for _ in range(130):
        c.step()
    assert [(x.start, x.end) for x in c.store.files.chunks()] == [(0, 64), (64, 128)]
