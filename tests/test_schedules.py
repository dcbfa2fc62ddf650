"""The run loop's schedules against hand-computed values."""

import pytest

from mbrl_sam.schedules import Clock, Every, Ratio, Stopwatch


class FakeTime:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ratio_counts_updates_from_the_end_of_the_prefill():
    # 32 replayed steps per agent step, batches of 16 x 4 = 64 steps: one update per 2 steps.
    ratio = Ratio(train_ratio=32, batch_steps=64, prefill=1000)
    assert [ratio.total(s) for s in (0, 999, 1000, 1001, 1002, 1010)] == [0, 0, 0, 0, 1, 5]


def test_ratio_with_catch_up_starts_with_a_burst_for_the_prefills_steps():
    ratio = Ratio(train_ratio=32, batch_steps=64, prefill=1000, catch_up=True)
    assert [ratio.total(s) for s in (999, 1000, 1001, 1010)] == [0, 500, 500, 505]


def test_ratio_can_ask_for_several_updates_per_step():
    # DreamerV3-like: ratio 1024 with 16 x 16 batches is 4 updates per agent step.
    assert Ratio(1024, 256, prefill=10).total(13) == 12


@pytest.mark.parametrize(
    "step,last,due",
    [(0, None, True), (0, 0, False), (499, 0, False), (500, 0, True), (500, 499, True)]
    + [(999, 500, False), (1000, 500, True), (1800, 700, True), (1002, 1000, False)],
)
def test_every_is_due_once_per_multiple_crossed_and_once_before_anything(step, last, due):
    assert Every(500).due(step, last) is due


def test_every_zero_is_never_due():
    assert not Every(0).due(0, None) and not Every(0).due(1000, 0)


def test_clock_is_due_after_its_seconds_and_again_after_a_reset():
    time = FakeTime()
    clock = Clock(60, now=time)
    time.now = 159.9
    assert not clock.due()
    time.now = 160.0
    assert clock.due()
    clock.reset()
    assert not clock.due()
    time.now = 220.0
    assert clock.due()


def test_stopwatch_adds_this_starts_seconds_to_the_carried_ones():
    time = FakeTime()
    watch = Stopwatch(carried=7.5, now=time)
    assert watch.seconds() == 7.5
    time.now = 130.0
    assert watch.seconds() == 37.5
