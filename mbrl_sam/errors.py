"""Errors raised for bad user input, reported at start-up without a traceback, and for runs that
cannot go on."""

import errno


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the value and the valid choices."""


def check_choice(name: str, value: object, choices: list | tuple | dict) -> None:
    """Raise ConfigError unless `value` is one of `choices`."""
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ConfigError(f"{name}={value!r} is not valid; choose one of: {listed}")


def check_positive(name: str, value: float) -> None:
    """Raise ConfigError unless `value` is a number greater than zero."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{name}={value!r} is not valid; it must be a number > 0")


def check_nonnegative(name: str, value: float) -> None:
    """Raise ConfigError unless `value` is a number >= 0 (NaN is not)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ConfigError(f"{name}={value!r} is not valid; it must be a number >= 0")


def check_int(name: str, value: object, minimum: int) -> None:
    """Raise ConfigError unless `value` is an integer >= `minimum`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name}={value!r} is not valid; it must be an integer >= {minimum}")


def check_range(name: str, value: object, low: float, high: float, high_open: bool = False) -> None:
    """Raise ConfigError unless `value` is a number in [low, high] (or [low, high))."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (low <= value < high if high_open else low <= value <= high):
        bracket = ")" if high_open else "]"
        raise ConfigError(
            f"{name}={value!r} is not valid; it must be a number in [{low}, {high}{bracket}"
        )


class RunError(RuntimeError):
    """A run cannot go on (disk full, diverged, corrupt files); the message says why and what
    was kept."""


def is_disk_full(err: BaseException | None) -> bool:
    """True when `err`, or an error it was raised from or during, is "no space left on device"
    (torch's zip writer, for one, turns it into a RuntimeError and keeps it as the context)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            return True
        err = err.__cause__ or err.__context__
    return False
