"""A few writer threads for many outboxes: the fleet harness's answer to a thread per outbox.

An outbox commits on the caller's thread when the caller waits (a scan, ``append``);
what must not block its caller — ``submit`` and the console's acknowledgements — is
committed by a writer, and a failed disk is retried by it on a timer (edge/outbox.py).
Hundreds of gates in one process (simulator/fleet.py) with a writer thread each would be
hundreds of threads that mostly sleep; :class:`WriterPool` gives them a few threads that
take whichever outbox has work, each outbox's passes serialised by its own commit lock,
so its commits stay in order.  A gate agent's outbox, given no pool, makes its own pool of
one thread: the same code path as the fleet's, so what the harness measures is what a
gate runs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("gatepost.edge.writers")


class WriterPool:
    """``threads`` workers running queued commit passes; a pass can ask to run again at a time."""

    def __init__(self, threads: int = 4, *, name: str = "outbox-writers") -> None:
        self._ready: deque[object] = deque()
        self._queued: set[int] = set()
        self._timers: list[tuple[float, int, object]] = []
        self._passes: dict[int, Callable[[], float | None]] = {}
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def register(self, owner: object, run_pass: Callable[[], float | None]) -> None:
        """``run_pass()`` commits what ``owner`` has queued; it returns when to be run again
        (a monotonic time, for a disk retry) or ``None``."""
        with self._cond:
            self._passes[id(owner)] = run_pass

    def unregister(self, owner: object) -> None:
        with self._cond:
            self._passes.pop(id(owner), None)

    def kick(self, owner: object) -> None:
        """Run ``owner``'s pass soon (at most one queued pass per owner)."""
        key = id(owner)
        with self._cond:
            if key in self._queued or key not in self._passes:
                return
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    while self._timers and self._timers[0][0] <= now:
                        _, _, key = heapq.heappop(self._timers)
                        if key not in self._queued and key in self._passes:
                            self._queued.add(key)  # type: ignore[arg-type]
                            self._ready.append(key)
                    if self._ready:
                        break
                    timeout = self._timers[0][0] - now if self._timers else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                key = self._ready.popleft()
                self._queued.discard(key)  # type: ignore[arg-type]  # a kick from now on runs it again
                run_pass = self._passes.get(key)  # type: ignore[call-overload]
            again: float | None = None
            if run_pass is not None:
                try:
                    again = run_pass()
                except Exception:
                    log.exception("an outbox's commit pass failed")
            with self._cond:
                if again is not None and key in self._passes:
                    heapq.heappush(self._timers, (again, next(self._order), key))
                    self._cond.notify()
