"""How every gatepost process talks to the broker: MQTT 5, QoS 1, a persistent session.

Both the gate agent and the console build their paho client here so that protocol
version, session expiry, keep-alive and reconnect back-off are the same on both ends of
the contract.  This module knows nothing about what is published; it only opens the pipe.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, model_validator

from protocol.identity import connection_id

QOS = 1
KEEPALIVE_S = 15
SESSION_EXPIRY_S = 7 * 24 * 3600
"""Broker keeps a disconnected client's subscriptions and queued QoS 1 messages this long."""


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where the broker is and who we are to it.  ``password`` never appears in ``repr``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None

    def __repr__(self) -> str:
        user = self.username or "-"
        return f"BrokerEndpoint({self.host}:{self.port}, user={user}, tls={'yes' if self.tls_ca else 'no'})"

    @property
    def client_id(self) -> str | None:
        """The client id a connection through this endpoint uses: its user name, always.

        The broker refuses a login whose client id is not the one provisioned for its
        user name, which is what keeps a stolen password from taking over another
        client's session (docs/broker.md); :func:`make_client` offers no other id.
        """
        return self.username

    def for_connection(self, connection: str | None) -> BrokerEndpoint:
        """The endpoint of one connection of this endpoint's account (same host and password).

        ``connection`` is a :class:`~protocol.identity.ConsoleConnection` value, an ingest
        worker's (:func:`~protocol.identity.ingest_connection`), or ``None`` for the
        account's own; a gate has only its own.  The user name becomes that connection's
        id, so each of a console's processes logs in as itself and none can end another's
        session by connecting under its id.  An anonymous endpoint stays anonymous: it has no
        account to derive from, and the broker refuses it anyway.
        """
        if self.username is None:
            return self
        return replace(self, username=connection_id(self.username, connection))


class MqttSettings(BaseModel):
    """The ``[mqtt]`` section every gatepost process has: where the broker is, who we are.

    Secrets are never inline: the password comes from a file, or from systemd's
    ``$CREDENTIALS_DIRECTORY`` so that it never sits in a unit file or a config.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", title="Broker host name or address")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = Field(None, title="Broker username (gate.<site>.<gate> or console.<name>)")
    password_file: Path | None = Field(None, title="File holding the broker password")
    credential: str | None = Field(None, title="Name of a systemd credential holding the password")
    tls_ca: Path | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> MqttSettings:
        if self.password_file is not None and self.credential is not None:
            raise ValueError("give password_file or credential, not both")
        return self

    def password(self) -> str | None:
        if self.credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise FileNotFoundError(
                    f"credential {self.credential!r} set but $CREDENTIALS_DIRECTORY is not"
                )
            return (Path(directory) / self.credential).read_text().strip()
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return None

    def endpoint(self) -> BrokerEndpoint:
        return BrokerEndpoint(
            self.host, self.port, self.username, self.password(), str(self.tls_ca) if self.tls_ca else None
        )


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


def make_client(
    endpoint: BrokerEndpoint,
    *,
    will: Will | None = None,
    manual_ack: bool = False,
    max_inflight: int = 100,
    max_queued: int = 0,
) -> paho.Client:
    """A paho client configured for gatepost; the caller sets callbacks and connects.

    The client id is ``endpoint.username`` and nothing else: the broker binds each user
    name to that one id.  A process that needs a second connection asks its endpoint
    for one (:meth:`BrokerEndpoint.for_connection`).  An anonymous endpoint (only tests
    use one, to see it refused) gets a random id.

    ``manual_ack`` defers the PUBACK of each received message until the caller has
    committed it, so the broker redelivers anything the process did not finish.
    """
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=endpoint.client_id or f"anonymous-{secrets.token_hex(6)}",
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    if endpoint.username is not None:
        client.username_pw_set(endpoint.username, endpoint.password)
    if endpoint.tls_ca:
        client.tls_set(ca_certs=endpoint.tls_ca)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=QOS, retain=will.retain)
    client.on_socket_open = _no_delay
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(max_queued)
    return client


def _no_delay(_client: paho.Client, _userdata: object, sock: object) -> None:
    """Turn off Nagle's algorithm: paho does not, and an event is one small packet.

    With Nagle on, a PUBLISH written while an earlier segment is still unacknowledged
    waits for the peer's delayed ACK — measured here as a 19 ms median added between a
    gate's publish and the console's receipt.  The broker side is ``set_tcp_nodelay``.
    """
    with contextlib.suppress(AttributeError, OSError):  # a non-TCP transport: nothing to tune
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]


def connect_properties(session_expiry_s: int = SESSION_EXPIRY_S) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    return props


def connect_async(client: paho.Client, endpoint: BrokerEndpoint, *, clean_start: bool = False) -> None:
    """Start connecting in the background; paho's loop thread retries with back-off."""
    client.connect_async(
        endpoint.host,
        endpoint.port,
        keepalive=KEEPALIVE_S,
        clean_start=clean_start,
        properties=connect_properties(),
    )
