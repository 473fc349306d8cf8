"""What "alive" means for ``gatepost console run``, and the status line systemd shows for it.

The watchdog pings (:class:`gatepost.supervision.Supervisor`) stop when one of these has
shown no progress for longer than the watchdog period:

- ``ingest-writer`` (one process): the writer thread runs, and whenever messages are
  waiting for it, its counters move — a batch stored, or a failed commit it is retrying
  (a store that is down is not mended by a restart; a writer stuck inside one commit is).
- ``ingest-workers`` (several processes): at least one worker process is alive; the
  ingestor restarts the ones that die.
- ``web``: the web console's thread runs and ``/healthz`` answers on its own address.

Everything is read from the ingestor's public counters and threads, so nothing here
reaches into :mod:`console.ingest`.
"""

from __future__ import annotations

import http.client
import threading
from typing import TYPE_CHECKING, Any

from gatepost.supervision import Check, Part, ThreadsAlive

if TYPE_CHECKING:
    from console.brokers import BrokerIngest
    from console.ingest import IngestCounters, Ingestor, IngestWorkers
    from console.web.serve import WebServer

HEALTH_TIMEOUT_S = 2.0
"""How long one ``/healthz`` request may take; the deadline counts the misses."""


class _WriterProgress:
    """The single ingestor's writer: fine while nothing new has come since it last moved.

    It compares changes, not totals, so a message the counters count on one side only
    cannot make an idle console look wedged: messages received since the writer's
    counters last moved are waiting for it, and it must move again within the deadline.
    """

    def __init__(self, ingestor: Ingestor) -> None:
        self._ingestor = ingestor
        self._handled: tuple[int, int] | None = None
        self._received_then = 0

    def __call__(self) -> bool:
        counters: IngestCounters = self._ingestor.counters
        handled = (
            counters.committed + counters.duplicates + counters.statuses + counters.rejected,
            counters.commit_failures,  # retrying a store that fails is progress; a restart would not help
        )
        if handled != self._handled:
            self._handled, self._received_then = handled, counters.received
            return True
        return counters.received == self._received_then


class _WriterThread:
    """The ingestor's writer thread, found by its name; gone after it was seen is a part gone for good."""

    def __init__(self, name: str) -> None:
        self._name = f"console-{name}-writer"
        self._thread: threading.Thread | None = None

    def __call__(self) -> bool:
        if self._thread is None:
            self._thread = next((t for t in threading.enumerate() if t.name == self._name), None)
            if self._thread is None:
                return True  # not found (renamed?): judged by its progress alone, never restarted for it
        return self._thread.is_alive()


def _healthz(web: WebServer) -> bool:
    host = web.host if web.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    connection = http.client.HTTPConnection(host, web.port, timeout=HEALTH_TIMEOUT_S)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def console_parts(ingestor: Ingestor | IngestWorkers | BrokerIngest, web: WebServer | None) -> list[Part]:
    from console.brokers import BrokerIngest
    from console.ingest import Ingestor

    parts: list[Part] = []
    if isinstance(ingestor, BrokerIngest):  # one writer per broker, all named alike: judged by progress
        parts += [Check(f"ingest-writer {one.broker}", _WriterProgress(one)) for one in ingestor.ingestors]
    elif isinstance(ingestor, Ingestor):
        name = ingestor.name
        parts.append(ThreadsAlive("ingest-writer thread", _WriterThread(name)))
        parts.append(Check("ingest-writer", _WriterProgress(ingestor)))
    else:
        workers = ingestor
        parts.append(Check("ingest-workers", lambda: workers.alive() > 0))
    if web is not None:
        server = web
        parts.append(ThreadsAlive("web thread", server.thread.is_alive))
        parts.append(Check("web", lambda: _healthz(server)))
    return parts


def console_status(ingestor: Ingestor | IngestWorkers | BrokerIngest) -> str:
    """One line for ``systemctl status``: the broker, and what ingest has stored."""
    counters: Any = ingestor.counters
    broker = "subscribed" if ingestor.connected else "connecting"
    if hasattr(counters, "committed"):
        return (
            f"broker {broker}; stored {counters.committed} events "
            f"({counters.duplicates} duplicates, {counters.rejected} rejected, "
            f"{counters.commit_failures} failed commits)"
        )
    return f"broker {broker}; {counters.alive} of {counters.workers} ingest workers alive"
