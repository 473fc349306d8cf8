"""The durable outbox: the only place a gate's events live until the console has them.

An event is *taken* when its row is committed and the write-ahead log is synced to disk;
``append`` returns only then, so a power cut after a scan was answered cannot lose it.
Appends from several threads are committed together (leader/follower group commit):
the first caller to take the commit lock becomes the leader and commits everything
queued so far with a single fsync, while later callers queue behind it and find their
event already committed or lead the next batch.  A burst costs one sync rather than
one per event, and a lone scan is committed on its own thread with no hand-off.
``submit`` and acknowledgements, which must not block their caller, are committed by a
background writer thread through the same lock.

Rows leave only through :meth:`Outbox.ack`, which the MQTT link calls when the console
says it has committed them.  Sequence numbers are assigned at commit, start at 1, and are
kept in a ``meta`` row, so they keep counting across restarts and after the table
empties.  The capacity is bounded; past it, new events are refused and counted, and the
first commit after room returns writes one ``outbox.overflow`` event that says how many
of which type were lost and when, so a loss is always itself an event.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from protocol import Event, GatepostError, encode
from protocol.events import OUTBOX_OVERFLOW

log = logging.getLogger("gatepost.edge.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq  INTEGER PRIMARY KEY,
    id   TEXT NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class OutboxClosed(GatepostError, RuntimeError):
    """The outbox was closed while an append or ack was waiting."""


@dataclass(frozen=True, slots=True)
class Pending:
    """An event still owed to the console, in its wire form."""

    seq: int
    body: bytes


@dataclass
class _Overflow:
    dropped: int = 0
    first_time: str | None = None
    last_time: str | None = None
    by_type: dict[str, int] = field(default_factory=dict)

    def count(self, event_type: str, at: datetime) -> None:
        stamp = at.isoformat()
        self.dropped += 1
        self.first_time = self.first_time or stamp
        self.last_time = stamp
        self.by_type[event_type] = self.by_type.get(event_type, 0) + 1

    def to_json(self) -> str:
        return json.dumps(
            {
                "dropped": self.dropped,
                "first_time": self.first_time,
                "last_time": self.last_time,
                "by_type": self.by_type,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> _Overflow:
        raw = json.loads(text)
        return cls(raw["dropped"], raw["first_time"], raw["last_time"], dict(raw["by_type"]))


@dataclass(frozen=True, slots=True)
class _Append:
    type: str
    data: dict[str, Any]
    time: datetime
    clock_trusted: bool
    future: Future[Event | None]


@dataclass(frozen=True, slots=True)
class _Ack:
    ranges: tuple[tuple[int, int], ...]
    future: Future[int]


class Outbox:
    """A bounded, durable, ordered queue of one gate's events.

    ``capacity`` counts rows.  While full, events are refused and counted (durably, in
    ``meta``); the count becomes an ``outbox.overflow`` event as soon as a row is free.
    ``sync`` may be set to ``"normal"`` only for benchmarks that compare against the
    durable mode.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        site: str,
        gate: str,
        boot: str | None = None,
        capacity: int = 200_000,
        sync: str = "full",
    ) -> None:
        if capacity < 2:
            raise ValueError("outbox capacity must be at least 2")
        self.path = Path(path)
        self.site = site
        self.gate = gate
        self.boot = boot or uuid.uuid4().hex
        self.capacity = capacity
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer_db = self._connect(sync)
        self._writer_db.executescript(_SCHEMA)
        self._last_seq = int(self._meta("last_seq", "0"))
        self._overflow = _Overflow.from_json(self._meta("overflow", _Overflow().to_json()))
        self._count = self._writer_db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        self.last_event_time = self._meta("last_event_time", "")
        self._reader_db = self._connect(sync)
        self._reader_lock = threading.Lock()
        self._pending: list[_Append | _Ack] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._work = threading.Event()
        self._closed = False
        self._db_closed = False
        self._listeners: list[Any] = []
        self._trusted = False
        self.commits = 0
        self._writer = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._writer.start()

    def _connect(self, sync: str) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        return db

    def _meta(self, key: str, default: str) -> str:
        row = self._writer_db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    # -- producer side ---------------------------------------------------------------

    def submit(
        self, event_type: str, data: dict[str, Any], *, time: datetime, clock_trusted: bool
    ) -> Future[Event | None]:
        """Queue an event for the next group commit; the future resolves once it is durable.

        It resolves to the committed :class:`Event`, or to ``None`` if the outbox was full
        and the event was counted into the next overflow event instead.
        """
        future: Future[Event | None] = Future()
        if self._closed:
            future.set_exception(OutboxClosed("outbox is closed"))
            return future
        self._enqueue(
            _Append(event_type, data, time.astimezone(UTC), clock_trusted, future), wake_writer=True
        )
        return future

    def append(
        self, event_type: str, data: dict[str, Any], *, time: datetime, clock_trusted: bool
    ) -> Event | None:
        """Take one event: return it once committed and synced (or ``None`` if refused as overflow)."""
        future: Future[Event | None] = Future()
        if self._closed:
            raise OutboxClosed("outbox is closed")
        self._enqueue(
            _Append(event_type, data, time.astimezone(UTC), clock_trusted, future), wake_writer=False
        )
        with self._commit_lock:
            if not future.done():
                self._commit_pending()
        return future.result()

    def add_listener(self, callback: Any) -> None:
        """Call ``callback()`` after each group commit (the link uses it to wake its sender)."""
        self._listeners.append(callback)

    # -- consumer side ---------------------------------------------------------------

    def pending(self, after_seq: int = 0, limit: int = 500) -> list[Pending]:
        """Events with ``seq > after_seq`` still owed to the console, oldest first."""
        with self._reader_lock:
            rows = self._reader_db.execute(
                "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
            ).fetchall()
        return [Pending(seq, body) for seq, body in rows]

    def rows(self, seqs: Sequence[int]) -> list[Pending]:
        """The events among ``seqs`` still owed to the console, oldest first; acknowledged ones are absent."""
        found: list[Pending] = []
        for start in range(0, len(seqs), 500):  # well under SQLite's limit on bound parameters
            chunk = list(seqs[start : start + 500])
            marks = ",".join("?" * len(chunk))
            with self._reader_lock:
                found += self._reader_db.execute(
                    f"SELECT seq, body FROM outbox WHERE seq IN ({marks}) ORDER BY seq", chunk
                ).fetchall()
        found.sort()
        return [Pending(seq, body) for seq, body in found]

    def first_pending_seq(self) -> int | None:
        with self._reader_lock:
            row = self._reader_db.execute("SELECT MIN(seq) FROM outbox").fetchone()
        return row[0]

    def ack(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Delete the acknowledged events; return how many rows went.  Blocks until durable."""
        return self.ack_async(ranges).result()

    def ack_async(self, ranges: Iterable[tuple[int, int]]) -> Future[int]:
        future: Future[int] = Future()
        if self._closed:
            future.set_exception(OutboxClosed("outbox is closed"))
            return future
        self._enqueue(_Ack(tuple(ranges), future), wake_writer=True)
        return future

    def _enqueue(self, item: _Append | _Ack, *, wake_writer: bool) -> None:
        with self._pending_lock:
            self._pending.append(item)
            if wake_writer:
                self._work.set()

    @property
    def backlog(self) -> int:
        """Events taken but not yet acknowledged by the console."""
        return self._count

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def dropped_pending(self) -> int:
        """Events refused since the last overflow event was written."""
        return self._overflow.dropped

    def close(self) -> None:
        """Commit everything already queued, then stop; later calls fail with OutboxClosed."""
        if self._closed:
            return
        self._closed = True
        self._work.set()
        self._writer.join()
        with self._commit_lock:
            self._commit_pending()  # an append that raced close() still gets its answer
            self._db_closed = True
            self._reader_db.close()
            self._writer_db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- committing ------------------------------------------------------------------

    def _run(self) -> None:
        """Commit what callers that must not block (``submit``, acks) left queued."""
        while not self._closed:
            self._work.wait()
            with self._commit_lock:
                self._commit_pending()
        with self._commit_lock:
            self._commit_pending()  # what was queued before close() is committed, not dropped

    def _commit_pending(self) -> None:
        """Commit everything queued so far; the caller holds the commit lock."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            self._work.clear()
        if batch and self._db_closed:
            for item in batch:
                item.future.set_exception(OutboxClosed("outbox is closed"))
        elif batch:
            self._commit(batch)

    def _commit(self, batch: Sequence[object]) -> None:
        appends = [item for item in batch if isinstance(item, _Append)]
        acks = [item for item in batch if isinstance(item, _Ack)]
        db = self._writer_db
        results: list[Event | None] = []
        deleted: list[int] = []
        last_seq, count = self._last_seq, self._count
        overflow = _Overflow(**{**self._overflow.__dict__, "by_type": dict(self._overflow.by_type)})
        last_time = self.last_event_time
        try:
            db.execute("BEGIN IMMEDIATE")
            for ack in acks:
                removed = 0
                for first, last in ack.ranges:
                    removed += db.execute(
                        "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last)
                    ).rowcount
                count -= removed
                deleted.append(removed)
            rows: list[tuple[int, str, str, bytes]] = []
            for item in (*appends, None):
                if overflow.dropped and count < self.capacity:
                    # Room came back: record the loss first, in its place in the sequence.
                    last_seq += 1
                    at, trusted = (
                        (item.time, item.clock_trusted) if item else (datetime.now(UTC), self._trusted)
                    )
                    note = self._event(last_seq, OUTBOX_OVERFLOW, json.loads(overflow.to_json()), at, trusted)
                    rows.append((last_seq, note.id, note.type, encode(note)))
                    count += 1
                    overflow = _Overflow()
                if item is None:
                    break
                self._trusted = item.clock_trusted
                if count >= self.capacity:
                    overflow.count(item.type, item.time)
                    results.append(None)
                    continue
                last_seq += 1
                event = self._event(last_seq, item.type, item.data, item.time, item.clock_trusted)
                rows.append((last_seq, event.id, event.type, encode(event)))
                results.append(event)
                count += 1
                last_time = event.time.isoformat()
            if rows:
                db.executemany("INSERT INTO outbox (seq, id, type, body) VALUES (?, ?, ?, ?)", rows)
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("last_seq", str(last_seq)),
                    ("overflow", overflow.to_json()),
                    ("last_event_time", last_time),
                ],
            )
            db.execute("COMMIT")
        except Exception as exc:  # a full disk or a corrupt file: every waiter must hear it
            log.error("outbox commit failed: %s", exc)
            if db.in_transaction:
                db.execute("ROLLBACK")
            for item in (*appends, *acks):
                item.future.set_exception(exc)
            return
        self._last_seq, self._count, self._overflow, self.last_event_time = (
            last_seq,
            count,
            overflow,
            last_time,
        )
        self.commits += 1
        if any(result is None for result in results):
            log.warning("outbox full (%d events): %d events refused so far", self.capacity, overflow.dropped)
        for item, result in zip(appends, results, strict=True):
            item.future.set_result(result)
        for ack, removed in zip(acks, deleted, strict=True):
            ack.future.set_result(removed)
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                log.exception("outbox listener failed")

    def _event(
        self, seq: int, event_type: str, data: dict[str, Any], at: datetime, clock_trusted: bool
    ) -> Event:
        return Event(
            id=uuid.uuid4().hex,
            site=self.site,
            gate=self.gate,
            boot=self.boot,
            seq=seq,
            time=at,
            clock_trusted=clock_trusted,
            type=event_type,
            data=data,
        )


def continue_numbering(path: Path | str, last_seq: int) -> None:
    """Make the gate whose outbox is at ``path`` number its next event ``last_seq + 1``.

    For a gate whose earlier events reached the console by another road — the demo's
    simulated history, or a replacement gate taking over a retired one's numbering — so
    that the console sees one unbroken sequence.  Call it before the agent opens the
    outbox.  It never lowers the number: a gate that already counted further keeps on.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()
        if last_seq > (int(row[0]) if row else 0):
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(last_seq),))
    finally:
        db.close()
