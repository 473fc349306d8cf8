"""Every gate's latest health message, kept in memory for the web console and metrics.

Gates publish a retained :class:`~protocol.GateHealth` on their ``health`` topic
(edge/health.py).  Retained at the broker, it needs no table here: the console holds the
latest per gate in memory, and a console that restarts gets every gate's latest again the
moment it subscribes.  The subscription is a connection of its own (``console.<name>.health``,
protocol/identity.py; clean session), so it touches neither the ingest's persistent
session nor its store.

With several brokers (``[mqtt] failover``, docs/failover.md) the listener subscribes on each,
into one board.  Each broker keeps the last health a gate left on it, so a message is
kept only if it is not older (by the gate's own ``time``) than the one on the board: the
broker a gate moved away from must not show its health from before the move.

A health message is a claim a gate makes about itself; one whose envelope names another
gate than its topic is refused, as the ingest refuses such events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol import GateHealth, ProtocolError, RejectReason, decode_health, parse_topic
from protocol.identity import ConsoleConnection
from protocol.mqtt import QOS, BrokerEndpoint, connect_async, make_client
from protocol.topics import TopicKind, all_sites_filter, site_filter

log = logging.getLogger("gatepost.console.health")


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A gate's health as last received, and when."""

    health: GateHealth
    received_at: datetime

    @property
    def age_s(self) -> float:
        return (datetime.now(UTC) - self.received_at).total_seconds()


class HealthBoard:
    """The latest health per gate; thread-safe."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], HealthReport] = {}
        self._lock = threading.Lock()

    def update(
        self, health: GateHealth, received_at: datetime | None = None, *, newer_only: bool = False
    ) -> bool:
        """Keep ``health`` as the gate's latest; with ``newer_only``, not if the board has a newer one."""
        key = (health.site, health.gate)
        with self._lock:
            kept = self._latest.get(key)
            if newer_only and kept is not None and kept.health.time > health.time:
                return False
            self._latest[key] = HealthReport(health, received_at or datetime.now(UTC))
            return True

    def get(self, site: str, gate: str) -> HealthReport | None:
        with self._lock:
            return self._latest.get((site, gate))

    def all(self) -> list[HealthReport]:
        with self._lock:
            return [self._latest[key] for key in sorted(self._latest)]


class HealthListener:
    """Subscribes to the gates' health topics (one site, or ``"+"`` for all) and fills a :class:`HealthBoard`."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        board: HealthBoard | None = None,
        *,
        site: str = "+",
        failover: Sequence[BrokerEndpoint] = (),
    ) -> None:
        self.endpoint = endpoint.for_connection(ConsoleConnection.HEALTH)  # console.<name>.health
        self.endpoints = [self.endpoint, *(e.for_connection(ConsoleConnection.HEALTH) for e in failover)]
        self.board = board or HealthBoard()
        self.client_id = self.endpoint.client_id
        self.filter = (
            all_sites_filter(TopicKind.HEALTH) if site == "+" else site_filter(site, TopicKind.HEALTH)
        )
        self.received = 0
        self.rejected = 0
        self._subscribed = threading.Event()
        self._clients: list[paho.Client] = []
        self._live: set[int] = set()
        self._lock = threading.Lock()

    def start(self) -> HealthListener:
        for index, endpoint in enumerate(self.endpoints):
            client = make_client(endpoint)
            client.user_data_set(index)
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_disconnect = self._on_disconnect
            client.on_message = self._on_message
            self._clients.append(client)
            connect_async(client, endpoint, clean_start=True, session_expiry_s=0)
            client.loop_start()
        return self

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            client.disconnect()
            client.loop_stop()
        with self._lock:
            self._live.clear()
        self._subscribed.clear()

    def _on_disconnect(self, _c: paho.Client, index: int, *_args: object) -> None:
        with self._lock:
            self._live.discard(index)
            if not self._live:
                self._subscribed.clear()

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the console's health connection: %s", reason)
            return
        client.subscribe(self.filter, qos=QOS)

    def _on_subscribe(
        self, _c: paho.Client, index: int, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("broker refused the health subscription: %s", reasons)
            return
        with self._lock:
            self._live.add(index)
        self._subscribed.set()

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        try:
            ref = parse_topic(message.topic)
            health = decode_health(message.payload)
            if (health.site, health.gate) != (ref.site, ref.gate):
                raise ProtocolError(
                    RejectReason.TOPIC_MISMATCH,
                    f"envelope is {health.site}/{health.gate} but the topic is {ref.site}/{ref.gate}",
                )
        except ProtocolError as exc:
            self.rejected += 1
            log.warning("rejected health message on %s: %s: %s", message.topic[:200], exc.reason, exc.detail)
            return
        self.received += 1
        self.board.update(health, newer_only=len(self.endpoints) > 1)
