"""A console reading every broker of a site: one ingestor per broker, one store.

Gates move from broker to broker when one fails (edge/failover.py), so the console must
hear every broker all the time: an event a gate published on the broker it just left may
still be queued there in the console's persistent session, and the next event comes on
the broker it moved to.  Each :class:`~console.ingest.Ingestor` here keeps the ingest
order of that module (commit, then Ack on the broker that delivered, then PUBACK), so
each broker's stream is as safe as a single broker's; the store drops an event that came
both ways by its id, and the console acknowledges it on both, so the gate deletes it
whichever Ack it hears.

The ingestors share one :class:`~console.integrity.IngestGuard`, which judges each gate's
events and statuses across brokers.  A broker keeps the last status a gate left on it
(its ``online`` before it moved, or the will of the connection it lost); the guard
believes the newest status whichever broker it came from (see
:meth:`~console.integrity.IngestGuard.check_statuses`), so a gate is not shown offline
because its old broker died while it is online on another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import fields

from console.ingest import IngestCounters, Ingestor
from console.integrity import IngestGuard, IntegrityLimits
from console.store import EventStore
from protocol import Event
from protocol.mqtt import BrokerEndpoint

log = logging.getLogger("gatepost.console.brokers")


def broker_label(endpoint: BrokerEndpoint) -> str:
    """``host:port``: what the console's logs and ``console_link`` rows call a broker."""
    return f"{endpoint.host}:{endpoint.port}"


class BrokerIngest:
    """Ingestors for several brokers, presented as one (what ``console run`` and its status need)."""

    def __init__(
        self,
        endpoints: Sequence[BrokerEndpoint],
        store: EventStore,
        *,
        name: str = "console",
        limits: IntegrityLimits | None = None,
        **options: object,
    ) -> None:
        if len(endpoints) < 2:
            raise ValueError("BrokerIngest is for two brokers or more; one needs a plain Ingestor")
        labels = [broker_label(endpoint) for endpoint in endpoints]
        if len(set(labels)) != len(labels):
            raise ValueError(f"a broker is listed twice: {', '.join(labels)}")
        self.name = name
        self.guard = IngestGuard(store, limits)
        self.ingestors = [
            Ingestor(endpoint, store, name=name, guard=self.guard, broker=label, **options)  # type: ignore[arg-type]
            for endpoint, label in zip(endpoints, labels, strict=True)
        ]

    @property
    def on_commit(self) -> Callable[[list[Event], int], None] | None:
        return self.ingestors[0].on_commit

    @on_commit.setter
    def on_commit(self, callback: Callable[[list[Event], int], None] | None) -> None:
        for ingestor in self.ingestors:
            ingestor.on_commit = callback

    def start(self) -> BrokerIngest:
        for ingestor in self.ingestors:
            ingestor.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        for ingestor in self.ingestors:
            ingestor.stop(timeout)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once every broker is subscribed (tests and the benchmark start gates after this)."""
        return all(ingestor.wait_connected(timeout) for ingestor in self.ingestors)

    @property
    def connected(self) -> bool:
        """True while at least one broker is subscribed: gates fail over to it."""
        return any(ingestor.connected for ingestor in self.ingestors)

    @property
    def counters(self) -> IngestCounters:
        """The sum over brokers (``connects`` too: every (re)connection to any broker)."""
        total = IngestCounters()
        for ingestor in self.ingestors:
            counts = ingestor.counters
            for field in fields(IngestCounters):
                setattr(total, field.name, getattr(total, field.name) + getattr(counts, field.name))
        return total

    def __enter__(self) -> BrokerIngest:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
