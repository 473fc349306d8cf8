"""Stopping a long-running command on SIGTERM (systemd, docker stop) or SIGINT (Ctrl-C), safely.

A signal handler runs on the main thread between two bytecodes, so a handler that takes
a lock — ``threading.Event.set`` does — can run while the main thread already holds that
same lock inside ``Event.wait`` and deadlock: the process then ignores its stop until
systemd kills it, and the gate never says ``stopped``.  The handler here only appends to
a list (no lock); the main loop sleeps in short steps and looks.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

POLL_S = 0.1


class StopSignals:
    """Catch SIGTERM and SIGINT from now on; :meth:`wait` says whether one came."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous = {
            signum: signal.signal(signum, self._catch) for signum in (signal.SIGTERM, signal.SIGINT)
        }

    def __enter__(self) -> StopSignals:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Put back the handlers there were before (a command run inside another program, a test)."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _catch(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)  # list.append takes no lock a waiting thread could hold

    @property
    def name(self) -> str:
        """The first signal's name in lower case (``sigterm``), for the reason a process stopped."""
        return signal.Signals(self.received[0]).name.lower() if self.received else ""

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout``; True as soon as a stop signal has come."""
        deadline = time.monotonic() + timeout
        while not self.received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(POLL_S, remaining))
        return True
