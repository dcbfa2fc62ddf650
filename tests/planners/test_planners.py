"""MPPI and CEM: known optima on a toy problem, bounds, warm start, prior trajectories."""

import pytest
import torch

from mbrl_sam.errors import ConfigError
from mbrl_sam.planners import CEM, MPPI, PlannerConfig, make_planner

CPU = torch.device("cpu")
CLASSES = [MPPI, CEM]


def point_mass_score(x0: torch.Tensor, goal: torch.Tensor):
    """x_{t+1} = x_t + 0.5 a_t; return = -sum_t ||x_{t+1} - goal||^2 (a quadratic cost)."""

    def score(actions: torch.Tensor) -> torch.Tensor:
        x = x0.expand(actions.shape[0], -1)
        ret = torch.zeros(actions.shape[0])
        for t in range(actions.shape[1]):
            x = x + 0.5 * actions[:, t]
            ret = ret - (x - goal).pow(2).sum(-1)
        return ret

    return score


class Recorder:
    """A score that remembers every candidate batch it saw."""

    def __init__(self, score):
        self.score, self.seen = score, []

    def __call__(self, actions):
        self.seen.append(actions.clone())
        return self.score(actions)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("action_dim,horizon", [(2, 1), (2, 3), (21, 1)])
def test_finds_the_closed_form_optimum_of_a_quadratic(cls, action_dim, horizon):
    torch.manual_seed(0)
    x0 = torch.rand(action_dim) - 0.5
    c = torch.rand(action_dim) * 1.6 - 0.8  # the optimal first action, inside (-1, 1)
    goal = x0 + 0.5 * c
    # a_0 = c reaches the goal at once and a_t = 0 then stays there: every term is 0.
    cfg = PlannerConfig(horizon=horizon, samples=1024, elites=32)
    planner = cls(action_dim, cfg, CPU)
    action = planner.plan(point_mass_score(x0, goal)).action
    assert planner.iterations == (8 if action_dim >= 20 else 6)
    assert action.shape == (action_dim,)
    assert (action - c).abs().max() < 0.1, (action, c)


@pytest.mark.parametrize("cls", CLASSES)
def test_optimum_beyond_the_bounds_gives_actions_on_the_bounds(cls):
    torch.manual_seed(1)
    x0 = torch.zeros(3)
    goal = torch.tensor([5.0, -5.0, 5.0])  # needs |a| > 1: the best feasible is the corner
    corner = torch.tensor([1.0, -1.0, 1.0])
    planner = cls(3, PlannerConfig(horizon=2), CPU)
    action = planner.plan(point_mass_score(x0, goal)).action
    torch.testing.assert_close(action, corner, atol=0.05, rtol=0)
    # With few elites, all of them are clamped samples at the corner, so the plan is exact.
    exact = cls(3, PlannerConfig(horizon=1, elites=8), CPU).plan(point_mass_score(x0, goal)).action
    torch.testing.assert_close(exact, corner, atol=0, rtol=0)
    for explore in (False, True):
        for _ in range(5):
            a = planner.plan(point_mass_score(x0, torch.randn(3) * 3), explore=explore).action
            assert a.shape == (3,) and a.abs().max() <= 1.0


@pytest.mark.parametrize("cls", CLASSES)
def test_explore_adds_noise_on_top_of_the_same_plan(cls):
    score = point_mass_score(torch.zeros(2), torch.tensor([0.1, -0.1]))
    actions = []
    for explore in (False, True):
        torch.manual_seed(4)
        actions.append(cls(2, PlannerConfig(horizon=2), CPU).plan(score, explore=explore).action)
    assert (actions[0] - actions[1]).abs().max() > 1e-4


@pytest.mark.parametrize("cls", CLASSES)
def test_warm_start_is_the_previous_mean_shifted_by_one_step(cls, monkeypatch):
    torch.manual_seed(2)
    # A distinct optimum per step, so shifted, unshifted and zero warm starts all differ.
    target = torch.tensor([[0.2, -0.2], [0.4, -0.4], [0.6, -0.6], [0.8, -0.8]])
    score = Recorder(lambda a: -(a - target).pow(2).sum((1, 2)))
    planner = cls(2, PlannerConfig(horizon=4), CPU)
    previous = planner.plan(score).mean.clone()
    assert (previous - target).abs().max() < 0.1
    expected = torch.cat([previous[1:], torch.zeros(1, 2)])
    # Zero noise: the first iteration then samples exactly the initial mean.
    monkeypatch.setattr(torch, "randn", lambda *shape, **kw: torch.zeros(*shape, **kw))
    score.seen.clear()
    planner.plan(score, warm=previous)
    assert score.seen[0].shape == (512, 4, 2)
    torch.testing.assert_close(score.seen[0], expected.expand(512, 4, 2), rtol=0, atol=0)
    score.seen.clear()
    planner.plan(score)  # no warm start: an episode's first step
    torch.testing.assert_close(score.seen[0], torch.zeros(512, 4, 2), rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES)
def test_prior_trajectories_are_in_every_iteration_and_a_perfect_one_wins(cls):
    torch.manual_seed(3)
    x0, goal = torch.zeros(2), torch.tensor([0.35, -0.2])
    best = torch.tensor([0.7, -0.4])  # exactly reaches the goal at the first step
    prior = torch.rand(4, 3, 2) * 2 - 1
    prior[0] = torch.stack([best, torch.zeros(2), torch.zeros(2)])  # then stays there
    rec = Recorder(point_mass_score(x0, goal))
    cfg = PlannerConfig(horizon=3, samples=64, elites=1, prior_trajectories=4)
    planner = cls(2, cfg, CPU)
    action = planner.plan(rec, prior=prior).action
    assert len(rec.seen) == planner.iterations
    for candidates in rec.seen:
        assert candidates.shape == (64, 3, 2)
        torch.testing.assert_close(candidates[:4], prior, rtol=0, atol=0)
    # With a single elite the best candidate (the perfect prior) is the plan.
    torch.testing.assert_close(action, best, rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("action_dim,iterations", [(19, 6), (20, 8), (38, 8)])
def test_more_iterations_for_high_dimensional_actions(cls, action_dim, iterations):
    rec = Recorder(lambda a: -a.pow(2).sum((1, 2)))
    cls(action_dim, PlannerConfig(samples=64, elites=8), CPU).plan(rec)
    assert len(rec.seen) == iterations


@pytest.mark.parametrize("cls", CLASSES)
def test_sampling_spread_starts_at_max_std_and_never_falls_below_min_std(cls):
    torch.manual_seed(7)
    rec = Recorder(lambda a: -a.pow(2).sum((1, 2)))
    # A single elite has zero spread, so every later iteration samples at exactly min_std.
    cfg = PlannerConfig(horizon=2, samples=2048, elites=1, min_std=0.2, max_std=0.4)
    cls(2, cfg, CPU).plan(rec)
    spreads = [float(candidates.std(0).mean()) for candidates in rec.seen]
    assert spreads[0] == pytest.approx(0.4, rel=0.05)
    assert spreads[1:] == pytest.approx([0.2] * (len(spreads) - 1), rel=0.05)


def test_mppi_weights_are_a_temperature_softmax_and_cem_weights_are_uniform():
    values = torch.tensor([1.0, 3.0, 2.0])
    mppi = MPPI(1, PlannerConfig(temperature=0.5), CPU)
    expected = torch.exp(0.5 * values) / torch.exp(0.5 * values).sum()
    torch.testing.assert_close(mppi._elite_weights(values), expected)
    cem = CEM(1, PlannerConfig(), CPU)
    torch.testing.assert_close(cem._elite_weights(values), torch.ones(3) / 3)


def test_nan_scores_count_as_zero():
    torch.manual_seed(5)
    # Sequences starting above 0.5 score NaN; all others score below 0, so NaN (as 0) wins.
    score = lambda a: torch.where(a[:, 0, 0] > 0.5, torch.nan, -1.0 - a[:, 0, 0].abs())  # noqa: E731
    action = CEM(1, PlannerConfig(horizon=1), CPU).plan(score).action
    assert action.item() > 0.5


def test_bad_names_and_settings_are_config_errors():
    with pytest.raises(ConfigError, match="'nosuch'.*'mppi'.*'cem'"):
        make_planner("nosuch", 2, PlannerConfig(), CPU)
    assert isinstance(make_planner("cem", 2, PlannerConfig(), CPU), CEM)
    bad_settings = [("horizon", 0), ("iterations", 0), ("elites", 0), ("elites", 600)]
    bad_settings += [("prior_trajectories", 512), ("min_std", 0.0), ("min_std", 3.0)]
    bad_settings += [("temperature", 0.0)]
    for name, value in bad_settings:
        with pytest.raises(ValueError, match=f"{name}={value!r}"):
            MPPI(2, PlannerConfig(**{name: value}), CPU)
    planner = MPPI(2, PlannerConfig(horizon=3), CPU)
    for prior in (torch.zeros(4, 2, 2), torch.zeros(4, 3, 3), torch.zeros(3, 2)):
        with pytest.raises(ValueError, match="prior"):
            planner.plan(lambda a: a.sum((1, 2)), prior=prior)


@pytest.mark.parametrize("cls", CLASSES)
def test_a_plan_depends_only_on_its_inputs_not_on_earlier_calls(cls):
    score = point_mass_score(torch.zeros(2), torch.ones(2) * 0.2)
    warm = cls(2, PlannerConfig(), CPU).plan(score).mean
    used, fresh = cls(2, PlannerConfig(), CPU), cls(2, PlannerConfig(), CPU)
    used.plan(point_mass_score(torch.zeros(2), -torch.ones(2)))  # an unrelated earlier call
    plans = []
    for planner in (used, fresh):
        torch.manual_seed(6)
        plans.append(planner.plan(score, warm))
    torch.testing.assert_close(plans[0].action, plans[1].action, rtol=0, atol=0)
    torch.testing.assert_close(plans[0].mean, plans[1].mean, rtol=0, atol=0)
