"""Shared pieces of the speed benchmarks: a replay of real env steps, device sync, a timer."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

# The checkout these scripts sit in, not whichever clone `pip install -e` last pointed at: with
# two clones side by side, a benchmark would otherwise time the other one's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs import make_env  # noqa: E402
from mbrl_sam.environment import (
    EnvSpec,  # noqa: E402
    random_action,  # noqa: E402
)
from mbrl_sam.replay import SequenceReplay  # noqa: E402


def filled_replay(
    task: str, steps: int, seed: int = 0, obs: str = "state"
) -> tuple[SequenceReplay, EnvSpec]:
    """A replay filled with `steps` random-action steps of the real environment."""
    env = make_env(task, obs=obs, seed=seed)
    spec = env.spec
    replay = SequenceReplay(steps + 1, spec.obs_shape, spec.obs_dtype, spec.action_dim, seed)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)
    replay.add(obs, np.zeros(spec.action_dim, np.float32), 0.0, True, False)
    for _ in range(steps):
        action = random_action(spec, rng)
        obs, reward, terminated, truncated = env.step(action)
        replay.add(obs, action, reward, False, terminated)
        if terminated or truncated:
            obs = env.reset()
            replay.add(obs, np.zeros(spec.action_dim, np.float32), 0.0, True, False)
    env.close()
    return replay, spec


def sync(device: torch.device) -> None:
    """Wait for queued device work so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds taken by fn()."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def gflop(fn: Callable[[], object]) -> float:
    """Matrix-multiply and convolution GFLOP that one call of fn() performs (forward and
    backward), counted by torch's FlopCounterMode; elementwise work is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def matmul_gflops(device: torch.device, n: int = 1024, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n float32 matrix product: what the machine gives right now."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = min(time_call(lambda: a @ b, device) for _ in range(repeats + 1))
    return 2 * n**3 / best / 1e9
