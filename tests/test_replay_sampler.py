"""Which windows a batch holds: uniform ones drawn as they always were, or another sampler."""

import numpy as np
import pytest
import torch

from mbrl_sam.replay import SequenceReplay
from mbrl_sam.replay_sampler import UniformWindows


def _counting(capacity: int, n: int, seed: int = 0, sampler=None) -> SequenceReplay:
    replay = SequenceReplay(capacity, (1,), np.float32, action_dim=1, seed=seed, sampler=sampler)
    for i in range(n):
        replay.add(np.full(1, i, np.float32), np.ones(1, np.float32), float(i), i == 0, False)
    return replay


class NewestWindows:
    """Always the newest windows: a stand-in for a recent-biased sampler."""

    def sample(self, buffer, batch_size, length, rng):
        starts = np.full(batch_size, len(buffer) - length)
        return buffer.windows(starts, length)


def test_uniform_windows_start_where_one_integers_draw_says():
    # The draw itself is pinned: runs must reproduce the curves they gave before.
    replay = _counting(50, 80, seed=7)  # wrapped: records 30-80 are stored
    starts = np.random.Generator(np.random.PCG64(7)).integers(0, 50 - 6 + 1, size=5)
    batch = replay.sample(5, 6)
    np.testing.assert_array_equal(batch["obs"][:, 0, 0].numpy(), 30 + starts)


def test_a_given_rng_draws_the_windows_and_the_buffers_own_stays_put():
    replay = _counting(50, 50)
    state = replay.rng.bit_generator.state
    a = UniformWindows().sample(replay, 4, 5, np.random.default_rng(3))
    b = replay.sample(4, 5, np.random.default_rng(3))
    assert torch.equal(a["obs"], b["obs"]) and replay.rng.bit_generator.state == state


def test_another_sampler_swaps_in_and_the_same_checks_apply():
    replay = _counting(40, 100, sampler=NewestWindows())
    obs = replay.sample(3, 4)["obs"][..., 0]
    assert torch.equal(obs, torch.tensor([[96.0, 97.0, 98.0, 99.0]] * 3))
    with pytest.raises(ValueError, match="replay holds only 40 steps"):
        replay.sample(3, 41)
