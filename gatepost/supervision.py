"""Liveness and the systemd watchdog: ping only while every part that matters is making progress.

A process whose main thread still runs can be useless: the thread that commits events
is stuck on a dead SD card, a reader's thread is blocked inside the decision, the relay
watchdog's thread died.  Pinging systemd's watchdog from a timer would keep such a
process "active" for ever.  So each part that matters says, when asked, *when it last
showed progress* — a probe it answered, a call that finished, a thread still alive — and
the :class:`Supervisor` sends ``WATCHDOG=1`` only while no part has been silent for longer
than the watchdog period.  Once one has, the pings stop and systemd kills and restarts the
process (``WatchdogSec=``), and the unit's ``ExecStopPost=`` puts the lock relay off.

Parts are small objects with ``name`` and ``progress_at(now)``; this module holds the
kinds both the gate and the console use.  :mod:`edge.supervision` and
:mod:`console.supervision` say which parts each process has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from gatepost.sdnotify import Notifier

log = logging.getLogger("gatepost.supervision")

NEVER = float("-inf")
"""``progress_at`` of a part that can never make progress again (its thread died)."""


class Part(Protocol):
    """Something that must keep making progress; ``progress_at`` must return at once."""

    name: str

    def progress_at(self, now: float) -> float:
        """The monotonic time it last showed progress (``now`` if it is fine now)."""
        ...


@dataclass(frozen=True, slots=True)
class Wedged:
    name: str
    silent_s: float

    def __str__(self) -> str:
        return self.name if self.silent_s == float("inf") else f"{self.name} ({self.silent_s:.1f} s)"


class InFlight:
    """Calls that must finish: a part is wedged while one has run longer than the deadline.

    ``with tracker:`` around a call records when the calling thread entered it (nested
    calls on one thread count once, from the outermost), so an idle path is always fine
    and a busy one is fine as long as each call ends.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._since: dict[int, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> InFlight:
        ident = threading.get_ident()
        with self._lock:
            since, depth = self._since.get(ident, (time.monotonic(), 0))
            self._since[ident] = (since, depth + 1)
        return self

    def __exit__(self, *exc: object) -> None:
        ident = threading.get_ident()
        with self._lock:
            since, depth = self._since[ident]
            if depth <= 1:
                del self._since[ident]
            else:
                self._since[ident] = (since, depth - 1)

    def progress_at(self, now: float) -> float:
        with self._lock:
            return min((since for since, _ in self._since.values()), default=now)


class FutureProbe:
    """A part that answers a request on its own thread: wedged while a request goes unanswered.

    ``ask()`` sends one request and returns a future the part resolves; an answer that is
    an exception still counts as an answer (a full disk is the disk's failure, and a
    restart would not mend it).  One request is outstanding at a time.
    """

    def __init__(self, name: str, ask: Callable[[], Future[Any]]) -> None:
        self.name = name
        self._ask = ask
        self._pending: Future[Any] | None = None
        self._asked_at = 0.0

    def progress_at(self, now: float) -> float:
        if self._pending is not None and not self._pending.done():
            return self._asked_at
        self._asked_at = now
        try:
            self._pending = self._ask()
        except Exception as exc:  # a closed component: it answered, in its way
            log.debug("%s: probe refused: %s", self.name, exc)
            self._pending = None
        return now


class Check:
    """A part judged by a quick test (``ok()`` must not block): progress is the last time it passed."""

    def __init__(self, name: str, ok: Callable[[], bool]) -> None:
        self.name = name
        self._ok = ok
        self._last: float | None = None

    def progress_at(self, now: float) -> float:
        if self._last is None:
            self._last = now  # the deadline runs from the first look
        try:
            passed = self._ok()
        except Exception:
            log.exception("%s: liveness check failed", self.name)
            passed = False
        if passed:
            self._last = now
        return self._last


class ThreadsAlive:
    """Threads that must not end while the process runs: one gone is a part gone for good."""

    def __init__(self, name: str, alive: Callable[[], bool]) -> None:
        self.name = name
        self._alive = alive

    def progress_at(self, now: float) -> float:
        try:
            return now if self._alive() else NEVER
        except Exception:
            log.exception("%s: liveness check failed", self.name)
            return NEVER


class Liveness:
    """The parts of one process, judged against one deadline (the watchdog period)."""

    def __init__(self, parts: Sequence[Part], deadline_s: float) -> None:
        self.parts = list(parts)
        self.deadline_s = deadline_s

    def wedged(self, now: float | None = None) -> list[Wedged]:
        now = time.monotonic() if now is None else now
        found = []
        for part in self.parts:
            silent = now - part.progress_at(now)
            if silent > self.deadline_s:
                found.append(Wedged(part.name, silent))
        return found


class Supervisor:
    """Tells systemd the process is ready, alive and what it is doing, from its own thread.

    ``WATCHDOG=1`` goes out every half watchdog period (sd_watchdog_enabled(3)), and only
    while :meth:`Liveness.wedged` is empty.  ``STATUS=`` (from ``status()``) goes with
    every ping, or every ``status_every_s`` when systemd set no watchdog.  Without
    ``$NOTIFY_SOCKET`` nothing runs at all.
    """

    def __init__(
        self,
        notifier: Notifier,
        parts: Sequence[Part],
        status: Callable[[], str],
        *,
        status_every_s: float = 10.0,
    ) -> None:
        self.notifier = notifier
        self.liveness = Liveness(parts, notifier.watchdog_s) if notifier.enabled else None
        self._status = status
        self._interval = notifier.watchdog_s / 2 if notifier.watchdog_s else status_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reported: list[str] = []
        self.pings = 0

    def ready(self) -> None:
        """``READY=1``: the process does its job from now on (the door works, events are taken)."""
        if not self.notifier.enabled:
            return
        self.notifier.ready(self._safe_status())
        self._thread = threading.Thread(target=self._run, name="supervision", daemon=True)
        self._thread.start()

    def stopping(self, why: str = "stopping") -> None:
        """``STOPPING=1``, and no more pings: systemd now waits for the exit, not the watchdog."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        if self.notifier.enabled:
            self.notifier.stopping(why)
        self.notifier.close()

    def _safe_status(self) -> str:
        try:
            return self._status()
        except Exception as exc:  # a status line is never worth a missed ping
            log.debug("status line failed: %s", exc)
            return "running"

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.tick()

    def tick(self) -> bool:
        """One round: look at every part, then ping (or not) with the status.  True if it pinged."""
        status = self._safe_status()
        if self.liveness is None or not self.notifier.watchdog_s:
            self.notifier.status(status)
            return False
        wedged = self.liveness.wedged()
        names = [w.name for w in wedged]
        if names != self._reported:
            if wedged:
                log.error(
                    "no progress from %s for longer than the %.1f s watchdog: no more watchdog pings",
                    ", ".join(str(w) for w in wedged),
                    self.liveness.deadline_s,
                )
            else:
                log.warning("every part is making progress again: watchdog pings resume")
            self._reported = names
        if wedged:
            self.notifier.status(f"WEDGED: {', '.join(str(w) for w in wedged)}; {status}")
            return False
        self.notifier.watchdog(status)
        self.pings += 1
        return True
