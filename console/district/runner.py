"""The push feed's thread: read after the cursor, send, and move the cursor once the district has it.

One round: read up to ``batch`` events in ingest order (:mod:`console.district.reader`),
build the records of the selected ones, send them, and only when the feed says every
one was accepted save the new position.  Unselected events move the cursor too (they
are done: there is nothing to send).  A failed round is retried from the same position
after a back-off of 1, 2, 4 … 30 s, so a district broker that is down costs nothing but
a growing backlog in the console's own store, which holds every event anyway.

With ``flow`` selected, each round also sends the current ``flow_hourly`` row of every
(site, gate, hour) its events touched, after those events: the last flow record the
district receives for an hour is the hour's count once its last event went up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from console.district.config import DistrictConfig, Subset
from console.district.cursor import Cursor
from console.district.reader import IngestOrderReader
from console.district.records import Privacy, encode, flow_record, selector
from console.store import NOT_FACT, EventStore, FlowRow, StoredEvent, hour_of

log = logging.getLogger("gatepost.console.district")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0


class Feed(Protocol):
    name: str
    connections: int
    """Connections made so far; a new one may lead to a district that lost its last ``replay_s``."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def send(self, messages: Sequence[tuple[str, bytes]], stop: threading.Event | None = None) -> bool: ...


@dataclass
class FeedCounters:
    rounds: int = 0
    sent: int = 0
    failures: int = 0
    position: int = 0


def pack(records: Sequence[tuple[str, bytes]], per_message: int) -> list[tuple[str, bytes]]:
    """Consecutive records of one topic joined as JSON lines, up to ``per_message`` a PUBLISH.

    Order is kept (a flow record still follows the events it counts).  One PUBLISH and one
    PUBACK per record cost the feed more CPU than the console spends storing the event;
    fifty records a message is one round of paho's and mosquitto's work instead of fifty.
    """
    messages: list[tuple[str, bytes]] = []
    lines: list[bytes] = []
    current = ""
    for topic, record in records:
        if lines and (topic != current or len(lines) >= per_message):
            messages.append((current, b"\n".join(lines)))
            lines = []
        current = topic
        lines.append(record)
    if lines:
        messages.append((current, b"\n".join(lines)))
    return messages


class DistrictRunner:
    """Drives one feed from the store; :meth:`poke` (the ingestor's ``on_commit``) wakes it at once."""

    def __init__(
        self,
        store: EventStore,
        config: DistrictConfig,
        feed: Feed,
        *,
        topic: Callable[[str, str], str] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.feed = feed
        self.cursor = Cursor(store.db, feed.name)
        _, settled, sent = self.cursor.load()
        self.reader = IngestOrderReader(store, settled)  # a new connection: resend the unsettled part
        self.counters = FeedCounters(sent=sent, position=settled)
        self.settled = settled
        self._acked: deque[tuple[float, int]] = deque()  # (when, position) of recent acknowledged rounds
        self._connection: int | None = None  # the feed connection the reader's position was reached on
        self.privacy = Privacy(config.privacy)
        self.wanted = selector(config.select, config.sites)
        self.flow = Subset.FLOW in config.select
        prefix = config.mqtt.topic_prefix if config.mqtt is not None else "district/v1"
        self.topic = topic or (lambda site, kind: f"{prefix}/{config.name}/{site}/{kind}")
        self.replays = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DistrictRunner:
        self.feed.start()
        self._thread = threading.Thread(target=self._run, name=f"district-{self.feed.name}", daemon=True)
        self._thread.start()
        return self

    def poke(self, *_args: object) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.feed.stop()

    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self._stop.is_set():
            try:
                done, more = self.step()
            except Exception:  # a database hiccup: the cursor did not move, try again
                log.exception("district feed round failed; retrying")
                done, more = False, False
            if done:
                backoff = BACKOFF_MIN_S
                if more:
                    continue
                self._wake.wait(self.config.poll_s)
                self._wake.clear()
            else:
                self.counters.failures += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def step(self) -> tuple[bool, bool]:
        """One round: ``(done, more)``; ``done`` False means nothing moved and the round is owed."""
        connection = self.feed.connections
        if self._connection is not None and connection != self._connection:
            self._replay()
        batch = self.reader.read(self.config.batch)
        if batch.position == self.reader.position:
            return True, False
        messages = self.messages(batch.events)
        if messages:
            if not self.feed.send(messages, self._stop):
                return False, False
            if self._connection is None:
                self._connection = self.feed.connections
            elif self.feed.connections != self._connection:
                return False, False  # acknowledged on a connection the replay has not covered yet
        self.counters.sent += sum(payload.count(b"\n") + 1 for _topic, payload in messages)
        self.counters.rounds += 1
        self._settle(batch.position)
        self.cursor.save(batch.position, self.settled, self.counters.sent)
        self.reader.advance(batch.position)
        self.counters.position = batch.position
        return True, batch.more

    def _settle(self, position: int) -> None:
        """Note ``position`` as acknowledged now; ``settled`` becomes the newest acknowledged ``replay_s`` ago."""
        now = time.monotonic()
        self._acked.append((now, position))
        horizon = now - self.config.replay_s
        while self._acked and self._acked[0][0] <= horizon:
            self.settled = max(self.settled, self._acked.popleft()[1])

    def _replay(self) -> None:
        """A new connection: the district may have lost what it acknowledged lately; send it again."""
        log.info(
            "new connection to the district: sending again from %d (acknowledged up to %d)",
            self.settled,
            self.reader.position,
        )
        self.replays += 1
        self.reader.position = self.settled
        self._acked.clear()
        self._connection = self.feed.connections

    def messages(self, events: Sequence[StoredEvent]) -> list[tuple[str, bytes]]:
        name = self.config.name
        out: list[tuple[str, bytes]] = []
        touched: set[tuple[str, str, str]] = set()
        for event in events:
            if not self.wanted(event):
                if self.flow and not event.flags & NOT_FACT:
                    touched.add((event.site, event.gate, hour_of(event.time)))
                continue
            out.append((self.topic(event.site, "event"), encode(self.privacy.record(event, name))))
            if self.flow and not event.flags & NOT_FACT:
                touched.add((event.site, event.gate, hour_of(event.time)))
        if touched:
            for row, count in self._flow_rows(sorted(touched)):
                out.append((self.topic(row.site, "flow"), encode(flow_record(row, name, count))))
        return pack(out, self.config.records_per_message)

    def _flow_rows(self, keys: Sequence[tuple[str, str, str]]) -> list[tuple[FlowRow, int]]:
        rows = []
        for site, gate, hour in keys:
            if self.config.sites is not None and site not in self.config.sites:
                continue
            found = self.store.db.query(
                "SELECT entries, exits, denied, events FROM flow_hourly WHERE site = ? AND gate = ? AND hour = ?",
                (site, gate, hour),
            )
            if found:
                entries, exits, denied, count = found[0]
                rows.append((FlowRow(site, gate, hour, int(entries), int(exits), int(denied)), int(count)))
        return rows
