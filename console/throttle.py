"""One throttle in front of every password hash the console computes for a login.

A login costs one scrypt (16 MiB, tens of milliseconds of CPU): cheap for an operator,
and exactly what an anonymous flood wants to make the console spend.  Sixteen made-up
logins a second took the admin's pages from 26 to 793 ms (issue 13).  So every check
waits its turn here:

- at most :data:`CONCURRENCY` hashes at once, and at most :data:`RATE` started per
  second after a burst of :data:`BURST` (a token bucket): what a flood can take is a
  bounded share of one core, whatever it sends;
- at most :data:`WAITING` checks queue for a turn, in arrival order, and one source
  address holds at most one place: a single flooding address cannot fill the queue, so
  the admin's own login still gets a turn;
- a check that finds no place is refused at once (:class:`ThrottleBusy`), before any
  hashing, and answered the same whatever the name: it says nothing about accounts.

Waiting happens in the worker thread that runs the login (the event loop never blocks),
and the queue bound keeps the threads a flood can hold to :data:`WAITING`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from protocol.errors import GatepostError

CONCURRENCY = 1
RATE = 4.0
"""Hashes started per second once the burst is spent: 4 × ~40 ms is a sixth of one core."""
BURST = 4
WAITING = 8


class ThrottleBusy(GatepostError, RuntimeError):
    """No place in the queue for this check (full, or this address already has one)."""


class HashThrottle:
    """Admission and pacing for password checks; thread-safe, one per console process."""

    def __init__(
        self,
        *,
        concurrency: int = CONCURRENCY,
        rate: float = RATE,
        burst: int = BURST,
        waiting: int = WAITING,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency < 1 or rate <= 0 or burst < 1 or waiting < 0:
            raise ValueError("a throttle needs concurrency >= 1, rate > 0, burst >= 1, waiting >= 0")
        self.concurrency = concurrency
        self.rate = rate
        self.burst = burst
        self.waiting = waiting
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._holders: dict[str, int] = {}
        self._issued = 0
        self._served = 0
        self._running = 0
        self._tokens = float(burst)
        self._refilled = clock()
        self.refused = 0
        """Checks refused since start, for logs and tests."""

    @contextmanager
    def turn(self, address: str) -> Iterator[None]:
        """Hold one hashing turn for ``address``; raises :class:`ThrottleBusy` at once if there is no place."""
        with self._cond:
            if address in self._holders or len(self._holders) >= self.concurrency + self.waiting:
                self.refused += 1
                raise ThrottleBusy(f"password checks are queued to the limit (address {address or '-'})")
            ticket = self._issued
            self._issued += 1
            self._holders[address] = ticket
        try:
            self._wait(ticket)
            try:
                yield
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._holders.pop(address, None)
                self._cond.notify_all()

    def _wait(self, ticket: int) -> None:
        """Block until ``ticket`` is first in line, a hash may run, and the bucket has a token."""
        with self._cond:
            self._cond.wait_for(lambda: self._served == ticket and self._running < self.concurrency)
            self._served += 1
            self._running += 1
            self._refill()
            delay = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            self._tokens -= 1  # may go negative: the next in line waits for it to be paid back
            self._cond.notify_all()
        if delay > 0:
            self._sleep(delay)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
