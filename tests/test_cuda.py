"""On a CUDA device: TD-MPC's world-model step equals the CPU's, every agent trains, checkpoints
and resumes there, and stacked seeds equal their own runs there too.

Skipped where torch sees no CUDA device; `benchmarks/device_check.sh` runs them on a GPU machine.
`MBRL_TEST_DEVICE=cpu` runs them on the CPU, which checks the tests themselves.
"""

import os
from pathlib import Path

import pytest
import torch

import train
from agents import AGENTS, make_agent
from agents.run import load_config
from tests.agents.test_tdmpc_seeds import SPEC, batch

DEVICE = os.environ.get("MBRL_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(), reason="no CUDA device here"
)

# Short real runs: 250 Pendulum steps after a 150-step prefill, an evaluation at the end.
RUN = ["size=tiny", "task=gym/Pendulum-v1", "prefill=150", "agent.batch_size=8", "train_ratio=16"]
RUN += ["eval_every=0", "eval_episodes=1", "progress=false", "matmul_precision=highest"]


@pytest.fixture(autouse=True)
def exact_float32():
    """Full float32 matmuls (no TF32), so the device's numbers can be held to the CPU's."""
    previous = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(previous[0])
    torch.backends.cudnn.allow_tf32 = previous[1]


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)


@pytest.mark.parametrize("objective", ["erm", "sam"])
def test_tdmpc_model_steps_on_the_device_equal_the_cpus(objective):
    # Without the Q dropout the model step draws nothing at random (the policy step does).
    cfg = load_config(
        ["agent=tdmpc", "size=tiny", f"objective={objective}", "agent.model.dropout=0"]
    )
    torch.manual_seed(0)
    on_cpu = make_agent(cfg, SPEC, torch.device("cpu"))
    on_device = make_agent(cfg, SPEC, torch.device(DEVICE))
    on_device.load_state_dict(on_cpu.state_dict())
    for i in range(3):
        _, theirs = on_cpu.model_step(batch(0, i), i)
        _, ours = on_device.model_step(batch(0, i), i)
        for key in ("model/loss", "model/grad_norm", "model/consistency_loss"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    expected = on_cpu.world_model.state_dict()
    for name, value in on_device.world_model.state_dict().items():
        assert value.device.type == torch.device(DEVICE).type, name
        torch.testing.assert_close(value.cpu(), expected[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_each_agent_trains_checkpoints_and_resumes_on_the_device(tmp_path, name):
    args = [f"agent={name}", *RUN, f"device={DEVICE}", "objective=sam", f"run_dir={tmp_path}"]
    result = train.run(load_config([*args, "steps=400"]), tmp_path)
    assert torch.isfinite(torch.tensor(result["eval_return"]))
    first = checkpoint(tmp_path)
    assert first["counters"]["updates"] > 0
    # A rerun with a larger budget continues on the device from that checkpoint.
    train.run(load_config([*args, "steps=600"]), tmp_path)
    second = checkpoint(tmp_path)
    assert second["counters"]["agent_steps"] > first["counters"]["agent_steps"]
    assert second["counters"]["updates"] > first["counters"]["updates"]


def test_stacked_seeds_on_the_device_train_as_their_own_runs(tmp_path):
    args = ["agent=tdmpc", *RUN, f"device={DEVICE}", "objective=sam", "agent.catch_up=false"]
    args += ["planner=none", "steps=250"]  # acting by the policy prior: 100 updates per seed
    train.run(load_config([*args, "seeds=2", f"run_dir={tmp_path / 'group'}"]), tmp_path / "group")
    for seed in (0, 1):
        alone = tmp_path / f"alone-{seed}"
        train.run(load_config([*args, f"seed={seed}", f"run_dir={alone}"]), alone)
        ours, theirs = checkpoint(tmp_path / "group" / f"seed-{seed}"), checkpoint(alone)
        assert ours["counters"]["updates"] == theirs["counters"]["updates"] > 0
        for key, value in theirs["agent"]["wm"].items():
            torch.testing.assert_close(ours["agent"]["wm"][key], value, atol=1e-4, rtol=0, msg=key)
