"""The console's subscriber: commit every event, then tell the gate, then tell the broker.

Order is the whole guarantee.  For each batch the writer thread

1. commits the events (and any rejections and gate statuses) in one transaction;
2. publishes one :class:`~protocol.Ack` per gate naming every sequence number of the batch,
   new and duplicate alike, because only that Ack lets a gate delete from its outbox;
3. sends the broker the MQTT PUBACK of each message (paho's manual ack).

If the console dies before 1 completes, nothing was acknowledged anywhere: the broker
redelivers to the persistent session and the gate still holds the events.  If it dies
between 1 and 3, the broker redelivers events that are already stored; the store drops
them by id and the console acknowledges them again.  Nothing is lost and nothing is
stored twice.

paho's network thread only decodes, checks and enqueues, so it keeps reading while a
batch is being synced.  The queue is bounded (:data:`QUEUE_FACTOR` x ``receive_maximum``):
the broker should send no more than ``receive_maximum`` messages ahead of our PUBACKs,
but mosquitto 2.0.11 sends a session's whole queued backlog at once after a reconnect
(measured: 60,000 delivered while 13,500 were committed).  When the queue is full the
network thread waits, TCP holds the rest in the broker, and the console's memory stays
flat however long it was away; the writer, no longer starved of the GIL by decoding,
also commits steadily instead of after the last message has arrived.  A PUBACK is sent only on the connection that
delivered the message: MQTT packet ids belong to a connection, and after a reconnect the
broker redelivers whatever we had not acknowledged anyway.

:class:`IngestWorkers` runs several ingestors as processes on one ``$share`` group
(``console run --workers N``, docs/storage.md); each one keeps this same order.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from console.db import DatabaseError, now_text
from console.integrity import IngestGuard, IntegrityLimits, Verdict
from console.store import LINK_HEARTBEAT_S, EventStore, LinkKind, LinkState, Rejection
from protocol import (
    ConsoleStatus,
    Event,
    GateState,
    GateStatus,
    ProtocolError,
    RejectReason,
    decode_event,
    decode_status,
    encode,
    parse_topic,
    seq_ranges,
)
from protocol.identity import MAX_INGEST_WORKERS, ingest_connection
from protocol.messages import Ack
from protocol.mqtt import KEEPALIVE_S, QOS, SESSION_EXPIRY_S, BrokerEndpoint, Will, make_client
from protocol.topics import (
    CONSOLE_NODE,
    ROOT,
    GateTopics,
    TopicKind,
    all_sites_filter,
    console_status_topic,
    site_filter,
)

log = logging.getLogger("gatepost.console.ingest")

ALL_SITES = "+"
SHARE_PREFIX = "$share"
MAX_SEQ = 2**63 - 1
"""Largest sequence number a 64-bit column holds; a gate claiming more is refused, not stored."""
ANNOUNCE_ALL = "all"
"""Site under which a console that serves every site announces its status (see docs/console.md)."""

RECEIVE_MAXIMUM = 2000
"""Messages the broker may send before we PUBACK; a few batches' worth keeps the pipe full."""
QUEUE_FACTOR = 2
"""The writer's queue holds this many times ``receive_maximum`` before the network thread waits."""
_QUEUE_POLL_S = 0.5

_STOP = object()
_WAKE = object()
"""Put in the queue by the network thread when the broker connection changes, so the writer records it."""
_RETRY_MIN_S = 0.2
_RETRY_MAX_S = 5.0
_REJECTION_LOG_BURST = 20
_REJECTION_LOG_WINDOW_S = 60.0


@dataclass(slots=True)
class IngestCounters:
    """Totals since start; ``received`` counts gates' messages (events, statuses and junk).

    The ingestor updates one instance in place; :attr:`Ingestor.counters` hands out copies.
    """

    received: int = 0
    committed: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: int = 0
    acks_sent: int = 0
    batches: int = 0
    commit_failures: int = 0
    connects: int = 0


@dataclass(slots=True)
class _Item:
    """One delivered message on its way to the writer."""

    mid: int
    qos: int
    generation: int
    event: Event | None = None
    status: GateStatus | None = None
    rejection: Rejection | None = None


@dataclass(slots=True)
class _RejectionLog:
    """Log rejections at WARNING, but not a flood of them: a hostile gate must not fill the disk."""

    window_start: float = 0.0
    logged: int = 0
    suppressed: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def log(self, rejection: Rejection) -> None:
        now = time.monotonic()
        if now - self.window_start > _REJECTION_LOG_WINDOW_S:
            if self.suppressed:
                log.warning(
                    "%d more rejected messages not logged in the last %.0f s: %s",
                    self.suppressed,
                    _REJECTION_LOG_WINDOW_S,
                    ", ".join(f"{reason} {n}" for reason, n in sorted(self.by_reason.items())),
                )
            self.window_start, self.logged, self.suppressed = now, 0, 0
            self.by_reason.clear()
        if self.logged < _REJECTION_LOG_BURST:
            self.logged += 1
            log.warning(
                "rejected message on %s: %s: %s", rejection.topic[:200], rejection.reason, rejection.detail
            )
        else:
            self.suppressed += 1
            self.by_reason[rejection.reason] = self.by_reason.get(rejection.reason, 0) + 1


class Ingestor:
    """Subscribes to every gate's events and status and stores them exactly once.

    ``site`` is one site name, or ``"+"`` for all sites.  The console announces itself
    with a retained :class:`~protocol.ConsoleStatus` on ``console_status_topic(site)``;
    serving all sites, it uses the site name ``"all"``.  ``on_commit(events, new)`` is
    called from the writer thread after each batch that held events, after the Acks
    were published.
    """

    def __init__(
        self,
        endpoint: BrokerEndpoint,
        store: EventStore,
        *,
        name: str = "console",
        site: str = ALL_SITES,
        batch_max: int = 500,
        batch_wait_s: float = 0.0,
        on_commit: Callable[[list[Event], int], None] | None = None,
        receive_maximum: int = RECEIVE_MAXIMUM,
        share_group: str | None = None,
        shared: bool = False,
        statuses: bool = True,
        limits: IntegrityLimits | None = None,
        guard: IngestGuard | None = None,
        broker: str | None = None,
    ) -> None:
        """``guard`` and ``broker``: one ingestor per broker of a site shares one guard, and says
        which broker it reads (console/brokers.py); ``broker`` also names its ``console_link`` row."""
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self.endpoint = endpoint
        self.store = store
        self.name = name
        self.site = site
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.on_commit = on_commit
        self.receive_maximum = receive_maximum
        if site == ALL_SITES:
            events, status = all_sites_filter(TopicKind.EVENT), all_sites_filter(TopicKind.STATUS)
            self.status_topic = console_status_topic(ANNOUNCE_ALL)
        else:
            events, status = site_filter(site, TopicKind.EVENT), site_filter(site, TopicKind.STATUS)
            self.status_topic = console_status_topic(site)
        # Events: one plain subscription, or a share of a $share group with the other
        # workers.  Statuses stay a plain subscription of one process (``statuses``):
        # they are few, and the broker sends retained messages only to plain subscriptions.
        group_filter = f"{SHARE_PREFIX}/{share_group}/{events}" if share_group else None
        if shared and group_filter is None:
            raise ValueError("a shared ingestor needs a share_group")
        self._filters = [group_filter if shared else events] + ([status] if statuses else [])
        # The session may hold the other mode's subscription from before the number of
        # workers changed; keeping both would deliver every event twice.
        self._stale_filters = [events] if shared else ([group_filter] if group_filter else [])
        self.share_group = share_group if shared else None
        self.announces = statuses
        self.client_id = endpoint.client_id  # console.<name>, or a worker's (worker_endpoint)
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._queue_max = max(QUEUE_FACTOR * receive_maximum, batch_max)
        self._room = threading.Event()
        self._counts = IngestCounters()
        self._rejection_log = _RejectionLog()
        self._generation = 0
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._client: paho.Client | None = None
        self._ack_topics: dict[tuple[str, str], str] = {}
        self.guard = guard if guard is not None else IngestGuard(store, limits)
        self.broker = broker
        # A shared guard is shared by ingestors of other brokers: judge and commit under its
        # lock so that the status the store ends with is the one judged newest.
        self._serial: contextlib.AbstractContextManager[object] = (
            self.guard.lock if guard is not None else contextlib.nullcontext()
        )
        self._link_name = name if broker is None else f"{name}@{broker}"
        # The broker connection as the store should record it (``console_link``): set by the
        # network thread, written by the writer with the next batch or on its own.
        self._link_lock = threading.Lock()
        self._link_pending: LinkState | None = None
        self._link: LinkState | None = None
        self._link_written = 0.0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Ingestor:
        if self._client is not None:
            raise RuntimeError("ingestor already started")
        self._stopping.clear()
        will = None
        if self.announces:
            will = Will(self.status_topic, self._status_payload(GateState.OFFLINE, stamp=False), retain=True)
        client = make_client(self.endpoint, will=will, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._writer = threading.Thread(
            target=self._write_loop, name=f"console-{self.name}-writer", daemon=True
        )
        self._writer.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = self.receive_maximum
        client.connect_async(
            self.endpoint.host, self.endpoint.port, keepalive=KEEPALIVE_S, clean_start=False, properties=props
        )
        client.loop_start()
        return self

    def wait_connected(self, timeout: float | None = None) -> bool:
        """True once connected and subscribed, so that anything published from now is ours."""
        return self._subscribed.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the batch in hand, announce ``stopped`` and disconnect.

        Messages still queued behind the batch are not acknowledged; the broker keeps
        them in our session and delivers them again on the next start.
        """
        client = self._client
        if client is None:
            return
        self._stopping.set()
        self._queue.put(_STOP)
        if self._writer is not None:
            self._writer.join(timeout)
        if client.is_connected() and self.announces:
            info = client.publish(
                self.status_topic, self._status_payload(GateState.STOPPED), qos=QOS, retain=True
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                log.warning("could not publish console status 'stopped' before disconnecting")
        client.disconnect()
        client.loop_stop()
        self._record_stop()
        self._client = None
        self._subscribed.clear()
        self._queue = queue.SimpleQueue()
        log.info("console %s stopped: %s", self.name, self.counters)

    def _record_stop(self) -> None:
        """Say in the store that this console no longer watches the broker, so nobody reads its
        last states as current.  Best effort: a console that cannot write says nothing, and its
        heartbeat goes stale instead (docs/console.md, "Held and unconfirmed")."""
        if not self.announces:
            return
        with self._link_lock:
            link = self._link_pending or self._link
            self._link_pending = None
        if link is None:
            return
        if link.connected:
            stamp = now_text()
            link = LinkState(self._link_name, LinkKind.STOPPED, stamp, stamp)
        try:
            self.store.commit(link=link)
        except Exception as exc:
            log.warning("console %s could not record that it stopped: %s", self.name, exc)

    def __enter__(self) -> Ingestor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def counters(self) -> IngestCounters:
        return replace(self._counts)

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    # -- paho callbacks (network thread: cheap work only) ----------------------------

    def _status_payload(self, state: GateState, *, stamp: bool = True) -> bytes:
        return encode(ConsoleStatus(state=state, name=self.name, time=datetime.now(UTC) if stamp else None))

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: object,
        _flags: paho.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the console's connection: %s", reason)
            return
        self._generation += 1
        self._counts.connects = self._generation
        # Before subscribing: every status the broker now sends again is received after ``since``.
        self._set_link(connected=True)
        options = SubscribeOptions(qos=QOS)
        client.subscribe([(topic, options) for topic in self._filters])
        # Only then drop the other way in (shared <-> not): the other order left a moment with
        # no subscription at all, and an event published in it went to no one until its gate
        # resent it (bench/fleet.py, going from one worker to two).  Overlapping, an event may
        # come twice; the store keeps each id once.
        if self._stale_filters:
            client.unsubscribe(self._stale_filters)
        if self.announces:
            client.publish(self.status_topic, self._status_payload(GateState.ONLINE), qos=QOS, retain=True)
        log.info("console %s connected to %r, subscribing to %s", self.name, self.endpoint, self._filters)

    def _on_subscribe(
        self,
        _client: paho.Client,
        _userdata: object,
        _mid: int,
        reasons: list[ReasonCode],
        _props: Properties | None,
    ) -> None:
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:
            log.error("broker refused the console's subscriptions: %s", ", ".join(refused))
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: object,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self._subscribed.clear()
        if not self._stopping.is_set():
            self._set_link(connected=False)
            log.warning("console %s lost the broker (%s); reconnecting", self.name, reason)

    def _set_link(self, *, connected: bool) -> None:
        """Note a change of the broker connection for the writer to record, and wake it."""
        if not self.announces:
            return
        stamp = now_text()
        with self._link_lock:
            kind = LinkKind.CONNECTED if connected else LinkKind.LOST
            self._link_pending = LinkState(self._link_name, kind, stamp, stamp)
        self._queue.put(_WAKE)

    def _link_due(self) -> LinkState | None:
        """A connection change to record, or the heartbeat that keeps a connected link confirmed."""
        if not self.announces:
            return None
        now = time.monotonic()
        with self._link_lock:
            link, self._link_pending = self._link_pending, None
            if link is None and self._link is not None and self._link.connected:
                if now - self._link_written < LINK_HEARTBEAT_S:
                    return None
                link = replace(self._link, confirmed_at=now_text())
            if link is not None:
                self._link, self._link_written = link, now
            return link

    def _on_message(self, client: paho.Client, _userdata: object, message: paho.MQTTMessage) -> None:
        item = _Item(message.mid, message.qos, self._generation)
        topic = message.topic
        try:
            body = parse_message(topic, message.payload)
        except ProtocolError as exc:
            item.rejection = Rejection(topic, exc.reason.value, exc.detail)
        except Exception as exc:  # never let one message kill the network thread
            item.rejection = Rejection(topic, RejectReason.SCHEMA.value, f"unexpected {type(exc).__name__}")
        else:
            if body is None:  # a console's status: "+" matches "$console", so we see our own
                if message.qos:
                    client.ack(message.mid, message.qos)
                return
            if isinstance(body, Event):
                item.event = body
            else:
                item.status = body
        self._counts.received += 1
        self._queue.put(item)
        if self._queue.qsize() >= self._queue_max:
            # Wait for the writer to work the queue down to half; it sets _room after each
            # batch.  The size is checked again after each wait, so a wake-up that came
            # before the wait began is not lost, and a stop ends the wait.
            self._room.clear()
            while self._queue.qsize() > self._queue_max // 2 and not self._stopping.is_set():
                self._room.wait(_QUEUE_POLL_S)

    # -- writer thread ---------------------------------------------------------------

    def _next_batch(self) -> tuple[list[_Item], bool]:
        """Block for one item, then gather more for up to ``batch_wait_s``; True means stop after.

        The default wait is zero: a batch is whatever queued up while the previous one
        was committing.  Under load batches grow by themselves (one fsync covers
        hundreds of events); when quiet, an event is committed at once instead of
        waiting for company — measured, a 5 ms wait cost 5 ms of latency and bought
        no throughput.
        """
        try:
            first = self._queue.get(timeout=LINK_HEARTBEAT_S / 2 if self.announces else None)
        except queue.Empty:
            return [], False  # quiet: time for the link's heartbeat
        if first is _STOP:
            return [], True
        if first is _WAKE:
            return [], False
        assert isinstance(first, _Item)
        batch = [first]
        deadline = time.monotonic() + self.batch_wait_s
        while len(batch) < self.batch_max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                return batch, True
            if item is _WAKE:
                continue
            assert isinstance(item, _Item)
            batch.append(item)
        return batch, False

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            link = self._link_due()
            if batch:
                if self._queue.qsize() <= self._queue_max // 2:
                    self._room.set()
                try:
                    self._handle(batch, link)
                except Exception:  # a bug must not end ingestion; unacknowledged, the gates resend it
                    log.exception("console %s failed to handle a batch of %d messages", self.name, len(batch))
            elif link is not None and not stop:
                self._commit([], [], [], link=link)

    def _handle(self, batch: list[_Item], link: LinkState | None = None) -> None:
        received = [item.event for item in batch if item.event is not None]
        statuses = [item.status for item in batch if item.status is not None]
        rejections = [item.rejection for item in batch if item.rejection is not None]
        with self._serial:
            judged = self._judge(received, statuses)
            if judged is None:
                return  # stopping: unacknowledged, so redelivered later
            verdict, statuses, refused_statuses = judged
            events = verdict.events
            rejections += verdict.rejections + refused_statuses
            result = self._commit(events, statuses, rejections, flags=verdict.flags, link=link)
        if result is None:
            return  # stopping with the batch uncommitted: unacknowledged, so redelivered later
        new, duplicate = result
        counts = self._counts
        counts.batches += 1
        counts.committed += new
        counts.duplicates += duplicate
        counts.statuses += len(statuses)
        counts.rejected += len(rejections)
        for rejection in rejections:
            self._rejection_log.log(rejection)
        client = self._client
        if client is None:
            return
        if events:
            self._publish_acks(client, events)
        generation = self._generation
        for item in batch:
            if item.qos and item.generation == generation:
                client.ack(item.mid, item.qos)
        if events and self.on_commit is not None:
            try:
                self.on_commit(events, new)
            except Exception:
                log.exception("on_commit callback failed")

    def _judge(
        self, events: list[Event], statuses: list[GateStatus]
    ) -> tuple[Verdict, list[GateStatus], list[Rejection]] | None:
        """The ingest guard's verdict on the batch (console/integrity.py), retried like a commit:
        its few reads (a gate's highest stored seq) fail when the store does."""
        delay = _RETRY_MIN_S
        while True:
            try:
                now = datetime.now(UTC)
                verdict = self.guard.check_events(events, now)
                kept, refused = (
                    self.guard.check_statuses(statuses, now, broker=self.broker)
                    if statuses
                    else (statuses, [])
                )
                return verdict, kept, refused
            except DatabaseError as exc:
                self._counts.commit_failures += 1
                log.error("console %s cannot check a batch: %s; retrying in %.1f s", self.name, exc, delay)
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, _RETRY_MAX_S)

    def _commit(
        self,
        events: list[Event],
        statuses: list[GateStatus],
        rejections: list[Rejection],
        *,
        flags: list[int] | None = None,
        link: LinkState | None = None,
    ) -> tuple[int, int] | None:
        """Commit, retrying with back-off while the store fails (disk full, locked, I/O error)."""
        delay = _RETRY_MIN_S
        while True:
            try:
                result = self.store.commit(events, statuses, rejections, flags=flags, link=link)
                return result.new, result.duplicate
            except Exception as exc:
                self._counts.commit_failures += 1
                log.error(
                    "console %s cannot commit %d events: %s; retrying in %.1f s",
                    self.name,
                    len(events),
                    exc,
                    delay,
                )
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, _RETRY_MAX_S)

    def _publish_acks(self, client: paho.Client, events: list[Event]) -> None:
        by_gate: dict[tuple[str, str], list[int]] = defaultdict(list)
        for event in events:
            by_gate[event.site, event.gate].append(event.seq)
        for key, seqs in by_gate.items():
            topic = self._ack_topics.get(key)
            if topic is None:
                topic = self._ack_topics[key] = GateTopics(*key).ack
            client.publish(topic, encode(Ack(seqs=seq_ranges(seqs))), qos=QOS)
            self._counts.acks_sent += 1


def parse_message(topic: str, payload: bytes) -> Event | GateStatus | None:
    """What a delivered message is, or ProtocolError saying why it is refused.

    ``None`` means a console's own status topic, which the status filter also matches
    and which is not ours to store.  The envelope must name the gate whose topic it came
    on: the ACL already fences each gate into its subtree, and this check keeps a gate
    from writing another gate's history even if the ACL were wrong.
    """
    parts = topic.split("/", 4)
    if len(parts) == 5 and parts[3] == CONSOLE_NODE and f"{parts[0]}/{parts[1]}" == ROOT:
        return None
    ref = parse_topic(topic)
    body: Event | GateStatus
    if ref.kind is TopicKind.EVENT:
        body = decode_event(payload)
    elif ref.kind is TopicKind.STATUS:
        body = decode_status(payload)
    else:
        raise ProtocolError(RejectReason.BAD_TOPIC, f"the console does not read {ref.kind.value} topics")
    if isinstance(body, Event) and body.seq > MAX_SEQ:
        raise ProtocolError(RejectReason.SCHEMA, f"seq {body.seq} does not fit in 64 bits")
    if body.site != ref.site or body.gate != ref.gate:
        raise ProtocolError(
            RejectReason.TOPIC_MISMATCH,
            f"envelope is {body.site}/{body.gate} but the topic is {ref.site}/{ref.gate}",
        )
    return body


# -- scale-out: several ingest processes sharing one $share group -------------------------

MAX_WORKERS = MAX_INGEST_WORKERS
SWEEP_WAIT_S = 30.0
"""How long the other workers wait for worker 0 to sweep and subscribe before they start anyway."""
"""16, was 64: each worker's client id must exist beforehand as its own broker client bound
to that id (protocol.identity), so every console account carries one per possible worker.
16 is more processes than a console host has cores to give them (docs/BENCHMARKS.md)."""
_RESTART_MIN_S = 1.0
_HEARTBEAT_S = 60.0


def share_group_name(name: str, password: str | None) -> str:
    """The console's $share group: named after the console and a digest of its password.

    mosquitto 2.0 grants ``$share/<group>/…`` to any client and only checks the read ACL
    when it delivers, so a client without read access that joins the group silently
    swallows its share of the messages (verified against 2.0.11, docs/storage.md).  A
    gate cannot know the console's password, so it cannot guess the group to join.
    """
    digest = hashlib.sha256(f"gatepost-share\0{name}\0{password or ''}".encode()).hexdigest()[:12]
    return f"console-{name}-{digest}"


def worker_endpoint(endpoint: BrokerEndpoint, index: int) -> BrokerEndpoint:
    """Worker ``index``'s connection of the console account: worker 0 is ``console.<name>``
    itself, so the single console's session (and queue) carries over; others ``….w<index>``."""
    return endpoint.for_connection(ingest_connection(index))


def sweep_worker_sessions(endpoint: BrokerEndpoint, keep: int, timeout: float = 5.0) -> int:
    """End the broker sessions of workers ``keep`` … :data:`MAX_WORKERS` - 1; return how many were ended.

    The broker keeps queueing a share of the events for a group member whose process is
    gone (mosquitto 2.0 distributes to offline persistent sessions), so after running
    with fewer workers than before, those sessions would hold events back until the
    gates resent them.  A clean-start connect with zero expiry ends such a session.

    The first connection is opened here (refused: no broker, nothing to sweep), the others
    side by side on their own loops, and all CONNACKs are awaited together: one after
    another, waiting up to ``timeout`` for each, took over a minute for fifteen in a busy
    process (bench/fleet.py's console restarts, docs/fleet.md).
    """
    clients: list[paho.Client] = []
    for index in range(max(keep, 1), MAX_WORKERS):
        client = make_client(worker_endpoint(endpoint, index))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        options: dict[str, Any] = {"keepalive": KEEPALIVE_S, "clean_start": True, "properties": props}
        if clients:  # the broker answered the first: the others' handshakes run side by side
            client.connect_async(endpoint.host, endpoint.port, **options)
        else:
            try:
                client.connect(endpoint.host, endpoint.port, **options)
            except OSError as exc:
                log.warning("could not clear the broker session of ingest worker %d: %s", index, exc)
                break
        client.loop_start()
        clients.append(client)
    deadline = time.monotonic() + timeout
    while not all(client.is_connected() for client in clients) and time.monotonic() < deadline:
        time.sleep(0.005)
    ended = sum(1 for client in clients if client.is_connected())
    for client in clients:
        client.disconnect()
    for client in clients:
        client.loop_stop()
    return ended


@dataclass(frozen=True, slots=True)
class WorkerCounters:
    """The supervisor's view; each worker logs its own :class:`IngestCounters`."""

    workers: int
    alive: int
    restarts: int


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker process needs, picklable for ``multiprocessing`` spawn."""

    endpoint: BrokerEndpoint
    store: str
    name: str = "console"
    site: str = ALL_SITES
    batch_max: int = 500
    batch_wait_s: float = 0.0
    log_level: str = "INFO"
    limits: IntegrityLimits = field(default_factory=IntegrityLimits)


def _worker_main(spec: WorkerSpec, index: int, workers: int, ready: Any) -> None:
    """One ingest process: its own store connection and MQTT session, a share of the events.

    It stops on SIGTERM (from :meth:`IngestWorkers.stop`) or SIGINT (Ctrl-C reaches the
    whole process group).  Nothing is shared with the parent but a pipe that says
    "subscribed": a process killed while holding a shared lock would wedge the others.

    The stop signals are blocked (in every thread, so set before any starts) and taken
    with ``sigtimedwait`` rather than by a handler: a handler that sets a
    ``threading.Event`` can run while the main thread holds that Event's lock inside
    ``wait`` and deadlock on it, which left a worker to be killed after 10 s now and then.
    """
    import signal

    logging.basicConfig(
        level=spec.log_level, format=f"%(asctime)s console[w{index}] %(levelname)s %(name)s: %(message)s"
    )
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    def stopped(timeout: float) -> bool:
        return signal.sigtimedwait(stop_signals, timeout) is not None

    try:
        store = EventStore(spec.store)
    except DatabaseError as exc:
        log.error("ingest worker %d cannot open the event store: %s", index, exc)
        raise SystemExit(1) from None
    ingestor = Ingestor(
        worker_endpoint(spec.endpoint, index),
        store,
        name=spec.name,
        site=spec.site,
        batch_max=spec.batch_max,
        batch_wait_s=spec.batch_wait_s,
        share_group=share_group_name(spec.name, spec.endpoint.password),
        shared=workers > 1,
        statuses=index == 0,
        limits=spec.limits,
    )
    if index == 0:  # before subscribing: a stale member of the share group would take a share
        sweep_worker_sessions(spec.endpoint, workers)
    try:
        ingestor.start()
        while not ingestor.wait_connected(0.2):
            if stopped(0):
                return
        ready.send(index)
        ready.close()
        reported = ingestor.counters
        while not stopped(_HEARTBEAT_S):
            if ingestor.counters != reported:
                reported = ingestor.counters
                log.info("worker %d: %s", index, reported)
    finally:
        ingestor.stop()
        store.close()


class IngestWorkers:
    """N ingest processes on one store, restarted when one dies.

    Processes, not threads: decoding and validating JSON is Python work that the GIL
    would serialise.  Each worker commits and acknowledges what the broker gave it; the
    Acks name sequence ranges, so a gate whose events are split between workers simply
    gets several Acks.  A worker that dies is restarted with the same client id, so the
    broker hands it back whatever it had not acknowledged.
    """

    def __init__(self, spec: WorkerSpec, count: int) -> None:
        if not 1 <= count <= MAX_WORKERS:
            raise ValueError(f"workers must be 1..{MAX_WORKERS}")
        import multiprocessing

        self.spec = spec
        self.count = count
        self._mp = multiprocessing.get_context("spawn")
        self._procs: list[Any] = [None] * count
        self._ready: list[Any] = [None] * count
        self._started_at = [0.0] * count
        self.restarts = 0
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._lock = threading.Lock()
        self.on_commit: Callable[[list[Event], int], None] | None = None
        """Accepted so callers can treat this like an :class:`Ingestor`, but never called:
        the commits happen in other processes.  Readers poll the store (``events_after``)."""

    def start(self) -> IngestWorkers:
        """Worker 0 first: it ends the stale sessions (:func:`sweep_worker_sessions`) in its own
        fresh process before it subscribes, then the others start.  Swept from this process,
        fifteen TLS handshakes competed for the GIL with whatever else runs here, and took
        6 s beside the fleet harness's 200 gates (bench/fleet.py)."""
        self._spawn(0)
        if self.count > 1:
            ready = self._ready[0]
            with contextlib.suppress(EOFError, OSError):  # dead or still trying: the others start anyway
                ready.poll(SWEEP_WAIT_S)
            for index in range(1, self.count):
                self._spawn(index)
        self._monitor = threading.Thread(target=self._watch, name="ingest-workers", daemon=True)
        self._monitor.start()
        return self

    def _spawn(self, index: int) -> None:
        ready, ready_child = self._mp.Pipe(duplex=False)
        proc = self._mp.Process(
            target=_worker_main,
            args=(self.spec, index, self.count, ready_child),
            name=f"gatepost-ingest-{index}",
            daemon=True,
        )
        proc.start()
        ready_child.close()
        self._procs[index], self._ready[index], self._started_at[index] = proc, ready, time.monotonic()
        log.info("ingest worker %d started (pid %d)", index, proc.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                for index, proc in enumerate(self._procs):
                    if proc is None or proc.is_alive() or self._stopping.is_set():
                        continue
                    if time.monotonic() - self._started_at[index] < _RESTART_MIN_S:
                        continue  # crashing at start: do not spin
                    log.warning(
                        "ingest worker %d (pid %d) exited with %s; restarting", index, proc.pid, proc.exitcode
                    )
                    self.restarts += 1
                    self._spawn(index)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once every worker is connected and subscribed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for index in range(self.count):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = self._ready[index]
            if ready is True:
                continue
            try:
                if not ready.poll(remaining):
                    return False
                ready.recv()
            except (EOFError, OSError):
                return False  # the worker died before it subscribed
            ready.close()
            self._ready[index] = True
        return True

    @property
    def counters(self) -> WorkerCounters:
        return WorkerCounters(workers=self.count, alive=self.alive(), restarts=self.restarts)

    @property
    def connected(self) -> bool:
        return self.alive() == self.count

    def pids(self) -> list[int | None]:
        return [proc.pid if proc is not None else None for proc in self._procs]

    def alive(self) -> int:
        return sum(1 for proc in self._procs if proc is not None and proc.is_alive())

    def stop(self, timeout: float = 10.0) -> None:
        """Ask every worker to finish its batch and disconnect; kill those that do not."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout)
        deadline = time.monotonic() + timeout
        with self._lock:
            for proc in self._procs:
                if proc is not None and proc.is_alive():
                    proc.terminate()  # SIGTERM: finish the batch in hand, then disconnect
            for proc in self._procs:
                if proc is not None:
                    proc.join(max(0.0, deadline - time.monotonic()))
            for index, proc in enumerate(self._procs):
                if proc is not None and proc.is_alive():
                    log.warning("ingest worker %d did not stop in %.0f s; killing it", index, timeout)
                    proc.kill()
                    proc.join(2)

    def __enter__(self) -> IngestWorkers:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
