"""How every gatepost process talks to the broker: MQTT 5, QoS 1, a persistent session.

Both the gate agent and the console build their paho client here so that protocol
version, session expiry, keep-alive and reconnect back-off are the same on both ends of
the contract.  This module knows nothing about what is published; it only opens the pipe.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import socket
import ssl
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from protocol.identity import connection_id

log = logging.getLogger("gatepost.mqtt")


class _PahoFailuresOnly(logging.Filter):
    """paho's own log, reduced to what says why a connection failed.

    paho logs every packet at DEBUG (a gate at DEBUG would log each event twice) and, while
    disconnected, "Client is not connected" at ERROR on each loop pass, which says nothing.
    What stays is its WARNING and ERROR lines, such as ``failed to receive on socket: [SSL:
    TLSV1_ALERT_UNKNOWN_CA]``: the broker's reason for refusing our certificate.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING and not str(record.msg).startswith("Client is not connected")


_paho_log = logging.getLogger("gatepost.mqtt.paho")
_paho_log.addFilter(_PahoFailuresOnly())

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
    tls_cert: str | None = None
    """This connection's certificate (CN = its user name); a console's other connections'
    certificates lie beside it, each named ``<user name>.crt`` (:meth:`for_connection`)."""
    tls_key: str | None = None

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
        username = connection_id(self.username, connection)
        cert = self.tls_cert
        if cert is not None and Path(cert).name == f"{self.username}.crt":
            cert = str(Path(cert).with_name(f"{username}.crt"))
        return replace(self, username=username, tls_cert=cert)

    def tls_context(self) -> ssl.SSLContext | None:
        """TLS 1.2 or later, the site CA only, the server's name checked; our certificate if we have one."""
        if not self.tls_ca:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


class MqttSettings(BaseModel):
    """The ``[mqtt]`` section every gatepost process has: where the broker is, who we are.

    Secrets are never inline: the password comes from a file, or from systemd's
    ``$CREDENTIALS_DIRECTORY`` so that it never sits in a unit file or a config.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", title="Broker host name or address")
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = Field(None, title="Broker username (gate.<site>.<gate> or console.<name>)")
    tls_ca: Path | None = Field(None, title="The site CA's certificate: connect with TLS 1.2+")
    tls_cert: Path | None = Field(None, title="This client's certificate (CN = username)")
    tls_key: Path | None = Field(None, title="Its private key (made on this device by `enroll`)")
    password_file: Path | None = Field(None, title="File holding the broker password")
    credential: str | None = Field(None, title="Name of a systemd credential holding the password")
    failover: list[str] = Field(
        default_factory=list,
        title='Other brokers of this site, "host:port", same CA and accounts (docs/failover.md)',
    )

    @field_validator("tls_cert", "tls_key")
    @classmethod
    def _needs_ca(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("tls_ca") is None:
            raise ValueError("a client certificate needs tls_ca, the site CA, to check the broker")
        return value

    @field_validator("password_file", "credential")
    @classmethod
    def _never_in_clear(cls, value: object, info: ValidationInfo) -> object:
        """Fields are validated in order, so host and tls_ca are known here: the error can
        then name this key and its line, not just the ``[mqtt]`` table."""
        host = info.data.get("host", "127.0.0.1")
        if value is not None and info.data.get("tls_ca") is None and not is_loopback(str(host)):
            raise ValueError(
                f"the password would cross the network in clear to {host}: set tls_ca "
                "(and tls_cert/tls_key), or reach the broker on loopback"
            )
        return value

    @field_validator("failover")
    @classmethod
    def _failover_brokers(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Each entry is ``host:port``; a password sent to one must be as safe as to ``host``."""
        secret = info.data.get("password_file") is not None or info.data.get("credential") is not None
        for entry in value:
            host, _port = parse_host_port(entry)
            if secret and info.data.get("tls_ca") is None and not is_loopback(host):
                raise ValueError(f"the password would cross the network in clear to {host}: set tls_ca")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> MqttSettings:
        if self.password_file is not None and self.credential is not None:
            raise ValueError("give password_file or credential, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give tls_cert and tls_key together")
        return self

    def resolve_paths(self, base: Path) -> None:
        """Make the file settings absolute against ``base`` (the configuration file's folder)."""
        for name in ("password_file", "tls_ca", "tls_cert", "tls_key"):
            value = getattr(self, name)
            if value is not None and not value.is_absolute():
                setattr(self, name, base / value)

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
            self.host,
            self.port,
            self.username,
            None if self.tls_cert else self.password(),
            str(self.tls_ca) if self.tls_ca else None,
            str(self.tls_cert) if self.tls_cert else None,
            str(self.tls_key) if self.tls_key else None,
        )

    def endpoints(self) -> list[BrokerEndpoint]:
        """Every broker of the site, ``host:port`` first: one identity, one CA, several addresses.

        A gate moves along this list when its broker fails (edge/failover.py); a console
        subscribes to all of them (console/brokers.py).  The brokers share the CA and the
        dynamic-security accounts, so only the address differs.
        """
        first = self.endpoint()
        return [first] + [
            replace(first, host=host, port=port) for host, port in map(parse_host_port, self.failover)
        ]


def parse_host_port(entry: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for an IPv6 address) of a failover broker, or ValueError saying why."""
    host, sep, port = entry.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{entry!r} is not host:port (port 1..65535)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and 127.0.0.0/8 / ::1: traffic that never leaves the host."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


RECONNECT_TRIES = 3
"""How many times :meth:`Client.reconnect` starts again when a publish from another thread
mutated paho's outgoing queue under it."""


class Client(paho.Client):
    """paho's client, whose reconnect survives a publish from another thread.

    paho 2.x's ``reconnect()`` walks its queue of outgoing packets (to mark lost QoS 0
    publishes) without the lock that ``publish()`` takes to append to it
    (paho/mqtt/client.py, ``Client.reconnect``).  A publish from another thread in that
    moment — the console's acks come from its writer thread, a gate's status and replies
    from theirs — raises ``RuntimeError: deque mutated during iteration``.  Under
    ``loop_start()`` that ends paho's network thread, which only catches ``OSError``
    around a reconnect: the client never connects again, and its process looks alive.
    Seen in bench/fleet.py: an ingest worker that lost the broker under load stopped
    for good.  ``reconnect()`` starts from scratch each time (fresh read state, socket
    closed, queue walked, then cleared), so starting it again is what a second try by
    paho's own loop would do.
    """

    def reconnect(self) -> paho.MQTTErrorCode:
        tries = 1
        while True:
            try:
                return super().reconnect()
            except RuntimeError as exc:
                if tries >= RECONNECT_TRIES:
                    raise
                tries += 1
                log.warning("reconnect met a publish from another thread (%s); starting it again", exc)


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
    client = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=endpoint.client_id or f"anonymous-{secrets.token_hex(6)}",
        protocol=paho.MQTTv5,
        manual_ack=manual_ack,
    )
    if endpoint.username is not None:
        # With a certificate the broker takes the login from it and ignores any password.
        client.username_pw_set(endpoint.username, None if endpoint.tls_cert else endpoint.password)
    context = endpoint.tls_context()
    if context is not None:
        client.tls_set_context(context)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=QOS, retain=will.retain)
    client.on_socket_open = _no_delay
    client.on_connect_fail = _log_connect_fail
    # paho says why a TLS session ended (a refused certificate shows up as the first read
    # failing with the broker's alert) only through its logger, at ERROR for such failures.
    client.enable_logger(_paho_log)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(max_queued)
    return client


def _log_connect_fail(client: paho.Client, _userdata: object) -> None:
    """paho calls this inside its ``except OSError`` around (re)connecting, so the error is at hand."""
    error = sys.exc_info()[1]
    log.warning(
        "cannot connect to the broker (%s); retrying with back-off",
        f"{type(error).__name__}: {error}" if error is not None else "connection failed",
    )


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


def connect_async(
    client: paho.Client,
    endpoint: BrokerEndpoint,
    *,
    clean_start: bool = False,
    session_expiry_s: int = SESSION_EXPIRY_S,
) -> None:
    """Start connecting in the background; paho's loop thread retries with back-off.

    A client with nothing to keep while away (commands, health) asks ``clean_start=True``
    and ``session_expiry_s=0``.
    """
    client.connect_async(
        endpoint.host,
        endpoint.port,
        keepalive=KEEPALIVE_S,
        clean_start=clean_start,
        properties=connect_properties(session_expiry_s),
    )
