"""The random-action reference a task's learned returns are read against."""

import numpy as np

from envs import make_env
from mbrl_sam.environment import random_action
from mbrl_sam.evaluation.episodes import random_returns


def test_random_returns_play_uniform_random_actions_on_the_given_resets():
    with make_env("dmc/cartpole-swingup", seed=0) as env:
        got = random_returns(env, 2, reset_seed=7, action_seed=3)
    # The same episodes by hand: reset with 7 and 8, actions from one generator seeded 3.
    rng, expected = np.random.default_rng(3), []
    with make_env("dmc/cartpole-swingup", seed=0) as env:
        for i in range(2):
            env.reset(seed=7 + i)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated = env.step(random_action(env.spec, rng))
                total, done = total + float(reward), terminated or truncated
            expected.append(total)
    assert got == expected
    assert 0.0 < got[0] < 200.0 and got[0] != got[1]  # swingup rewards a hanging pole a little
