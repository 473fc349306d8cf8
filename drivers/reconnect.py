"""Reading a device that comes and goes: open it, read until it fails, close it, wait, open it again.

A USB scanner is unplugged, a serial server or an IP camera drops off the network, an
RDM6300's adapter works loose: each reader then waits and tries again until the device is
back or the reader is closed.  :func:`keep_reading` is that loop, written once.  The
driver supplies what is its own — how to open, read and close its device, and which
exceptions mean "not there" rather than "a bug" — and is told each time the device could
not be opened or was lost, so its states, counters and log lines stay its own.  The loop
owns the rest:

- the wait between attempts (:class:`Backoff`): it doubles while the device stays away,
  so a missing device is not hammered, with jitter, so gates that lost one serial server
  together do not all knock at the same instant; a device that had opened and then failed
  is retried after the shortest wait, since a replugged one is usually back within a second;
- stopping: setting the driver's ``stop`` event ends the loop, at once even in the middle of
  a long wait.  A read that fails while stopping was cut short by the close, so it is not
  reported as a lost device.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from protocol.errors import GatepostError

__all__ = ["Backoff", "DeviceLost", "describe", "keep_reading"]

D = TypeVar("D")
"""Whatever ``open`` returns and ``read`` and ``close`` take: a serial port, a video capture."""

LostCallback = Callable[[Exception, bool], None]
"""Called with the error and whether the device had been opened (False: it could not be)."""


class DeviceLost(GatepostError, OSError):
    """Raised by a driver's ``open`` or ``read`` to say the device is gone, and why.

    For a failure with no exception of its own (a camera that opens but sends no frame),
    and to wrap one from a library that may raise anything (OpenCV), so that a bug in
    the driver's own code is still a bug and not an endless reconnect.
    :func:`keep_reading` always treats it as the device being gone.
    """


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before the next attempt after ``failures`` in a row: ``min_s``, doubling up to ``max_s``.

    Each wait is shortened by a random fraction of at most ``jitter``; 0 gives a fixed pause
    when ``min_s == max_s``.
    """

    min_s: float
    max_s: float
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.min_s <= 0 or self.max_s < self.min_s:
            raise ValueError(f"need 0 < min_s <= max_s for a backoff, got {self.min_s} and {self.max_s}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter is a fraction from 0 to 1, got {self.jitter}")

    def delay(self, failures: int) -> float:
        # The exponent is capped so a device away for days cannot overflow the float.
        delay = min(self.max_s, self.min_s * 2 ** min(failures - 1, 30))
        return delay * random.uniform(1 - self.jitter, 1.0)


def keep_reading(
    open: Callable[[], D],
    read: Callable[[D], None],
    close: Callable[[D], None],
    *,
    stop: threading.Event,
    backoff: Backoff,
    on_lost: LostCallback,
    errors: tuple[type[Exception], ...] = (),
    reopen_at_end: bool = False,
) -> None:
    """Open, read and close the device again and again, on the calling thread, until ``stop`` is set.

    ``open`` returns the open device or raises.  ``read`` reads it until ``stop`` is set,
    returns early if the device has ended (a video file played out), and raises if it
    fails; it is where a driver says it is connected, since what that means is its own (a
    port that opened, a camera that sent its first frame).  ``close`` is called once for
    every device that opened, after ``on_lost`` if it was lost.

    An exception from ``open`` or ``read`` that is one of ``errors`` or a :class:`DeviceLost`
    goes to ``on_lost`` and is followed by a wait; any other is a bug and propagates, after
    ``close``.  A device that ended is opened again at once with ``reopen_at_end``, else the
    loop returns.
    """
    lost = (DeviceLost, *errors)
    failures = 0
    while not stop.is_set():
        try:
            device = open()
        except lost as exc:
            failures += 1
            on_lost(exc, False)
            stop.wait(backoff.delay(failures))
            continue
        failures = 0
        try:
            if not stop.is_set():  # else it was closed while this was opening
                read(device)
        except lost as exc:
            if not stop.is_set():
                failures = 1
                on_lost(exc, True)
        finally:
            close(device)
        if failures:
            stop.wait(backoff.delay(failures))
        elif not reopen_at_end and not stop.is_set():
            return


def describe(error: BaseException) -> str:
    """The error's text for a state detail or a log line: never empty, never a page of it."""
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "…"
