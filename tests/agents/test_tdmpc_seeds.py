"""Stacked TD-MPC seeds: one stacked update equals each seed's own update."""

import numpy as np
import pytest
import torch

from agents import make_agent
from agents.run import load_config
from agents.tdmpc_seeds import StackedTDMPC
from mbrl_sam.checkpoint import rng_state, set_rng_state
from mbrl_sam.environment import EnvSpec

SPEC = EnvSpec((5,), np.float32, 3, False, 2, episode_length=500)


def build(seed: int, overrides: list[str]):
    torch.manual_seed(seed)
    cfg = load_config(["agent=tdmpc", "size=tiny", *overrides])
    return make_agent(cfg, SPEC, torch.device("cpu"))


def batch(seed: int, i: int) -> dict[str, torch.Tensor]:
    """A replay-shaped batch with an episode boundary inside some windows."""
    rng = np.random.default_rng(1000 * seed + i)
    shape = (64, 4)
    return {
        "obs": torch.as_tensor(rng.standard_normal((*shape, 5)), dtype=torch.float32),
        "action": torch.as_tensor(rng.uniform(-1, 1, (*shape, 3)), dtype=torch.float32),
        "reward": torch.as_tensor(rng.standard_normal(shape), dtype=torch.float32),
        "is_first": torch.as_tensor(rng.random(shape) < 0.05),
        "is_terminal": torch.zeros(shape, dtype=torch.bool),
    }


@pytest.mark.parametrize(
    "overrides",
    [
        ["objective=erm"],
        ["objective=sam"],
        ["objective=sam", "objective.every=2", "objective.perturb=all"],
    ],
)
def test_a_stacked_update_tracks_each_seeds_own_updates(overrides):
    seeds, updates = (0, 1, 2), 8
    alone, seats = [], []
    for s in seeds:
        alone.append(build(s, overrides))
        seats.append(rng_state())
    stacked_agents, generators = [], []
    for s in seeds:
        stacked_agents.append(build(s, overrides))
        generators.append(torch.Generator())
        generators[-1].set_state(torch.get_rng_state())
    stacked = StackedTDMPC(stacked_agents)
    for i in range(updates):
        batches = [batch(s, i) for s in seeds]
        expected = []
        for k, agent in enumerate(alone):
            set_rng_state(seats[k])
            expected.append(agent.update(batches[k], i))
            seats[k] = rng_state()
        got = stacked.update(batches, i, generators)
        for k in range(len(seeds)):
            assert got[k].keys() == expected[k].keys()
            for key in ("model/loss", "model/grad_norm", "policy/pi_loss"):
                assert got[k][key] == pytest.approx(expected[k][key], rel=1e-4, abs=1e-6)
    for k in range(len(seeds)):
        # The generators moved as the seeds' own global ones did: the same draws, in order.
        assert torch.equal(generators[k].get_state(), seats[k]["torch"])
        ours, theirs = stacked_agents[k].state_dict(), alone[k].state_dict()
        for name, value in theirs["wm"].items():
            torch.testing.assert_close(ours["wm"][name], value, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours["q_scale"], theirs["q_scale"])
        assert ours["wm_opt"]["adam"]["state"].keys() == theirs["wm_opt"]["adam"]["state"].keys()
        if "g_v" in theirs["wm_opt"]["objective"]:
            assert (
                ours["wm_opt"]["objective"]["refreshed_at"]
                == theirs["wm_opt"]["objective"]["refreshed_at"]
            )
