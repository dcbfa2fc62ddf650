"""Seeded draws: inside a stacked (vmapped) call each seed draws what a run of its own would."""

import pytest
import torch
import torch.nn.functional as F

from mbrl_sam import seeded


def draws(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return seeded.randn_like(x), seeded.randperm(5, x.device), seeded.dropout(x, 0.3, True)


def test_each_seed_draws_from_its_own_generator_what_torch_draws_alone():
    seeds = [3, 11, 7]
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    x = torch.randn(len(seeds), 4, 33)  # 33: past the vectorised normal's 16-element blocks

    def one(ids: torch.Tensor, x: torch.Tensor):
        with seeded.streams(ids):
            return draws(x)

    with seeded.generators_in_use(generators):
        noise, perm, dropped = torch.vmap(one)(torch.arange(len(seeds)), x)
    for k, s in enumerate(seeds):
        torch.manual_seed(s)
        assert torch.equal(noise[k], torch.randn_like(x[k]))
        assert torch.equal(perm[k], torch.randperm(5))
        assert torch.equal(dropped[k], F.dropout(x[k], 0.3, True))


def test_outside_streams_the_draws_are_torch_own_on_the_global_generator():
    x = torch.randn(4, 6)
    torch.manual_seed(0)
    ours = draws(x)
    torch.manual_seed(0)
    theirs = torch.randn_like(x), torch.randperm(5), F.dropout(x, 0.3, True)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    assert torch.equal(seeded.dropout(x, 0.3, False), x)


def test_fork_rng_rewinds_the_seeds_generators_and_the_global_one():
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    with seeded.generators_in_use(generators):
        before = [g.get_state() for g in generators]
        global_before = torch.get_rng_state()
        with seeded.fork_rng():
            for g in generators:
                torch.randn(10, generator=g)
            torch.randn(10)
        assert all(torch.equal(g.get_state(), b) for g, b in zip(generators, before))
        assert torch.equal(torch.get_rng_state(), global_before)


def test_streams_need_the_generators():
    with pytest.raises(RuntimeError, match="generators_in_use"), seeded.streams(torch.arange(2)):
        pass
