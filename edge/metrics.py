"""The gate's Prometheus metrics: what it decided, how fast, and whether it is healthy.

Counters and the latency histogram are updated where things happen (the agent calls
:meth:`GateMetrics.decided`, :meth:`GateMetrics.door_event`); everything that is a state —
outbox depth, the oldest unacknowledged event, the broker connection, reader states,
clock trust, the degraded disk — is read from the agent at scrape time by a collector,
so a number is never stale and nothing polls between scrapes.

Each agent has a registry of its own (not ``prometheus_client``'s global one), so several
agents in one process — the demo, the tests — each serve their own numbers.  The server
is ``prometheus_client``'s own threaded WSGI server on a listener separate from the guard
screen (which may be off), on loopback unless configured otherwise.

Certificate expiry: :attr:`GateMetrics.certificate_expiry` is a callable returning
``{name: not_after}`` for the certificates the gate uses; the agent sets it to read its
``[mqtt] tls_cert`` and ``tls_ca``.  A gate without certificates exports no sample
rather than a zero (which would read as "expired in 1970").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from edge.agent import GateAgent

log = logging.getLogger("gatepost.edge.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
"""Seconds from the reader's read to the door's answer; a resident notices past ~0.3 s."""
READER_STATES = ("connecting", "connected", "disconnected", "closed")

CertificateSource = Callable[[], Mapping[str, datetime]]


class GateMetrics:
    """One agent's metrics and (once :meth:`serve` is called) its ``/metrics`` listener."""

    def __init__(self, agent: GateAgent) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "gatepost_gate_decisions",
            "Credentials decided at this gate, by outcome and reason",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gatepost_gate_decision_seconds",
            "From the reader's read to the door's answer (relay, lights, guard screen)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.relay = Counter(
            "gatepost_gate_relay_actuations",
            "Times the lock relay was switched to unlock, by cause (grant, exit, remote, manual)",
            ["cause"],
            registry=self.registry,
        )
        self.relay_watchdog = Counter(
            "gatepost_gate_relay_watchdog_cuts",
            "Times the relay watchdog cut a relay left on past its maximum",
            registry=self.registry,
        )
        self.certificate_expiry: CertificateSource | None = None
        """``{name: not_after}`` of the gate's certificates (set by the agent); none, no sample."""
        self.registry.register(_AgentCollector(agent, self))
        self._server: WSGIServer | None = None
        self.port: int | None = None

    def decided(self, granted: bool, reason: str, read_at_ns: int, answered_at_ns: int) -> None:
        self.decisions.labels("granted" if granted else "denied", reason).inc()
        self.latency.observe(max(0, answered_at_ns - read_at_ns) / 1e9)

    def door_event(self, event_type: str, data: Mapping[str, Any]) -> None:
        if event_type == "door.unlocked" and not data.get("extended"):
            self.relay.labels(str(data.get("cause", "unknown"))).inc()
        elif event_type == "door.relay_watchdog":
            self.relay_watchdog.inc()

    def serve(self, listen: str) -> int | None:
        """Listen on ``host:port`` (port 0: any free one); return the port, or ``None`` if it failed.

        A gate whose metrics port is taken still opens its door: the failure is logged.
        """
        host, _, port = listen.rpartition(":")
        try:
            server, _thread = start_http_server(int(port), host.strip("[]"), registry=self.registry)
        except OSError as exc:
            log.error("metrics cannot listen on %s (%s); /metrics is off", listen, exc)
            return None
        self._server = server
        self.port = server.server_port
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _AgentCollector(Collector):
    """States read from the agent at scrape time."""

    def __init__(self, agent: GateAgent, metrics: GateMetrics) -> None:
        self.agent = agent
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []  # collected fresh at each scrape; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        agent = self.agent
        outbox = agent.outbox
        yield _gauge("gatepost_gate_outbox_events", "Events taken and not yet acknowledged", outbox.backlog)
        oldest = _safe(outbox.oldest_pending_time)
        age = GaugeMetricFamily(
            "gatepost_gate_outbox_oldest_age_seconds",
            "Age of the oldest event the console has not acknowledged",
        )
        age.add_metric([], max(0.0, (datetime.now(UTC) - oldest).total_seconds()) if oldest else 0.0)
        yield age
        yield _gauge(
            "gatepost_gate_outbox_held_events",
            "Events held in memory because the disk refused them",
            outbox.held,
        )
        yield _gauge(
            "gatepost_gate_degraded", "1 while the outbox's disk refuses writes", outbox.degraded is not None
        )
        yield _counter(
            "gatepost_gate_outbox_refused", "Events refused (outbox or memory journal full)", outbox.refused
        )
        yield _counter(
            "gatepost_gate_outbox_write_failures",
            "Outbox transactions the disk refused",
            outbox.commit_failures,
        )
        yield _gauge("gatepost_gate_last_seq", "The last sequence number taken", outbox.last_seq)
        link = agent.link
        yield _gauge("gatepost_gate_broker_connected", "1 while connected to the broker", link.connected)
        yield _counter("gatepost_gate_broker_connects", "Connections made to the broker", link.connects)
        yield _counter(
            "gatepost_gate_events_published", "Event publishes, first sends and resends", link.published
        )
        yield _counter("gatepost_gate_events_resent", "Events sent again before a reconnect", link.resent)
        yield _counter("gatepost_gate_events_acknowledged", "Events the console acknowledged", link.acked)
        yield _gauge(
            "gatepost_gate_clock_trusted", "1 while the wall clock is trusted", agent.clock.now().trusted
        )
        states = GaugeMetricFamily(
            "gatepost_gate_reader_state", "1 for the state each reader is in", labels=["reader", "state"]
        )
        for reader, current in sorted(agent.reader_states.items()):
            for state in READER_STATES:
                states.add_metric([reader, state], float(current == state))
        yield states
        yield _counter(
            "gatepost_gate_repeats_suppressed", "Repeated presentations ignored", agent.repeats.suppressed
        )
        source = self.metrics.certificate_expiry
        if source is not None:
            expiry = GaugeMetricFamily(
                "gatepost_gate_certificate_expiry_timestamp_seconds",
                "When each certificate the gate uses expires (Unix time)",
                labels=["certificate"],
            )
            for name, not_after in sorted((_safe(source) or {}).items()):
                expiry.add_metric([name], not_after.timestamp())
            yield expiry
        yield _gauge(
            "gatepost_gate_up_seconds", "Seconds since the agent started", time.monotonic() - agent.started_at
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value))


def _safe(read: Callable[[], Any]) -> Any:
    """A scrape must not fail because one source did (a database busy, a callback raising)."""
    try:
        return read()
    except Exception as exc:
        log.warning("metrics: could not read %s: %s", getattr(read, "__name__", read), exc)
        return None
