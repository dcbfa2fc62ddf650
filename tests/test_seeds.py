"""Seed streams: the values runs were made with, and no stream meeting another."""

from mbrl_sam import seeds


def test_streams_keep_the_values_existing_runs_were_made_with():
    assert seeds.training_episode(3, 7) == 3 * 100_003 + 7
    assert seeds.eval_env(2) == 10_002
    assert seeds.training_evaluation(2) == 1_002_000
    assert seeds.evaluate_script(2) == 2_002_000
    assert (seeds.MEASURE_IN_TRAINING, seeds.MEASURE_SCRIPT) == (3_000_000, 4_000_000)


def test_no_two_streams_share_an_episode_seed():
    config_seeds, episodes = range(10), range(999)  # up to 999 episodes per evaluation
    streams = {
        "training": {seeds.training_episode(s, e) for s in config_seeds for e in range(5000)},
        "evaluation": {seeds.training_evaluation(s) + i for s in config_seeds for i in episodes},
        "evaluate.py": {seeds.evaluate_script(s) + i for s in config_seeds for i in episodes},
        "measure": {seeds.MEASURE_IN_TRAINING + i for i in episodes},
        "measure.py": {seeds.MEASURE_SCRIPT + i for i in episodes},
    }
    names = list(streams)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not streams[a] & streams[b], (a, b)
    # Two config seeds' training episodes never meet either.
    assert len(streams["training"]) == 10 * 5000
