"""Every gate's latest health message, kept in memory for the web console and metrics.

Gates publish a retained :class:`~protocol.GateHealth` on their ``health`` topic
(edge/health.py).  Retained at the broker, it needs no table here: the console holds the
latest per gate in memory, and a console that restarts gets every gate's latest again the
moment it subscribes.  The subscription is a connection of its own (``console.<name>.health``,
protocol/identity.py; clean session), so it touches neither the ingest's persistent
session nor its store.

A health message is a claim a gate makes about itself; one whose envelope names another
gate than its topic is refused, as the ingest refuses such events.
"""

from __future__ import annotations

import logging
import threading
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

    def update(self, health: GateHealth, received_at: datetime | None = None) -> None:
        with self._lock:
            self._latest[health.site, health.gate] = HealthReport(health, received_at or datetime.now(UTC))

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
    ) -> None:
        self.endpoint = endpoint.for_connection(ConsoleConnection.HEALTH)  # console.<name>.health
        self.board = board or HealthBoard()
        self.client_id = self.endpoint.client_id
        self.filter = (
            all_sites_filter(TopicKind.HEALTH) if site == "+" else site_filter(site, TopicKind.HEALTH)
        )
        self.received = 0
        self.rejected = 0
        self._subscribed = threading.Event()
        self._client: paho.Client | None = None

    def start(self) -> HealthListener:
        client = make_client(self.endpoint)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = lambda *_args: self._subscribed.clear()
        client.on_message = self._on_message
        self._client = client
        connect_async(client, self.endpoint, clean_start=True, session_expiry_s=0)
        client.loop_start()
        return self

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._subscribed.clear()

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the console's health connection: %s", reason)
            return
        client.subscribe(self.filter, qos=QOS)

    def _on_subscribe(
        self, _c: paho.Client, _u: object, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("broker refused the health subscription: %s", reasons)
            return
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
        self.board.update(health)
