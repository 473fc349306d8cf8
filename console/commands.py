"""Commands from the console to one gate, and the wait for its answer.

The console publishes a :class:`~protocol.Command` on the gate's ``command`` topic and
waits, bounded, for the :class:`~protocol.CommandResponse` with the same id on the
gate's ``response`` topic.  This client has its own MQTT connection (client id
``console-<name>-commands``) so that a slow or reconnecting ingest never delays an
operator's unlock, and the ingest's persistent session never holds commands.

Commands are never retained and always expire soon (:data:`DEFAULT_TTL_S`, inside the
gates' ``remote_max_ttl_s`` of 120 s): a command queued in the broker while a gate is
offline must not open a door an hour later.  A command that gets no answer in time is
reported as ``timeout`` — the gate may still have acted if it comes back before the
expiry, which the operator is told.

Every command is signed (:mod:`protocol.commands`) with the site's command key, which
the site root certifies in the trust bundle gates verify; the operator's name is inside
what is signed.

With several brokers (``[mqtt] failover``, docs/failover.md) the client connects to each and
publishes every command on all of them, since a gate may be on any one.  Each copy carries
an MQTT message expiry equal to the command's own, so a copy queued in the session a gate
left on another broker is dropped there rather than delivered late; one delivered within
its lifetime anyway is refused by the gate as a replay.  Without a signer (no office folder, or no valid command key) nothing is
sent and the result says ``unsigned``: gates would refuse it, and an unsigned command on
the wire is what a gate reports as an attack.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as paho
from nacl.signing import SigningKey
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol import CommandResponse, GatepostError, GateTopics, ProtocolError, decode_response
from protocol.commands import CommandBody, sign_command
from protocol.identity import ConsoleConnection
from protocol.mqtt import QOS, BrokerEndpoint, connect_async, make_client
from protocol.passes import TrustBundle, open_bundle
from protocol.passes.keys import load_public_key, load_signing_key
from protocol.passes.trust import command_signing_key
from protocol.topics import TopicKind, all_sites_filter

log = logging.getLogger("gatepost.console.commands")

DEFAULT_TTL_S = 30.0
DEFAULT_TIMEOUT_S = 10.0


class SigningUnavailable(GatepostError, RuntimeError):
    """No command key can sign this command (none valid now, none for that site, files missing)."""


class CommandSigner(Protocol):
    def sign(self, body: CommandBody) -> bytes: ...


class OfficeCommandSigner:
    """Signs with the current command key of a site office folder (the web console's copy).

    Reads only ``public/root.pub``, ``public/bundle`` and ``command-<kid>.key``: never the
    root key.  The bundle is re-read (and re-verified against the root public key) when
    its file changes, so ``gatepost pass renew-keys`` takes effect without a restart.
    """

    def __init__(self, office_dir: Path) -> None:
        self.dir = Path(office_dir)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._bundle: TrustBundle | None = None
        self._keys: dict[int, SigningKey] = {}

    def _load(self) -> TrustBundle:
        path = self.dir / "public" / "bundle"
        try:
            info = os.stat(path)
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
            if stamp != self._seen or self._bundle is None:
                root = load_public_key(self.dir / "public" / "root.pub")
                self._bundle = open_bundle(path.read_bytes(), root)
                self._seen = stamp
                self._keys.clear()
        except (OSError, GatepostError) as exc:
            raise SigningUnavailable(f"cannot read the office's trust bundle: {exc}") from None
        return self._bundle

    def current(self, now: datetime | None = None) -> tuple[int, SigningKey]:
        """The kid and key to sign with now."""
        with self._lock:
            bundle = self._load()
            entry = command_signing_key(bundle, now or datetime.now(UTC))
            if entry is None:
                raise SigningUnavailable("no command key is valid now; run `gatepost pass renew-keys`")
            key = self._keys.get(entry.kid)
            if key is None:
                try:
                    key = load_signing_key(self.dir / f"command-{entry.kid}.key")
                except (OSError, GatepostError) as exc:
                    raise SigningUnavailable(f"command key {entry.kid}: {exc}") from None
                self._keys[entry.kid] = key
            return entry.kid, key

    @property
    def site(self) -> str:
        with self._lock:
            return self._load().site

    def sign(self, body: CommandBody) -> bytes:
        kid, key = self.current()
        if body.site != self.site:
            raise SigningUnavailable(f"this office signs for {self.site}, not {body.site}")
        return sign_command(body, key, kid)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What came of a command: ``status`` is ``ok``, ``refused`` (the gate said no),
    ``timeout`` (no answer in time), ``unreachable`` (the console has no broker) or
    ``unsigned`` (no command key to sign it with: nothing was sent)."""

    command_id: str
    site: str
    gate: str
    name: str
    status: str
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Pending:
    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: CommandResponse | None = None


class CommandClient:
    """Publishes commands and matches responses by id.  Thread-safe; start once, share."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        *,
        name: str = "console",
        signer: CommandSigner | None = None,
        failover: Sequence[BrokerEndpoint] = (),
    ) -> None:
        self.endpoint = endpoint.for_connection(ConsoleConnection.COMMANDS)
        self.endpoints = [self.endpoint, *(e.for_connection(ConsoleConnection.COMMANDS) for e in failover)]
        self.signer = signer
        self.client_id = self.endpoint.client_id
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._clients: list[paho.Client] = []
        self._live: set[int] = set()
        """Indexes (in :attr:`endpoints`) of the connections subscribed to the responses now."""
        self.rejected_responses = 0

    def start(self) -> CommandClient:
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

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    def stop(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            client.disconnect()
            client.loop_stop()
        with self._lock:
            self._live.clear()
        self._subscribed.clear()

    def _on_connect(
        self, client: paho.Client, _u: object, _f: object, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the console's command connection: %s", reason)
            return
        client.subscribe(all_sites_filter(TopicKind.RESPONSE), qos=QOS)

    def _on_subscribe(
        self, _c: paho.Client, index: int, _mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("broker refused the response subscription: %s", reasons)
            return
        with self._lock:
            self._live.add(index)
        self._subscribed.set()

    def _on_disconnect(self, _c: paho.Client, index: int, *_args: object) -> None:
        with self._lock:
            self._live.discard(index)
            if not self._live:
                self._subscribed.clear()

    def _on_message(self, _c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        try:
            response = decode_response(message.payload)
        except ProtocolError as exc:
            self.rejected_responses += 1
            log.warning("rejected response on %s: %s: %s", message.topic[:200], exc.reason, exc.detail)
            return
        parts = message.topic.split("/")
        if len(parts) != 5 or (parts[2], parts[3]) != (response.site, response.gate):
            self.rejected_responses += 1
            log.warning(
                "response on %s names %s/%s: ignored", message.topic[:200], response.site, response.gate
            )
            return
        with self._lock:
            pending = self._pending.get(response.id)
        if pending is not None:
            pending.response = response
            pending.done.set()

    def send(
        self,
        site: str,
        gate: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        operator: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> CommandResult:
        """Sign and publish one command, and wait up to ``timeout_s`` for the gate's answer.

        ``operator`` (the logged-in user) is signed with the command, so the gate and its
        events name who gave it, and no one can change the name on the way.
        """
        topics = GateTopics(site, gate)
        now = datetime.now(UTC)
        body = CommandBody(
            site=site,
            gate=gate,
            id=uuid.uuid4().hex,
            name=name,
            args=args or {},
            issued_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
            operator=operator[:64] if operator else None,
        )
        started = datetime.now(UTC)

        def result(status: str, **extra: Any) -> CommandResult:
            elapsed = (datetime.now(UTC) - started).total_seconds()
            return CommandResult(body.id, site, gate, name, status, elapsed_s=round(elapsed, 3), **extra)

        if self.signer is None:
            return result("unsigned", error="this console holds no command key (set [web] office)")
        try:
            payload = self.signer.sign(body)
        except GatepostError as exc:
            log.error("command %s to %s/%s not sent: %s", name, site, gate, exc)
            return result("unsigned", error=str(exc))
        if not self._clients or not self._subscribed.wait(min(timeout_s, 2.0)):
            return result("unreachable", error="the console is not connected to the broker")
        pending = _Pending()
        with self._lock:
            self._pending[body.id] = pending
            clients = [self._clients[index] for index in sorted(self._live) if index < len(self._clients)]
        properties = None
        if len(self.endpoints) > 1:  # copies on brokers the gate is not on must not outlive the command
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = max(1, math.ceil(ttl_s))
        try:
            for client in clients:
                client.publish(topics.command, payload, qos=QOS, retain=False, properties=properties)
            if not pending.done.wait(timeout_s):
                return result("timeout", error=f"no answer within {timeout_s:g} s")
        finally:
            with self._lock:
                self._pending.pop(body.id, None)
        response = pending.response
        assert response is not None
        if response.ok:
            return result("ok", result=dict(response.result))
        return result("refused", result=dict(response.result), error=response.error or "refused")
