"""The STORM agent: acting with its window of past steps, updates on real Atari frames with
erm and sam, open-loop predictions past the learned positions, a short real run from pixels,
and a stopped run resuming bit for bit."""

import numpy as np
import pytest
import torch

import train
from agents import make_agent
from agents.run import load_config, validate_config
from envs import make_env
from mbrl_sam.environment import EnvSpec, random_action
from mbrl_sam.errors import ConfigError
from mbrl_sam.evaluation.model_error import open_loop_errors, performance_gap, record_episode
from mbrl_sam.replay import SequenceReplay

SMALL = ["agent=storm", "size=tiny", "agent.batch_size=4", "agent.batch_length=20"]
SMALL += ["agent.behavior.horizon=5", "agent.act_context=6"]
STATE = EnvSpec((5,), np.float32, 2, False, 1)


def agent(*overrides, spec=STATE):
    torch.manual_seed(0)
    return make_agent(load_config([*SMALL, *overrides]), spec, torch.device("cpu"))


def pong_replay(steps: int = 120):
    env = make_env("atari/Pong", obs="pixels", seed=0)
    replay = SequenceReplay(steps + 1, env.spec.obs_shape, np.uint8, env.spec.action_dim, seed=0)
    rng = np.random.default_rng(0)
    replay.add(env.reset(seed=0), np.zeros(env.spec.action_dim, np.float32), 0.0, True, False)
    for _ in range(steps):
        action = random_action(env.spec, rng)
        obs, reward, terminated, _ = env.step(action)
        replay.add(obs, action, reward, False, terminated)
    return env, replay


def test_acting_keeps_a_window_of_the_last_steps_and_restarts_with_an_episode():
    a = agent()
    obs = np.ones(5, np.float32)
    action, state = a.act(obs, None, True, explore=True)
    assert action.shape == (2,) and np.abs(action).max() <= 1
    assert state[0].shape == (1, 1, 16, 16) and state[1].shape == (1, 1, 2)
    for _ in range(8):
        action, state = a.act(obs, state, False, explore=False)
    assert state[0].shape[1] == state[1].shape[1] == 6  # act_context
    assert torch.equal(state[1][0, -1], torch.as_tensor(action))
    assert np.isfinite(a.state_value(obs, state))
    _, state = a.act(obs, state, True, explore=True)
    assert state[0].shape[1] == 1


@pytest.mark.parametrize("objective", ["erm", "sam", "asam"])
def test_updates_on_real_pong_frames_change_every_group_and_log_finite_metrics(objective):
    env, replay = pong_replay()
    a = agent(f"objective={objective}", "task=atari/Pong", "obs=pixels", spec=env.spec)
    before = {k: v.clone() for k, v in a.world_model.state_dict().items()}
    actor_before = [p.clone() for p in a.ac.actor.parameters()]
    for step in range(2):
        metrics = a.update(replay.sample(4, 20), step)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert ("model/sharpness" in metrics) == (objective != "erm")
    assert metrics["behavior/imag_return"] == metrics["behavior/imag_return"]
    for name, group in a.world_model.param_groups().items():
        assert any(not torch.equal(p, before[k]) for k, p in a.world_model.named_parameters()
                   if any(p is q for q in group)), name  # fmt: skip
    assert any(not torch.equal(p, q) for p, q in zip(a.ac.actor.parameters(), actor_before))
    env.close()


def test_open_loop_runs_past_the_learned_positions_with_a_sliding_window():
    env, _ = pong_replay(1)
    a = agent("task=atari/Pong", "obs=pixels", spec=env.spec)
    episode = record_episode(a, env, seed=0, max_steps=60)
    horizon = 40  # longer than the 19 positions the transformer learns at batch_length 20
    errors = open_loop_errors(a, [episode], horizon, stride=7)
    assert {"reward_abs", "latent_mse", "obs_mse"} <= set(errors)
    assert all(len(v) == horizon and np.all(np.isfinite(v)) for v in errors.values())
    gap = performance_gap(a, [episode])
    assert np.isfinite(gap["gap"]) and gap["real_returns"] == [float(episode["reward"].sum())]
    env.close()


@pytest.mark.parametrize(
    "override,message",
    [
        ("planner=mppi", "planner='mppi' is not valid for agent=storm"),
        ("agent.act_context=20", "agent.act_context=20 is not valid"),
        ("agent.behavior.horizon=25", "agent.behavior.horizon=25 is not valid"),
        ("agent.model.heads=3", "agent.model.dim=64 is not valid"),
    ],
)
def test_bad_settings_are_refused_in_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        agent(override)
    assert "\n" not in str(err.value)


def test_group_names_for_objective_perturb_come_from_the_storm_model(tmp_path):
    with pytest.raises(ConfigError, match="encoder, transformer, decoder, reward, continue"):
        validate_config(load_config([*SMALL, "objective.perturb=dynamics"]), tmp_path)


PONG = [*SMALL, "task=atari/Pong", "obs=pixels", "prefill=100", "train_ratio=16"]
PONG += ["eval_every=0", "eval_episodes=1", "progress=false", "tensorboard=false"]


@pytest.mark.parametrize("objective", ["erm", "sam"])
def test_a_short_real_pong_run_from_pixels(tmp_path, objective):
    cfg = load_config([*PONG, f"objective={objective}", "steps=400", f"run_dir={tmp_path}"])
    result = train.run(cfg, tmp_path)
    assert np.isfinite(result["eval_return"])
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["counters"]["agent_steps"] == 100 and state["counters"]["updates"] == 15
    assert state["agent_name"] == "storm"


def test_a_stopped_and_resumed_pong_run_ends_bit_identical(tmp_path):
    args = [*PONG, "objective=sam", "seed=2"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train.run(load_config([*args, "steps=320", f"run_dir={straight}"]), straight)
    for steps in (60, 200, 320):  # stopped in the prefill, then after learning started
        train.run(load_config([*args, f"steps={steps}", "checkpoint_minutes=1e-6",
                               f"run_dir={cut}"]), cut)  # fmt: skip
    a, b = (torch.load(d / "checkpoint.pt", weights_only=False)["agent"] for d in (straight, cut))
    for part in ("wm", "ac"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def test_the_flatness_tools_measure_its_world_model_with_dropout_on():
    """Hessian-vector products through the transformer, dropout included (the probe fixes its
    draws): the operator is symmetric, and the top eigenvalue is positive and finite."""
    from mbrl_sam.evaluation.flatness import MeasureConfig, sharpness_measures, world_model_probe

    a = agent()
    g = torch.Generator().manual_seed(0)
    is_first = torch.zeros(2, 20, dtype=torch.bool)
    is_first[:, 0] = True
    batch = {"obs": torch.randn(2, 20, 5, generator=g), "action": torch.rand(2, 20, 2) * 2 - 1,
             "reward": torch.randn(2, 20, generator=g), "is_first": is_first,
             "is_terminal": torch.zeros(2, 20, dtype=torch.bool)}  # fmt: skip
    cfg = MeasureConfig(groups="transformer", lanczos_steps=4, trace_samples=1)
    probe = world_model_probe(a, batch, cfg)
    assert a.world_model.training and probe.dim == sum(
        p.numel() for p in a.world_model.param_groups()["transformer"]
    )
    u, v = torch.randn(probe.dim), torch.randn(probe.dim)
    assert float(u @ probe.hvp(v)) == pytest.approx(float(v @ probe.hvp(u)), rel=1e-3)
    out = sharpness_measures(a, batch, cfg)
    assert 0 < out["top_eigenvalue"] < float("inf") and np.isfinite(out["sam_sharpness"])
