"""ClosureOptimizer: an objective may evaluate the closure twice; state changes commit once."""

import io

import numpy as np
import pytest
import torch
from torch import nn

from agents import AGENTS, make_agent
from agents.run import load_config
from mbrl_sam.environment import EnvSpec
from mbrl_sam.objectives import SAM
from mbrl_sam.optim import ClosureOptimizer


def test_sam_evaluates_the_closure_twice_and_commit_runs_once_with_the_first_aux():
    torch.manual_seed(0)
    layer = nn.Linear(3, 1)
    x = torch.randn(8, 3)
    opt = ClosureOptimizer(layer.parameters(), 0.1, 1e-8, 100.0, objective=SAM(rho=0.5))
    calls, commits = [], []

    def closure():
        loss = layer(x).pow(2).mean()
        calls.append(float(loss.detach()))
        return loss, {"loss": calls[-1]}

    aux, _ = opt.step(closure, commit=commits.append)
    assert len(calls) == 2 and calls[1] > calls[0]  # the second pass is at the ascent point
    assert commits == [{"loss": calls[0]}] and aux == commits[0]


def test_a_skipped_step_commits_nothing():
    layer = nn.Linear(3, 1)
    opt = ClosureOptimizer(layer.parameters(), 0.1, 1e-8, 100.0)
    commits = []
    _, metrics = opt.step(lambda: (layer.weight.sum() * float("nan"), 1), commit=commits.append)
    assert metrics["skipped_step"] == 1.0 and commits == []


TDMPC_SPEC = EnvSpec((5,), np.float32, 3, False, 2, episode_length=500)
DREAMER_SPEC = EnvSpec((5,), np.float32, 2, False, 2)


def batch(size: int, length: int, action_dim: int) -> dict[str, torch.Tensor]:
    """Random replay-shaped steps without episode boundaries."""
    rng = np.random.default_rng(0)
    shape = (size, length)
    return {
        "obs": torch.as_tensor(rng.standard_normal((*shape, 5)), dtype=torch.float32),
        "action": torch.as_tensor(rng.uniform(-1, 1, (*shape, action_dim)), dtype=torch.float32),
        "reward": torch.as_tensor(rng.standard_normal(shape), dtype=torch.float32),
        "is_first": torch.zeros(shape, dtype=torch.bool),
        "is_terminal": torch.zeros(shape, dtype=torch.bool),
    }


def behaviour_optimizers(agent) -> list[ClosureOptimizer]:
    """The optimizers other than the world model's (which the config's objective drives)."""
    if hasattr(agent, "ac"):
        return [agent.ac.actor_opt, agent.ac.critic_opt]
    return [agent.policy.optimizer]


def committed_scale(agent) -> float:
    """The scale a behaviour loss commits after its step."""
    return float(agent.ac.return_scale if hasattr(agent, "ac") else agent.policy.scale.value)


# Every registered agent, small (test_the_cases_cover_every_registered_agent).
SAM_CASES = [
    ("tdmpc", TDMPC_SPEC, ["agent.batch_size=16"]),
    ("dreamer", DREAMER_SPEC, ["agent.batch_size=4", "agent.batch_length=8"]),
    (
        "dreamer",
        DREAMER_SPEC,
        ["agent.batch_size=4", "agent.batch_length=8", "agent.behavior.actor_grad=reinforce"],
    ),
    ("storm", DREAMER_SPEC, ["agent.batch_size=2", "agent.behavior.horizon=4"]),
]


def test_the_cases_cover_every_registered_agent():
    assert {name for name, _, _ in SAM_CASES} == set(AGENTS)


@pytest.mark.parametrize("name, spec, overrides", SAM_CASES)
def test_every_optimizer_with_sam_commits_each_side_effect_once(name, spec, overrides):
    # Two identical agents, world models stepped by SAM; in one the behaviour optimizers use
    # ERM, in the other SAM. SAM's first pass sees the same weights and random draws as ERM's
    # one pass, so a scale committed once from it matches ERM's; updated inside the closure it
    # would move twice.
    cfg = load_config([f"agent={name}", "size=tiny", "objective=sam", *overrides])
    agents = []
    for use_sam in (False, True):
        torch.manual_seed(0)
        agent = make_agent(cfg, spec, torch.device("cpu"))
        if name == "tdmpc":
            agent.policy.scale.value.fill_(5.0)  # a fresh Q's range is below the floor of 1
        if use_sam:
            for opt in behaviour_optimizers(agent):
                opt.objective = SAM(rho=0.05)
        agents.append(agent)
    data = batch(cfg.agent.batch_size, cfg.agent.batch_length, spec.action_dim)
    before = committed_scale(agents[0])
    scales = []
    for agent in agents:
        torch.manual_seed(1)
        for step in range(2):
            agent.update(data, step)
        scales.append(committed_scale(agent))
    assert scales[0] != before
    assert scales[1] == pytest.approx(scales[0], rel=1e-6, abs=1e-7)


def test_an_agents_checkpoint_carries_the_every_k_state_and_resumes_identically():
    cfg = load_config(["agent=tdmpc", "size=tiny", "objective=sam", "objective.every=3"])
    cfg.agent.batch_size = 16
    data = batch(16, cfg.agent.batch_length, TDMPC_SPEC.action_dim)

    def updates(agent, steps):
        for step in steps:
            torch.manual_seed(step)
            agent.update(data, step)

    torch.manual_seed(0)
    agent = make_agent(cfg, TDMPC_SPEC, torch.device("cpu"))
    updates(agent, range(4))  # refreshed at 0 and 3; 4 and 5 reuse the g_v of 3
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    assert agent.model_optimizer.objective.refreshed_at == 3
    updates(agent, range(4, 7))
    torch.manual_seed(1)
    resumed = make_agent(cfg, TDMPC_SPEC, torch.device("cpu"))
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    updates(resumed, range(4, 7))
    for p, q in zip(agent.world_model.parameters(), resumed.world_model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
