"""Run locks and the status of a sweep's runs."""

import json
import subprocess
import sys

from mbrl_sam.sweep.state import acquire, hand_over, lock_holder, record_exit, release, run_state


def test_a_lock_is_held_while_its_process_lives_and_taken_over_once_it_is_dead(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert acquire(tmp_path, sleeper.pid)
        assert not acquire(tmp_path, 12345)  # a second sweep: the run is running
        assert lock_holder(tmp_path)["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert lock_holder(tmp_path) is None  # its holder died without releasing it
    assert acquire(tmp_path, 4242)
    hand_over(tmp_path, sleeper.pid)
    assert lock_holder(tmp_path) is None
    release(tmp_path)
    assert not (tmp_path / "sweep.lock").exists()


def test_the_state_of_a_run_comes_from_its_progress_and_attempts(tmp_path):
    assert run_state("r", tmp_path).state == "pending"
    (tmp_path / "progress.json").write_text(
        json.dumps(
            {"env_steps": 250, "steps": 1000, "finished": False, "last_eval": 3.5, "hours": 0.5}
        )
    )
    record_exit(tmp_path, 130)
    state = run_state("r", tmp_path)
    assert state.state == "stopped" and state.eta_hours == 1.5 and state.failures == 0
    record_exit(tmp_path, 1)
    assert run_state("r", tmp_path).state == "failed" and run_state("r", tmp_path).failures == 1
    (tmp_path / "progress.json").write_text(json.dumps({"env_steps": 1000, "finished": True}))
    assert run_state("r", tmp_path).state == "finished"


def test_a_seed_group_is_finished_when_every_seed_is_and_as_far_as_its_slowest(tmp_path):
    for seed, (steps, finished, last) in enumerate([(1000, True, 4.0), (600, False, 2.0)]):
        (tmp_path / f"seed-{seed}").mkdir()
        progress = {"env_steps": steps, "steps": 1000, "finished": finished, "last_eval": last}
        (tmp_path / f"seed-{seed}" / "progress.json").write_text(json.dumps(progress))
    state = run_state("group", tmp_path)
    assert (state.state, state.env_steps, state.last_eval) == ("stopped", 600, 3.0)
    (tmp_path / "seed-1" / "progress.json").write_text(
        json.dumps({"env_steps": 1000, "steps": 1000, "finished": True, "last_eval": 6.0})
    )
    assert run_state("group", tmp_path).state == "finished"
