"""A stop asked for by a signal, honoured where stopping loses nothing.

Outside training (start-up) a request interrupts at once: nothing is lost. While the trainer
runs (`deferred()`), a request only sets a flag that the trainer checks between updates and
steps, so no signal can land inside an update or a checkpoint write; a second or third signal
changes nothing. Work that can simply be redone after a resume (an evaluation) is marked
`abandonable()` and is interrupted at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator


class StopSignal:
    """A stop request: call `request()` from a signal handler."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._deferred = 0
        self._abandonable = 0
        self.training = False  # set while a trainer runs; tells start-up stops from others

    def request(self, reason: str = "a stop signal") -> None:
        """Ask to stop: at once where nothing is lost, else at the trainer's next safe point."""
        first = not self._event.is_set()
        self._event.set()
        if self._deferred and not self._abandonable:
            if first:
                # os.write, not print: a signal may land while the main thread is printing.
                os.write(2, f"\n{reason}: stopping at the next safe point.\n".encode())
            return
        raise KeyboardInterrupt

    def is_set(self) -> bool:
        """True once a stop was requested."""
        return self._event.is_set()

    def set(self) -> None:
        """Request a stop without interrupting anything (as `request` from a deferred place)."""
        self._event.set()

    def clear(self) -> None:
        """Forget a request (a new run in the same process)."""
        self._event.clear()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within: requests wait for the next safe point."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1

    @contextlib.contextmanager
    def abandonable(self) -> Iterator[None]:
        """Within a deferred block: requests interrupt at once (the block's work is redone on
        resume); a request already pending interrupts on entry."""
        self._abandonable += 1
        try:
            if self._event.is_set():
                raise KeyboardInterrupt
            yield
        finally:
            self._abandonable -= 1
