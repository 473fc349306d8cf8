"""Pushing what the screen shows to every open page, from whichever thread decided.

Decisions are made on reader threads; pages listen on uvicorn's event loop.  Each page
gets a bounded asyncio queue fed with ``call_soon_threadsafe``, so a reader never waits
for a browser, and a page that stops reading loses old messages rather than memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

QUEUE_SIZE = 32


@dataclass(eq=False)
class Subscription:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


def _offer(queue: asyncio.Queue[dict[str, Any] | None], message: dict[str, Any] | None) -> None:
    """Runs on the page's loop: drop the oldest message when the page is not keeping up."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(message)


class Broadcaster:
    """Latest message plus fan-out; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._last: tuple[dict[str, Any], float] | None = None
        self._closed = False

    def subscribe(self) -> Subscription:
        """Call on the page's event loop."""
        sub = Subscription(asyncio.get_running_loop())
        with self._lock:
            if self._closed:
                sub.queue.put_nowait(None)
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def listeners(self) -> int:
        with self._lock:
            return len(self._subs)

    def last(self) -> tuple[dict[str, Any] | None, float]:
        """The last message and its age in seconds (``None`` before the first)."""
        with self._lock:
            if self._last is None:
                return None, 0.0
            message, at = self._last
            return message, time.monotonic() - at

    def publish(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._last = (message, time.monotonic())
            subs = list(self._subs)
        self._send(subs, message)

    def close(self) -> None:
        """End every stream (``None`` tells the page's generator to return)."""
        with self._lock:
            self._closed = True
            subs = list(self._subs)
        self._send(subs, None)

    def _send(self, subs: list[Subscription], message: dict[str, Any] | None) -> None:
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(_offer, sub.queue, message)
            except RuntimeError:  # the page's loop is gone (server stopped)
                self.unsubscribe(sub)
