"""Stacked seeds: copies' weights are views of one stack; per-seed optimizer steps."""

import copy

import pytest
import torch
from torch import nn

from mbrl_sam import seeded
from mbrl_sam.objectives import SAM
from mbrl_sam.optim import ClosureOptimizer
from mbrl_sam.seed_stack import SeedStack, StackedOptimizer


def copies(k: int) -> list[nn.Module]:
    out = []
    for s in range(k):
        torch.manual_seed(s)
        out.append(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)))
    return out


def test_each_copy_reads_and_writes_its_slice_of_the_stack():
    nets = copies(3)
    originals = [copy.deepcopy(n.state_dict()) for n in nets]
    stack = SeedStack(nets)
    for net, state in zip(nets, originals):
        for name, value in net.state_dict().items():
            assert torch.equal(value, state[name])
    with torch.no_grad():
        nets[1][0].weight.add_(1.0)
        stack.params["2.bias"][2].fill_(5.0)
    assert torch.equal(stack.params["0.weight"][1], nets[1][0].weight)
    assert float(nets[2][2].bias.detach()) == 5.0


def test_a_stacked_call_gives_each_copy_its_own_output_and_gradient():
    nets = copies(3)
    separate = copy.deepcopy(nets)
    stack = SeedStack(nets)
    x = torch.randn(3, 5, 3)
    with seeded.generators_in_use([torch.Generator() for _ in nets]):
        out = stack.call(lambda v: nets[0](v).pow(2).mean(), x)
    out.sum().backward()
    for k, net in enumerate(separate):
        loss = net(x[k]).pow(2).mean()
        loss.backward()
        torch.testing.assert_close(out[k], loss.detach())
        torch.testing.assert_close(stack.params["0.weight"].grad[k], net[0].weight.grad)


def quadratic(stack: SeedStack, nets: list[nn.Module], targets: torch.Tensor):
    """A per-seed loss: ||w_k - t_k||^2 over the first layer's weight."""

    def closure():
        w = stack.params["0.weight"]
        loss = (w - targets).pow(2).flatten(1).sum(1)
        return loss, {}

    return closure


def test_sam_per_seed_equals_sam_on_each_seed_alone():
    nets = copies(2)
    separate = copy.deepcopy(nets)
    stack = SeedStack(nets)
    targets = torch.randn(2, 4, 3)
    opts = [ClosureOptimizer([n[0].weight], 0.01, 1e-8, 1.0, objective=SAM(rho=0.3)) for n in nets]
    stacked = StackedOptimizer(opts, stack)
    for _ in range(5):
        stacked.step(quadratic(stack, nets, targets))
    for k, net in enumerate(separate):
        opt = ClosureOptimizer([net[0].weight], 0.01, 1e-8, 1.0, objective=SAM(rho=0.3))
        w, t = net[0].weight, targets[k]
        for _ in range(5):
            opt.step(lambda w=w, t=t: ((w - t).pow(2).sum(), {}))
        torch.testing.assert_close(nets[k][0].weight, net[0].weight, atol=1e-6, rtol=0)
        # The seed's own optimizer holds its slice of the moments, as its checkpoint needs.
        ours = opts[k].state_dict()["adam"]["state"][0]
        theirs = opt.state_dict()["adam"]["state"][0]
        torch.testing.assert_close(ours["exp_avg_sq"], theirs["exp_avg_sq"])


def test_clipping_is_per_seed():
    nets = copies(2)
    stack = SeedStack(nets)
    opts = [ClosureOptimizer([n[0].weight], 0.01, 1e-8, 0.5) for n in nets]
    stacked = StackedOptimizer(opts, stack)
    targets = torch.stack([nets[0][0].weight.detach() + 10.0, nets[1][0].weight.detach() + 1e-3])
    _, metrics = stacked.step(quadratic(stack, nets, targets))
    # Seed 0's gradient norm is 2 * 10 * sqrt(12), clipped to 0.5; seed 1's, 2e-3 * sqrt(12), not.
    assert metrics["final_grad_norm"] == pytest.approx([20 * 12**0.5, 2e-3 * 12**0.5], rel=1e-5)


def test_a_seed_with_a_non_finite_gradient_keeps_its_weights_and_the_others_step():
    nets = copies(2)
    stack = SeedStack(nets)
    opts = [ClosureOptimizer([n[0].weight], 0.1, 1e-8, 10.0) for n in nets]
    stacked = StackedOptimizer(opts, stack)
    before = [n[0].weight.detach().clone() for n in nets]
    targets = torch.zeros(2, 4, 3)
    targets[1, 0, 0] = float("nan")
    _, metrics = stacked.step(quadratic(stack, nets, targets))
    assert metrics["skipped_step"] == [0.0, 1.0]
    assert not torch.equal(nets[0][0].weight, before[0])
    assert torch.equal(nets[1][0].weight, before[1])
    assert [o.skipped for o in opts] == [0, 1]
