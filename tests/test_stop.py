"""Stop requests from signals: at once in start-up, at safe points while training."""

import os
import signal

import pytest

from mbrl_sam.stop import StopSignal


def test_outside_training_a_request_interrupts_at_once():
    stop = StopSignal()
    with pytest.raises(KeyboardInterrupt):
        stop.request()
    assert stop.is_set()


def test_while_deferred_requests_only_set_the_flag_however_many(capfd):
    stop = StopSignal()
    with stop.deferred():
        for _ in range(3):
            stop.request("SIGTERM")
    assert stop.is_set()
    assert capfd.readouterr().err.count("SIGTERM: stopping at the next safe point") == 1


def test_abandonable_work_is_interrupted_at_once_and_a_pending_request_stops_it_on_entry():
    stop = StopSignal()
    with stop.deferred():
        with pytest.raises(KeyboardInterrupt), stop.abandonable():
            stop.request()
        entered = False
        with pytest.raises(KeyboardInterrupt), stop.abandonable():
            entered = True
        assert not entered
        stop.request()  # deferred again after the abandonable block
    stop.clear()
    assert not stop.is_set()


def test_real_signals_during_a_deferred_block_cannot_interrupt_it():
    stop = StopSignal()
    previous = signal.signal(signal.SIGTERM, lambda s, f: stop.request("SIGTERM"))
    try:
        finished = False
        with stop.deferred():
            for _ in range(5):
                os.kill(os.getpid(), signal.SIGTERM)
            finished = True
        assert finished and stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)  # outside: at once
    finally:
        signal.signal(signal.SIGTERM, previous)
