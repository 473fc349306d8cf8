"""The gate's MQTT link: drains the outbox to the console and nothing else.

The scan path never touches this module: it commits to the outbox and returns.  Here a
sender step publishes outbox rows in order, at most ``window`` ahead of the console's
acknowledgements, and the rows are deleted only when the console's :class:`Ack` names
them — a broker PUBACK proves nothing about the console's store.  After every reconnect
the sender starts again from the oldest unacknowledged row; between reconnects each event
in flight has its own resend deadline (:mod:`edge.resend`), so one that went missing is
sent again while later ones keep flowing.  The console drops duplicates by event id.

Status follows Frigate's three states: ``online`` (retained) on connect, ``stopped`` on a
clean shutdown, and ``offline`` as the last will when the connection dies; ``online``
reads ``degraded`` while the outbox's disk refuses writes (:meth:`Link.announce`).  Commands are
answered on the response topic with the same correlation id; retained and expired
commands are refused, so a stale command can never act on reconnect.

With several brokers (``failover``) the link moves to the next one whenever the current
one fails; :mod:`edge.failover` holds the policy.

Threads: none of its own.  The MQTT client and the sender step run on a
:class:`~edge.netloop.SharedNetwork`'s thread — the link's own network of one when none is
given (a gate agent), or one shared by many links (the fleet harness): the same code
either way.  The sender step runs when the outbox commits or an ack arrives, and is
looked at every :data:`edge.netloop.MISC_EVERY_S` for resend deadlines; it reads the
outbox only when there is something to do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.commands import CommandVerifier
from edge.failover import BrokerRotation
from edge.netloop import SharedNetwork
from edge.outbox import Outbox, OutboxClosed, Pending
from edge.resend import ResendTracker
from protocol import (
    Command,
    CommandResponse,
    GateState,
    GateStatus,
    GateTopics,
    ProtocolError,
    decode_ack,
    encode,
)
from protocol.commands import CommandError, CommandRejectReason
from protocol.mqtt import QOS, BrokerEndpoint, make_client
from protocol.topics import SiteDocument, site_document_topic

log = logging.getLogger("gatepost.edge.link")

_RESEND_LOG_S = 10.0
"""At most one warning about resends per this many seconds; the rest are counted into it."""

CommandHandler = Callable[[Command], dict[str, Any]]


class CommandRefused(Exception):
    """Raised by a command handler to answer ``ok: false`` with this message."""


class Link:
    """Publishes one gate's outbox and status, and receives acks and commands."""

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        topics: GateTopics,
        outbox: Outbox,
        *,
        version: str = "",
        window: int = 500,
        resend_after_s: float = 15.0,
        resend_overtaken_s: float = 2.0,
        clock_trusted: Callable[[], bool] = lambda: False,
        on_rejected_command: Callable[[str, str, str | None], None] | None = None,
        on_document: Callable[[SiteDocument, bytes], None] | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        subscriptions: Sequence[tuple[str, Callable[[str, bytes], None]]] = (),
        on_connected: Callable[[], None] | None = None,
        failover: Sequence[BrokerEndpoint] = (),
        network: SharedNetwork | None = None,
    ) -> None:
        self.topics = topics
        self.outbox = outbox
        self.window = window
        self.resend_after_s = resend_after_s
        self.version = version
        self._clock_trusted = clock_trusted
        self._on_rejected_command = on_rejected_command
        self._on_document = on_document
        self._status_extra = status_extra
        self._subscriptions = list(subscriptions)
        self._on_connected = on_connected
        self._documents = {site_document_topic(topics.site, doc): doc for doc in SiteDocument}
        self._handlers: dict[str, CommandHandler] = {"ping": lambda _cmd: {"pong": True}}
        self._endpoint = endpoint
        self.brokers = BrokerRotation([endpoint, *failover])
        self._client = make_client(endpoint, max_inflight=min(window, 1000))  # client id: gate.<site>.<gate>
        self._log_connect_fail = self._client.on_connect_fail
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_pre_connect = self._arm_will
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._wake = threading.Lock()
        """Guards the sender's state: the network thread, the outbox's committers and the acks share it."""
        self._connected = False
        self._restart = True
        self._dirty = True
        self._running = False
        self._inflight = ResendTracker(resend_after_s, resend_overtaken_s)
        self._next_seq = 1
        self._resend_log_at = 0.0
        self._resends_unlogged = 0
        self._network = network
        """Where the client and the sender step run (edge/netloop.py): given, shared by many links
        (the fleet harness); ``None``, the link's own network of one, made by :meth:`start`."""
        self._own_network = network is None
        self.published = 0
        self.acked = 0
        self.connects = 0
        outbox.add_listener(self.wake)

    def register(self, name: str, handler: CommandHandler) -> None:
        self._handlers[name] = handler

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        self._running = True
        self.brokers.start(self._client)
        if self._network is None:
            self._network = SharedNetwork(f"mqtt-{self.topics.gate}", connectors=1, few=True)
        self._network.add(self._client, self._tick)

    def stop(self, timeout: float = 5.0) -> None:
        """Say ``stopped`` (retained), then disconnect; the broker will not fire the will."""
        self._running = False
        self.wake()
        if self._connected:
            info = self._client.publish(
                self.topics.status, encode(self._status(GateState.STOPPED)), QOS, True
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("could not publish stopped status before disconnecting")
        self._client.disconnect()
        network = self._network
        if network is None:  # never started
            return
        deadline = time.monotonic() + timeout
        while self._client.socket() is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # the network thread writes the DISCONNECT, then paho closes
        network.remove(self._client)
        if self._own_network:
            network.close()
            self._network = None

    def wait_connected(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self._connected and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._connected

    def wake(self) -> None:
        with self._wake:
            self._dirty = True
        if self._network is not None:
            self._network.wake(self._client)

    def _status(self, state: GateState) -> GateStatus:
        return GateStatus(
            state=state,
            site=self.topics.site,
            gate=self.topics.gate,
            boot=self.outbox.boot,
            time=datetime.now(UTC),
            version=self.version,
            backlog=self.outbox.backlog,
            clock_trusted=self._clock_trusted(),
            **(self._status_extra() if self._status_extra else {}),
        )

    def _live_state(self) -> GateState:
        """``degraded`` while the outbox's disk refuses writes (edge/outbox.py), else ``online``."""
        return GateState.DEGRADED if self.outbox.degraded is not None else GateState.ONLINE

    def announce(self) -> None:
        """Publish the retained status again, now: the outbox went degraded or came back."""
        if self._connected and self._running:
            self._client.publish(self.topics.status, encode(self._status(self._live_state())), QOS, True)

    # -- paho callbacks (network thread) ---------------------------------------------

    def _arm_will(self, client: paho.Client, _userdata: Any) -> None:
        """Give the connection about to be made its own last will: ``offline``, stamped now.

        paho calls this before every connect, the first and each reconnect.  A will
        written once would be the same bytes for every outage of this boot, and the
        console could not tell a second outage from the broker re-sending the first
        (it re-sends the retained will at every subscribe): a gate that came back and
        went away again while the console was down would raise no alarm.
        """
        will = GateStatus(
            state=GateState.OFFLINE,
            site=self.topics.site,
            gate=self.topics.gate,
            boot=self.outbox.boot,
            time=datetime.now(UTC),
        )
        client.will_set(self.topics.status, encode(will), qos=QOS, retain=True)

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused connection: %s", reason)
            return
        # Retain-as-published: a command someone published retained is seen as retained
        # (and refused) even when it arrives live, not only when it replays on reconnect.
        client.subscribe(
            [
                (self.topics.ack, SubscribeOptions(qos=QOS)),
                (self.topics.command, SubscribeOptions(qos=QOS, retainAsPublished=True)),
                # Signed documents are retained state: the latest arrives on every subscribe.
                *((topic, SubscribeOptions(qos=QOS)) for topic in self._documents),
                *((topic, SubscribeOptions(qos=QOS)) for topic, _ in self._subscriptions),
            ]
        )
        client.publish(self.topics.status, encode(self._status(self._live_state())), QOS, True)
        broker = self.brokers.current
        log.info(
            "connected to broker %s:%d; %d events waiting for the console",
            broker.host,
            broker.port,
            self.outbox.backlog,
        )
        with self._wake:
            self.connects += 1
            self._connected = True
            self._restart = True
            self._dirty = True
        if self._network is not None:
            self._network.wake(client)  # the backlog goes out now, not at the next look
        if self._on_connected is not None:
            self._on_connected()

    def _on_disconnect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        with self._wake:
            was = self._connected
            self._connected = False
        if was:
            log.warning("disconnected from broker (%s); events stay in the outbox", reason)
        if self._running:  # not our own disconnect in stop(): that one must stay disconnected
            self.brokers.failed(client, f"disconnected: {reason}")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        if self._log_connect_fail is not None:
            self._log_connect_fail(client, userdata)  # says why, while paho's exception is at hand
        if self._running:
            self.brokers.failed(client, "cannot connect")

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            if message.topic == self.topics.ack:
                self._handle_ack(message.payload)
            elif message.topic == self.topics.command:
                self._handle_command(message)
            elif message.topic in self._documents:
                if self._on_document is not None:
                    self._on_document(self._documents[message.topic], bytes(message.payload))
            elif handler := self._handler_for(message.topic):
                handler(message.topic, bytes(message.payload))
            else:
                log.warning("message on unexpected topic %r ignored", message.topic[:120])
        except Exception:  # never let one bad message kill the network thread
            log.exception("failed to handle message on %s", message.topic[:120])

    def _handler_for(self, topic: str) -> Callable[[str, bytes], None] | None:
        for pattern, handler in self._subscriptions:
            if paho.topic_matches_sub(pattern, topic):
                return handler
        return None

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Send one message outside the outbox (QoS 1); false when not connected.

        For requests that are worth nothing once stale, such as asking for a card-list
        update, which the gate asks again for on its next connect if still needed, and
        for the retained health message, which is sent again within a minute anyway.
        """
        if not self._connected:
            return False
        return self._client.publish(topic, payload, QOS, retain).rc == paho.MQTT_ERR_SUCCESS

    def _handle_ack(self, payload: bytes) -> None:
        try:
            ack = decode_ack(payload)
        except ProtocolError as exc:
            log.warning("rejected ack: %s", exc)
            return
        ranges = list(ack.iter_ranges())
        if not ranges:
            return
        try:
            self.outbox.ack_async(ranges)
        except OutboxClosed:
            return
        with self._wake:
            was_silent = self._inflight.silent()
            for first, last in ranges:
                self._inflight.acked_range(first, last)
                self.acked += last - first + 1
            if was_silent:
                log.info("console acknowledging again")
            self._dirty = True
        if self._network is not None:
            self._network.wake(self._client)  # room in the window: send on, this loop round

    @property
    def resent(self) -> int:
        """Events published again, before a reconnect made that unnecessary (see edge/resend.py)."""
        return self._inflight.resends

    def _handle_command(self, message: paho.MQTTMessage) -> None:
        """Act on a command only once :mod:`edge.commands` has verified it (signature, key, target,
        expiry, replay).  The verifier is the ``command_verifier`` attribute the agent sets; without
        one every command is refused, so a gate never falls back to believing unsigned ones."""
        if message.retain:
            self._refuse(None, CommandRejectReason.RETAINED.value, "retained commands are ignored")
            return
        verifier: CommandVerifier | None = getattr(self, "command_verifier", None)
        try:
            if verifier is None:
                raise CommandError(CommandRejectReason.NO_TRUST, "this gate has no command verifier")
            command = verifier.verify(bytes(message.payload), redelivered=bool(message.dup))
        except CommandError as exc:
            if exc.command is not None:
                self._respond(exc.command, ok=False, error=exc.reason.value)
            self._refuse(exc.command.id if exc.command else None, exc.reason.value, exc.detail)
            return
        handler = self._handlers.get(command.name)
        if handler is None:
            self._respond(command, ok=False, error=f"unknown command {command.name!r}")
            self._refuse(command.id, "unknown", f"unknown command {command.name!r}")
            return
        try:
            result = handler(command)
        except CommandRefused as exc:
            self._respond(command, ok=False, error=str(exc))
            return
        self._respond(command, ok=True, result=result)

    def _respond(
        self, command: Command, *, ok: bool, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        response = CommandResponse(
            id=command.id,
            site=self.topics.site,
            gate=self.topics.gate,
            ok=ok,
            result=result or {},
            error=error,
            time=datetime.now(UTC),
        )
        self._client.publish(self.topics.response, encode(response), QOS)

    def _refuse(self, command_id: str | None, reason: str, detail: str) -> None:
        log.warning("command refused (%s): %s", reason, detail)
        if self._on_rejected_command is not None:
            self._on_rejected_command(reason, detail, command_id)

    # -- sender step (network thread) ------------------------------------------------

    def _tick(self) -> None:
        """The network's call (edge/netloop.py): a step only when woken or a resend is due.

        A sender thread that stepped every half second read the outbox each time; a
        thousand links doing so would cost thousands of queries a second for nothing.
        """
        with self._wake:
            if not self._dirty and not self._resend_due():
                return
        self._send_step()

    def _send_step(self) -> None:
        """Resend what is due, then publish what fits in the window; one pass."""
        with self._wake:
            self._dirty = False
            if not self._connected or not self._running:
                return
            if self._restart:
                self._inflight.clear()
                self._next_seq = self.outbox.first_pending_seq() or self.outbox.last_seq + 1
                self._restart = False
            due = self._inflight.due()
            room = self.window - len(self._inflight)
            start = self._next_seq
        if due and not self._resend(due):
            return
        if room <= 0:
            return
        try:
            batch = self.outbox.pending(after_seq=start - 1, limit=room)
        except Exception:
            log.exception("could not read the outbox")
            return
        if not self._publish(batch, first_send=True):
            return
        if len(batch) == room:
            self.wake()

    def _resend_due(self) -> bool:
        """Whether an event in flight has reached its resend deadline; the caller holds ``_wake``."""
        deadline = self._inflight.next_deadline()
        return deadline is not None and deadline <= time.monotonic()

    def _resend(self, seqs: list[int]) -> bool:
        """Publish ``seqs`` again, oldest first; false when the connection failed on the way."""
        try:
            rows = self.outbox.rows(seqs)
        except Exception:
            log.exception("could not read the outbox")
            return False
        with self._wake:
            found = {row.seq for row in rows}
            for seq in seqs:
                if seq not in found:  # deleted: the console's Ack for it is being applied
                    self._inflight.acked([seq])
        self._log_resend(len(rows))
        return self._publish(rows, first_send=False)

    def _publish(self, rows: list[Pending], *, first_send: bool) -> bool:
        for row in rows:
            info = self._client.publish(self.topics.event, row.body, QOS)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                # Not sent; go back to it after the next reconnect.
                with self._wake:
                    self._restart = True
                return False
            with self._wake:
                if first_send or row.seq in self._inflight:
                    self._inflight.sent(row.seq)
                if first_send:
                    self._next_seq = row.seq + 1
            self.published += 1
        return True

    def _log_resend(self, count: int) -> None:
        self._resends_unlogged += count
        now = time.monotonic()
        if not self._resends_unlogged or now - self._resend_log_at < _RESEND_LOG_S:
            return
        oldest = self._inflight.oldest()
        if self._inflight.silent():
            detail = "the console has acknowledged nothing for a while; probing with the oldest"
        else:
            detail = "acknowledgements for later events arrived first"
        log.warning(
            "resent %d event(s) the console had not acknowledged (%s; oldest in flight: seq %s)",
            self._resends_unlogged,
            detail,
            oldest[0] if oldest else "-",
        )
        self._resend_log_at, self._resends_unlogged = now, 0
