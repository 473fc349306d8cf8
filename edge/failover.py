"""Which broker a gate talks to: the next one in its list whenever the current one fails.

A site may run several brokers (``[mqtt] failover``, docs/failover.md).  The gate uses one
at a time; the console subscribes to all of them, so it does not matter to the console
which one a gate is on.  Moving is lossless because nothing in the outbox is deleted
until the console's end-to-end :class:`~protocol.Ack` names it (edge/link.py): after the
move the link starts again from the oldest unacknowledged row, and the console's store
drops whatever it already had by event id.

The policy, chosen for being simple to reason about under failure:

* **Move on every failure.**  A lost connection or a failed connect attempt sends the next
  attempt to the next broker in the list, round the list.  Retrying the same broker first
  would only add its back-off to every real outage; a broker that merely restarted costs
  a move that is as cheap as a reconnect.
* **No fail-back.**  A gate stays on the broker it reached until that one fails.  A
  preferred broker coming back does not pull gates over: each move is a reconnect and a
  resend of what is in flight, and the console reads every broker anyway.  Gates spread
  over the brokers as failures happen; an operator who wants them back restarts them.

The rotation changes the address through paho's public :meth:`~paho.mqtt.client.Client.connect_async`
(via :func:`protocol.mqtt.connect_async`), called from the disconnect and connect-failure
callbacks: it only records where the next connect goes, so it works with whichever
network loop drives the client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import paho.mqtt.client as paho

from protocol.mqtt import BrokerEndpoint, connect_async

log = logging.getLogger("gatepost.edge.failover")


class BrokerRotation:
    """The gate's brokers in order, and which one the next connect goes to."""

    def __init__(self, endpoints: Sequence[BrokerEndpoint]) -> None:
        if not endpoints:
            raise ValueError("a gate needs at least one broker")
        self.endpoints = list(endpoints)
        self._index = 0
        self._lock = threading.Lock()
        self.moves = 0
        """Times the gate went on to another broker (a single broker never moves)."""
        self.moved_at: float | None = None
        """``time.monotonic()`` of the last move, for the failover figure (bench/failover.py)."""

    @property
    def current(self) -> BrokerEndpoint:
        return self.endpoints[self._index]

    @property
    def index(self) -> int:
        return self._index

    def start(self, client: paho.Client) -> None:
        """Point the client at the current broker; its loop makes the connection."""
        connect_async(client, self.current)

    def failed(self, client: paho.Client, why: str) -> None:
        """The current broker failed (connection lost, or a connect attempt failed): aim at the next.

        Called from paho's network thread.  With one broker this changes nothing, so a
        single-broker gate behaves exactly as before.
        """
        if len(self.endpoints) == 1:
            return
        with self._lock:
            old = self.current
            self._index = (self._index + 1) % len(self.endpoints)
            new = self.current
            self.moves += 1
            self.moved_at = time.monotonic()
        log.warning(
            "broker %s:%d failed (%s); next attempt goes to %s:%d",
            old.host,
            old.port,
            why,
            new.host,
            new.port,
        )
        connect_async(client, new)
