"""The durable outbox: the only place a gate's events live until the console has them.

An event is *taken* when its row is committed and the write-ahead log is synced to disk;
``append`` returns only then, so a power cut after a scan was answered cannot lose it.
Appends from several threads are committed together (leader/follower group commit):
the first caller to take the commit lock becomes the leader and commits everything
queued so far with a single fsync, while later callers queue behind it and find their
event already committed or lead the next batch.  A burst costs one sync rather than
one per event, and a lone scan is committed on its own thread with no hand-off.
``submit`` and acknowledgements, which must not block their caller, are committed by a
writer (edge/writers.py: the outbox's own pool of one thread, or a pool shared by many
outboxes in the fleet harness — the same pass either way) through the same lock.

Rows leave only through :meth:`Outbox.ack`, which the MQTT link calls when the console
says it has committed them.  Sequence numbers are assigned at commit, start at 1, and are
kept in a ``meta`` row, so they keep counting across restarts and after the table
empties.  The capacity is bounded; past it, new events are refused and counted, and the
first commit after room returns writes one ``outbox.overflow`` event that says how many
of which type were lost and when, so a loss is always itself an event.

**When the disk fails** (full, or the SD card remounted read-only) a door must still
open and no event may vanish unsaid.  A commit that fails does not raise into the
reader that asked: its events keep the numbers they were given and are *held* in a
bounded memory journal, the outbox is ``degraded`` (an ``outbox.degraded`` event, and
:attr:`Outbox.degraded` for the link's retained status), and the held events are readable
by the link like rows, so they reach the console over MQTT at once; the console's Ack
removes them from memory as it would delete rows.  While degraded, new events join the
journal behind the held ones (one order), and the writer retries the disk with back-off,
not at every scan.  When a write succeeds, the journal drains to the file in order, in
chunks, an ``outbox.recovered`` event follows, and the outbox is whole again.  A full
journal refuses further events and counts them into the next ``outbox.overflow``.

Numbers handed out to held events are written to a small pre-allocated record beside
the file (:mod:`edge.held`) before the link may see them.  An agent that restarts with
events still held therefore continues numbering after them instead of reusing their
numbers, and writes an ``outbox.lost`` event saying which numbers were held only in
memory and at most how many of them the console never acknowledged.  When the outbox
file cannot even be opened at start, the number to continue from is unknown: events are
then held without numbers (and not sent) until it can be read.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from edge.held import HeldRecord, HeldState
from edge.writers import WriterPool
from protocol import Event, GatepostError, encode
from protocol.events import OUTBOX_DEGRADED, OUTBOX_LOST, OUTBOX_OVERFLOW, OUTBOX_RECOVERED

log = logging.getLogger("gatepost.edge.outbox")

JOURNAL_CAPACITY = 10_000
"""Events held in memory while the disk refuses writes (a few MB); past it they are refused and counted."""
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0
RETRY_LOG_S = 60.0
"""At most one warning per this long about a disk that still refuses writes."""
DRAIN_CHUNK = 1000
"""Held events written per transaction when the disk comes back: progress even when it has little room."""
SYNC_MODES = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}
CHECKPOINT_EVERY = 100
"""Commits between write-ahead-log checkpoints, which the writer runs, never a scan's commit."""
WAL_ROOM_SPARE = 64
"""No room is made unless the disk has this many times it free."""
CHECKPOINT_QUIET_S = 0.02
"""How long the writer waits after the last commit before it checkpoints."""
CHECKPOINT_RETRY_AFTER = 10
"""Commits after a checkpoint that could not copy the whole log before the next try."""
WAL_ROOM_BYTES = 1 << 20
"""How long the write-ahead log is made at open, so that commits overwrite it in place.

A commit that appends to the log makes the file longer, and ``fdatasync`` must then write
the file's new size too: on ext4 a journal commit beside the data, which measured about
twice the sync of an overwrite here (docs/outbox.md).  SQLite writes the log from its
start again after a complete checkpoint and does not shrink it (``journal_size_limit`` is
unset), so once the file is this long, the ~100 commits between the writer's checkpoints
fit inside it and a scan's sync is an overwrite.  PostgreSQL fills its WAL segments ahead
of use for the same reason (``wal_init_zero``,
https://www.postgresql.org/docs/current/runtime-config-wal.html)."""

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
    journal_full: int = 0

    def count(self, event_type: str, at: datetime, *, journal: bool = False) -> None:
        stamp = at.isoformat()
        self.dropped += 1
        self.first_time = self.first_time or stamp
        self.last_time = stamp
        self.by_type[event_type] = self.by_type.get(event_type, 0) + 1
        self.journal_full += journal

    def to_dict(self) -> dict[str, Any]:
        return {
            "dropped": self.dropped,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "by_type": dict(self.by_type),
            "journal_full": self.journal_full,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> _Overflow:
        return cls(
            raw["dropped"],
            raw["first_time"],
            raw["last_time"],
            dict(raw["by_type"]),
            int(raw.get("journal_full", 0)),  # absent in outboxes written before the journal
        )

    @classmethod
    def from_json(cls, text: str) -> _Overflow:
        return cls.from_dict(json.loads(text))


@dataclass(slots=True)
class _Append:
    type: str
    data: dict[str, Any]
    time: datetime
    clock_trusted: bool
    future: Future[Event | None]
    taken_ns: int = 0
    """When its commit returned (or it was held): set before the future is resolved."""


@dataclass(frozen=True, slots=True)
class _Ack:
    ranges: tuple[tuple[int, int], ...]
    future: Future[int]


@dataclass(slots=True)
class _Held:
    """An event numbered but not (yet) in the file: its wire form, for the link and for the drain."""

    seq: int
    id: str
    type: str
    time: datetime
    body: bytes


@dataclass(slots=True)
class _Unnumbered:
    """An event taken while the number to continue from is unknown (the file could not be read)."""

    type: str
    data: dict[str, Any]
    time: datetime
    clock_trusted: bool


@dataclass(slots=True)
class _DbAck:
    """Acknowledged rows to delete from the file; the future (if any) hears how many went."""

    ranges: tuple[tuple[int, int], ...]
    future: Future[int] | None
    removed: int


class Outbox:
    """A bounded, durable, ordered queue of one gate's events.

    ``capacity`` counts rows.  While full, events are refused and counted (durably, in
    ``meta``); the count becomes an ``outbox.overflow`` event as soon as a row is free.
    ``sync`` may be set to ``"normal"`` or ``"off"`` only for benchmarks and for the tests
    that prove the durable mode is what keeps events through a power cut.
    ``journal_capacity`` bounds the events held in memory while the disk fails;
    ``held_records`` names extra places for the record of their numbers (see
    :mod:`edge.held`); ``retry_min_s`` .. ``retry_max_s`` is the back-off of the retries.
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
        journal_capacity: int = JOURNAL_CAPACITY,
        held_records: Sequence[Path | str] = (),
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        writers: WriterPool | None = None,
    ) -> None:
        if capacity < 2:
            raise ValueError("outbox capacity must be at least 2")
        if sync not in SYNC_MODES:
            raise ValueError(f"outbox sync must be one of {', '.join(SYNC_MODES)}")
        if journal_capacity < 1 or not 0 < retry_min_s <= retry_max_s:
            raise ValueError("journal_capacity must be positive and 0 < retry_min_s <= retry_max_s")
        self.path = Path(path)
        self.site = site
        self.gate = gate
        self.boot = boot or uuid.uuid4().hex
        self.capacity = capacity
        self.journal_capacity = journal_capacity
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self._sync = sync
        self._writers: WriterPool | None = None
        """Who runs the commit passes of ``submit``, acks and disk retries (edge/writers.py): a
        pool shared by many outboxes (the fleet harness), or — ``writers=None`` — this
        outbox's own pool of one thread.  The same pass either way."""
        self._own_writers = writers is None
        self._record = HeldRecord([self.path.with_name(self.path.name + ".held"), *map(Path, held_records)])
        self._writer_db: sqlite3.Connection | None = None
        self._reader_db: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._durable_seq: int | None = None  # None: the number to continue from is not known yet
        self._last_seq = 0
        self._count = 0
        self._overflow = _Overflow()
        self._meta_dirty = False
        self._meta_rows = True
        """Whether the next commit must write the ``meta`` rows.  A commit that only adds rows
        need not: numbering and the last event time are read back from the newest row
        (:func:`_read_meta`), so a scan's commit touches one table, not two."""
        self.last_event_time = ""
        self._journal: dict[int, _Held] = {}  # seq order: numbers only grow
        self._held_types: dict[str, int] = {}  # the journal's events by type, for the held record
        self._unnumbered: list[_Unnumbered] = []
        self._journal_lock = threading.Lock()
        self._visible_seq = 0  # held events above this are not yet in the record: the link must wait
        self._db_acks: list[_DbAck] = []
        self._acks_done: list[_DbAck] = []  # answered once the whole commit is done
        self._degraded: str | None = None
        self._degraded_since = 0.0
        self._retry_at = 0.0
        self._retry_delay = retry_min_s
        self._failures_this_time = 0
        self._warned_at = 0.0
        self._record_dirty = False
        self._record_used = False
        self._record_ok = True
        self._state_changed = False
        self._pending: list[_Append | _Ack] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._closed = False
        self._db_closed = False
        self._listeners: list[Callable[[], None]] = []
        self._state_listeners: list[Callable[[], None]] = []
        self._trusted = False
        self.commits = 0
        self._since_checkpoint = 0
        self._taken_ns = 0
        """When the last commit returned, or events were last held (monotonic ns)."""
        self._local = threading.local()
        self.commit_failures = 0
        """Transactions the disk refused since start."""
        self.journal_dropped = 0
        """Events refused since start because the disk failed and the memory journal was full."""
        self.refused = 0
        """Events refused since start for any reason (outbox or journal full)."""
        try:
            self._open()
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc, "open")
            if self._durable_seq is None:
                self._peek()
        else:
            if self._journal:  # an outbox.lost note: written before the link may send it
                self._flush()
        self._save_record()
        self._visible_seq = self._last_seq
        self._state_changed = False
        self._writers = writers if writers is not None else WriterPool(1, name="outbox-writer")
        self._writers.register(self, self._pool_pass)
        if self._degraded is not None:
            self._writers.kick(self)

    # -- opening ---------------------------------------------------------------------

    def _connect(self, target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
        db = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False, timeout=30)
        if not uri:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={SYNC_MODES[self._sync]}")
            # No automatic checkpoint: it would run inside whichever commit crosses SQLite's
            # 1,000-page mark — a scan's, now and then, copying the log into the file and
            # syncing it while the reader thread waits.  The writer checkpoints instead.
            db.execute("PRAGMA wal_autocheckpoint=0")
        return db

    def _open(self) -> None:
        """Open the file for writing (and reading); learn where numbering stands if not yet known.

        A file on a read-only filesystem may still open, read-only, when its log and
        index exist: what it says is read, then a write that is rolled back tells whether
        it takes writes; if not, this raises and the outbox stays degraded, keeping the
        read-only connection for the link.  SQLite shares one log index per file among a
        process's connections, and one opened read-only stays so, so that reader is
        closed before the next try opens the file again (under the reader lock: the
        link waits a moment rather than finding no file).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._reader_lock:
            if self._reader_db is not None:
                self._reader_db.close()
                self._reader_db = None
            writer = self._connect(self.path)
            try:
                writer.executescript(_SCHEMA)
                meta = _read_meta(writer)
                count = writer.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                reader = self._connect(self.path)
            except BaseException:
                writer.close()
                raise
            last_seq = int(meta.get("last_seq", "0"))
            self._count = count
            if self._durable_seq is None:
                self._adopt(last_seq, meta)
            elif last_seq != self._durable_seq:  # someone else wrote the file meanwhile: trust it
                log.warning("outbox %s says last_seq %d, expected %d", self.path, last_seq, self._durable_seq)
                self._durable_seq = last_seq
                self._last_seq = max(self._last_seq, last_seq)
            self._reader_db = reader
            try:
                writer.execute("BEGIN IMMEDIATE")
                writer.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_seq', ?)", (str(last_seq),)
                )
                writer.execute("ROLLBACK")
            except BaseException:
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
                writer.close()
                raise
        self._writer_db = writer
        self._record.prepare()  # allocated while the disk takes new blocks; overwritten in place later
        self._make_wal_room(writer)

    def _make_wal_room(self, db: sqlite3.Connection) -> None:
        """Grow the write-ahead log to :data:`WAL_ROOM_BYTES` once, through SQLite itself.

        A transaction writes a zero-filled value of that size with a cache too small to hold
        it, so SQLite spills its pages into the log, and is rolled back: the log keeps its
        length (the frames past the last commit are ignored, and overwritten by the next
        commits) and the database file gains nothing.  The log is synced once here, so the
        first scan's sync does not carry the room's megabyte.  Best effort: a disk too full
        for the room only leaves the syncs as they were.
        """
        if self._sync != "full":
            return
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            length = wal.stat().st_size
        except OSError:
            length = 0  # no log yet: SQLite makes it with the first write
        if length >= WAL_ROOM_BYTES:
            return
        try:
            disk = os.statvfs(self.path.parent)
            if disk.f_bavail * disk.f_frsize < WAL_ROOM_SPARE * WAL_ROOM_BYTES:
                return  # a disk this full needs the space for events more than a faster sync
        except OSError:
            return
        cache = db.execute("PRAGMA cache_size").fetchone()[0]
        page = db.execute("PRAGMA page_size").fetchone()[0]
        kept = 16  # pages the cache holds: never spilled, so written on top of the room
        try:
            db.execute(f"PRAGMA cache_size={kept}")
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('wal_room', zeroblob(?))",
                (WAL_ROOM_BYTES + 2 * kept * page,),
            )
        except sqlite3.Error as exc:
            log.info("outbox %s: no room made in its write-ahead log (%s)", self.path, exc)
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.execute(f"PRAGMA cache_size={int(cache)}")
        try:  # the spilled megabyte to disk now, not with the first scan's sync
            fd = os.open(wal, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.info("outbox %s: its write-ahead log's room not synced (%s)", self.path, exc)

    def _peek(self) -> None:
        """Read where numbering stands from a file that cannot be opened for writing.

        Only when no write-ahead log holds committed rows beside it: SQLite's read-only
        modes need to create the log's index, which a read-only filesystem refuses, and
        ``immutable`` reads the main file alone.  Otherwise the number stays unknown.
        """
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            if not self.path.is_file() or (wal.exists() and wal.stat().st_size > 0):
                return
            db = sqlite3.connect(self.path.resolve().as_uri() + "?immutable=1", uri=True)
            try:
                meta = _read_meta(db)
                self._count = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            log.warning("cannot read the outbox %s either: %s", self.path, exc)
            return
        self._adopt(int(meta.get("last_seq", "0")), meta)

    def _adopt(self, last_seq: int, meta: dict[str, str]) -> None:
        """Numbering continues after ``last_seq`` — or after what the held-events record says was handed out."""
        self._durable_seq = self._last_seq = last_seq
        overflow = _Overflow.from_json(meta["overflow"]) if "overflow" in meta else _Overflow()
        self.last_event_time = meta.get("last_event_time", "")
        held = self._record.read()
        if held is not None and not held.empty:
            self._record_used = True
        if held is not None and held.high > last_seq:
            exact = held.durable == last_seq  # else the file moved on after the record was written
            span = held.high - last_seq
            lost = min(held.unacked, span) if exact else span
            if exact and held.overflow:
                overflow = _Overflow.from_dict(held.overflow)
            self._last_seq = held.high
            log.error(
                "the previous run held events %d..%d in memory only (the disk had failed); "
                "at most %d of them never reached the console",
                last_seq + 1,
                held.high,
                lost,
            )
            data = {
                "boot": held.boot,
                "first_seq": last_seq + 1,
                "last_seq": held.high,
                "held": span,
                "lost": lost,
                "acknowledged": span - lost if exact else None,
                "by_type": held.by_type if exact else {},
            }
            self._note(OUTBOX_LOST, data, datetime.now(UTC), False)
        self._overflow = overflow
        self._meta_dirty = True
        if self._unnumbered:
            waiting, self._unnumbered = self._unnumbered, []
            log.warning("numbering %d event(s) taken before the outbox could be read", len(waiting))
            for item in waiting:
                self._number(item.type, item.data, item.time, item.clock_trusted)

    # -- producer side ---------------------------------------------------------------

    def submit(
        self, event_type: str, data: dict[str, Any], *, time: datetime, clock_trusted: bool
    ) -> Future[Event | None]:
        """Queue an event for the next group commit; the future resolves once it is taken.

        It resolves to the :class:`Event`, or to ``None`` if it was refused (outbox or
        memory journal full) and counted into the next overflow event instead, or held
        without a number because the outbox file could not be read.
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
        """Take one event: return it once committed and synced (or ``None``: see :meth:`submit`).

        While the outbox is :attr:`degraded` it returns once the event is held in memory
        (and its number recorded); :attr:`durable_seq` tells how far the file has it.
        :meth:`taken_ns` then says when that was.
        """
        future: Future[Event | None] = Future()
        if self._closed:
            raise OutboxClosed("outbox is closed")
        item = _Append(event_type, data, time.astimezone(UTC), clock_trusted, future)
        self._enqueue(item, wake_writer=False)
        with self._commit_lock:
            if not future.done():
                self._commit_pending()
        event = future.result()
        self._local.taken_ns = item.taken_ns
        return event

    def taken_ns(self) -> int:
        """When this thread's last :meth:`append` was taken (``time.monotonic_ns()``): its commit
        returned, or it was held.  The moment a scan is safe, before the outbox wakes the link
        and resolves the other callers of the same commit (the agent's ``on_taken`` hook)."""
        return int(getattr(self._local, "taken_ns", 0))

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after each group commit (the link uses it to wake its sender)."""
        self._listeners.append(callback)

    def add_state_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when :attr:`degraded` changes, from the writer's thread: it must not block."""
        self._state_listeners.append(callback)

    # -- consumer side ---------------------------------------------------------------

    def _held_after(self, after_seq: int, limit: int) -> list[Pending]:
        with self._journal_lock:
            visible = self._visible_seq
            if not self._journal or next(reversed(self._journal)) <= after_seq:
                return []
            rows = (Pending(seq, h.body) for seq, h in self._journal.items() if after_seq < seq <= visible)
            return list(islice(rows, limit))

    def pending(self, after_seq: int = 0, limit: int = 500) -> list[Pending]:
        """Events with ``seq > after_seq`` still owed to the console, oldest first (held ones included)."""
        held = self._held_after(after_seq, limit)  # first: one drained meanwhile is then in the file
        stored: list[Pending] = []
        if self._reader_db is not None:
            with self._reader_lock:
                stored = [
                    Pending(seq, body)
                    for seq, body in self._reader_db.execute(
                        "SELECT seq, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
                    ).fetchall()
                ]
        return _merge(stored, held, limit)

    def rows(self, seqs: Sequence[int]) -> list[Pending]:
        """The events among ``seqs`` still owed to the console, oldest first; acknowledged ones are absent."""
        with self._journal_lock:
            held = [
                Pending(seq, self._journal[seq].body)
                for seq in seqs
                if seq in self._journal and seq <= self._visible_seq
            ]
        found: list[Pending] = []
        if self._reader_db is not None:
            for start in range(0, len(seqs), 500):  # well under SQLite's limit on bound parameters
                chunk = list(seqs[start : start + 500])
                marks = ",".join("?" * len(chunk))
                with self._reader_lock:
                    found += [
                        Pending(seq, body)
                        for seq, body in self._reader_db.execute(
                            f"SELECT seq, body FROM outbox WHERE seq IN ({marks}) ORDER BY seq", chunk
                        ).fetchall()
                    ]
        return _merge(found, held, None)

    def first_pending_seq(self) -> int | None:
        held = self._held_after(0, 1)
        stored = None
        if self._reader_db is not None:
            with self._reader_lock:
                stored = self._reader_db.execute("SELECT MIN(seq) FROM outbox").fetchone()[0]
        candidates = [seq for seq in (stored, held[0].seq if held else None) if seq is not None]
        return min(candidates) if candidates else None

    def oldest_pending_time(self) -> datetime | None:
        """When the oldest event still owed to the console was taken (for health and metrics)."""
        times: list[datetime] = []
        if self._reader_db is not None:
            with self._reader_lock:
                row = self._reader_db.execute("SELECT body FROM outbox ORDER BY seq LIMIT 1").fetchone()
            if row is not None:
                times.append(datetime.fromisoformat(json.loads(row[0])["time"]))
        with self._journal_lock:
            first = next(iter(self._journal.values()), None)
            if first is not None:
                times.append(first.time)
            if self._unnumbered:
                times.append(self._unnumbered[0].time)
        return min(times) if times else None

    def ack(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Delete the acknowledged events; return how many went.  Blocks until durable (or held)."""
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
        if wake_writer and self._writers is not None:
            self._writers.kick(self)

    @property
    def backlog(self) -> int:
        """Events taken but not yet acknowledged by the console (held ones included)."""
        return self._count + len(self._journal) + len(self._unnumbered)

    @property
    def last_seq(self) -> int:
        """The last sequence number taken (held events included).

        Not one being committed right now: a link that starts again from here after a
        reconnect would otherwise skip the events of a commit still in flight.
        """
        return self._visible_seq

    @property
    def durable_seq(self) -> int | None:
        """The last sequence number the file has (``None`` while it could not be read)."""
        return self._durable_seq

    @property
    def held(self) -> int:
        """Events held in memory because the disk failed."""
        return len(self._journal) + len(self._unnumbered)

    @property
    def degraded(self) -> str | None:
        """Why the outbox cannot write its file (the disk's error), or ``None`` while it can."""
        return self._degraded

    @property
    def degraded_since(self) -> float | None:
        """Wall-clock time (epoch seconds) the current failure began."""
        return self._degraded_since if self._degraded is not None else None

    @property
    def held_recorded(self) -> bool:
        """False when the last record of held numbers reached no copy (see :mod:`edge.held`)."""
        return self._record_ok

    @property
    def dropped_pending(self) -> int:
        """Events refused since the last overflow event was written."""
        return self._overflow.dropped

    def close(self) -> None:
        """Commit everything already queued, then stop; later calls fail with OutboxClosed.

        One last attempt is made to write held events; what cannot be written stays in the
        held-events record, so the next start says so in an ``outbox.lost`` event.
        """
        if self._closed:
            return
        self._closed = True
        if self._writers is not None:
            self._writers.unregister(self)  # a pass running now finishes before the commit lock is ours
            if self._own_writers:
                self._writers.close()
        with self._commit_lock:
            self._commit_pending()  # an append that raced close() still gets its answer
            if self._journal or self._db_acks:
                self._commit([])
            if self.held:
                log.error(
                    "outbox closed with %d event(s) held in memory that the disk did not take (%s)",
                    self.held,
                    self._degraded,
                )
            self._db_closed = True
            for db in (self._reader_db, self._writer_db):
                if db is not None:
                    db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- committing ------------------------------------------------------------------

    def _pool_pass(self) -> float | None:
        """Commit what callers that must not block (``submit``, acks) left queued, and retry a
        failed disk when due; return when to run again (the next retry) or ``None``."""
        if self._closed:
            return None
        with self._commit_lock:
            if self._closed:
                return None
            self._commit_pending()
        if self._since_checkpoint >= CHECKPOINT_EVERY and self._degraded is None:
            quiet_at = self._taken_ns / 1e9 + CHECKPOINT_QUIET_S  # the last commit (none held: not degraded)
            if time.monotonic() < quiet_at and self._since_checkpoint < 2 * CHECKPOINT_EVERY:
                return quiet_at  # a moment without commits: then the checkpoint can copy it all
            self._checkpoint()
        return self._retry_at if self._degraded is not None else None

    def _checkpoint(self) -> None:
        """Copy the log into the file, PASSIVE: beside commits, holding neither the commit lock
        nor the link's reader (a connection of its own, for the moment it takes).

        SQLite starts the log over from its beginning (inside :data:`WAL_ROOM_BYTES`) only
        after a checkpoint that copied all of it, so the writer waits for
        :data:`CHECKPOINT_QUIET_S` without a commit first (a gate's scans are seconds apart;
        under a steady stream it waits at most another :data:`CHECKPOINT_EVERY` commits).
        One that a commit overtook copied only part, and the log would go on growing, so the
        next try comes after :data:`CHECKPOINT_RETRY_AFTER` commits.
        """
        self._since_checkpoint = 0
        commits = self.commits
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
            try:
                busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                db.close()
        except sqlite3.Error as exc:  # a failing disk: the next commits say so and hold events
            log.debug("outbox checkpoint failed: %s", exc)
            return
        if busy or copied < frames or self.commits != commits:
            self._since_checkpoint = max(self._since_checkpoint, CHECKPOINT_EVERY - CHECKPOINT_RETRY_AFTER)

    def _commit_pending(self) -> None:
        """Commit everything queued so far (and retry a failed disk when due); the caller holds the commit lock."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        if batch and self._db_closed:
            for item in batch:
                item.future.set_exception(OutboxClosed("outbox is closed"))
        elif batch or (self._degraded is not None and time.monotonic() >= self._retry_at):
            try:
                self._commit(batch)
            except Exception as exc:  # a bug must not leave a reader thread waiting for ever
                log.exception("outbox commit failed unexpectedly")
                self._acks_done = []
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)

    def _commit(self, batch: Sequence[_Append | _Ack]) -> None:
        appends = [item for item in batch if isinstance(item, _Append)]
        acks = [item for item in batch if isinstance(item, _Ack)]
        changed = bool(batch)
        for ack in acks:
            # An empty one is the supervisor's liveness probe (edge/supervision.py): it goes
            # through a transaction like any ack, so it is answered only when the file can be
            # written (a wedged disk or a lock held elsewhere stops the watchdog's pings), and
            # like any ack it commits without an fsync.
            self._db_acks.append(
                _DbAck(ack.ranges, ack.future, self._ack_held(ack.ranges) if ack.ranges else 0)
            )
        results: list[Event | Exception | None] = []
        for item in appends:
            try:
                results.append(self._hold(item))
            except Exception as exc:  # an event the envelope refuses (bad type, unserialisable data)
                log.error("outbox refused an event of type %r: %s", item.type[:64], exc)
                results.append(exc)
        if self._degraded is None or time.monotonic() >= self._retry_at or self._closed:
            changed |= self._flush()
            if self._degraded is None and self._overflow.dropped and self._total() < self.capacity:
                # Room came back after refusals: the loss becomes an event of its own.
                self._note(OUTBOX_OVERFLOW, self._overflow.to_dict(), datetime.now(UTC), self._trusted)
                self._overflow = _Overflow()
                self._meta_rows = True
                self._flush()
        if self._degraded is not None:
            self._acks_done += self._db_acks  # the file keeps their rows until a write succeeds
            self._save_record()
            self._taken_ns = time.monotonic_ns()  # held, and its number recorded
        with self._journal_lock:
            self._visible_seq = self._last_seq  # recorded (or written): the link may send them
        if any(result is None for result in results) and self._overflow.dropped:
            log.warning(
                "outbox refused events (full at %d, or disk failing with %d held): %d refused so far",
                self.capacity,
                self.held,
                self._overflow.dropped,
            )
        for pending in self._acks_done:
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(pending.removed)
                pending.future = None
        self._acks_done = []
        for item, result in zip(appends, results, strict=True):
            item.taken_ns = self._taken_ns
            if isinstance(result, Exception):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        if changed:
            for listener in self._listeners:
                try:
                    listener()
                except Exception:
                    log.exception("outbox listener failed")
        if self._state_changed:
            self._state_changed = False
            for listener in self._state_listeners:
                try:
                    listener()
                except Exception:
                    log.exception("outbox state listener failed")

    def _total(self) -> int:
        return self._count + len(self._journal) + len(self._unnumbered)

    def _hold(self, item: _Append) -> Event | None:
        """Number one appended event into the journal, or refuse and count it."""
        if self._overflow.dropped and self._total() < self.capacity and self._degraded is None:
            # Room came back: record the loss first, in its place in the sequence.
            self._note(OUTBOX_OVERFLOW, self._overflow.to_dict(), item.time, item.clock_trusted)
            self._overflow = _Overflow()
            self._meta_rows = True
        self._trusted = item.clock_trusted
        if self._total() >= self.capacity:
            return self._refuse(item, journal=False)
        if self._degraded is not None and self.held >= self.journal_capacity:
            return self._refuse(item, journal=True)
        return self._number(item.type, item.data, item.time, item.clock_trusted)

    def _refuse(self, item: _Append, *, journal: bool) -> None:
        self._overflow.count(item.type, item.time, journal=journal)
        self.refused += 1
        self.journal_dropped += journal
        self._meta_dirty = self._record_dirty = self._meta_rows = True
        return None

    def _number(self, event_type: str, data: dict[str, Any], at: datetime, trusted: bool) -> Event | None:
        if self._durable_seq is None:
            self._unnumbered.append(_Unnumbered(event_type, data, at, trusted))
            return None
        event = self._event(self._last_seq + 1, event_type, data, at, trusted)  # may refuse the data
        self._last_seq = event.seq
        with self._journal_lock:
            self._journal[event.seq] = _Held(event.seq, event.id, event.type, event.time, encode(event))
            self._held_types[event.type] = self._held_types.get(event.type, 0) + 1
        self.last_event_time = event.time.isoformat()
        self._meta_dirty = self._record_dirty = True
        return event

    def _note(self, event_type: str, data: dict[str, Any], at: datetime, trusted: bool) -> None:
        self._number(event_type, data, at, trusted)

    def _ack_held(self, ranges: Iterable[tuple[int, int]]) -> int:
        """Forget held events the console acknowledged: they need no place in the file."""
        removed = 0
        with self._journal_lock:
            if not self._journal:
                return 0
            for first, last in ranges:
                if last - first < len(self._journal):
                    seqs: Iterable[int] = range(first, last + 1)
                else:
                    seqs = [seq for seq in self._journal if first <= seq <= last]
                for seq in seqs:
                    held = self._journal.pop(seq, None)
                    if held is not None:
                        self._forget_type(held.type)
                        removed += 1
        self._record_dirty |= bool(removed)
        return removed

    def _forget_type(self, event_type: str) -> None:
        """One event of ``event_type`` left the journal; the caller holds the journal lock."""
        left = self._held_types[event_type] - 1
        if left:
            self._held_types[event_type] = left
        else:
            del self._held_types[event_type]

    def _flush(self) -> bool:
        """Write pending deletions and the journal to the file, in chunks, oldest first.

        Returns whether anything was written.  On the first refusal the rest stays held
        and the outbox is (or stays) degraded; when everything is written after a failure,
        it recovers.
        """
        wrote = False
        if self._writer_db is None:
            try:
                self._open()
            except (sqlite3.Error, OSError) as exc:
                self._fail(exc, "open")
                return False
        db = self._writer_db
        assert db is not None
        while True:
            with self._journal_lock:
                chunk = list(islice(self._journal.values(), DRAIN_CHUNK))
                rest = next(islice(self._journal, len(chunk), None), None)
            if not chunk and not self._db_acks and not self._meta_dirty:
                break
            upto = rest - 1 if rest is not None else self._last_seq
            deleted: list[int] = []
            # Deletions alone need no fsync: lost to a power cut, the rows come back and are
            # sent again, and the console drops them by id.  The next commit that adds rows
            # syncs the log, these frames with it.  So an ack holds the commit lock for
            # microseconds, not a sync, and a scan arriving meanwhile is not kept waiting.
            lazy = not chunk and bool(self._db_acks) and not self._meta_rows and not self._overflow.dropped
            lazy = lazy and self._sync == "full"
            try:
                if lazy:
                    db.execute("PRAGMA synchronous=NORMAL")
                db.execute("BEGIN IMMEDIATE")
                for pending in self._db_acks:
                    removed = 0
                    for first, last in pending.ranges:
                        removed += db.execute(
                            "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last)
                        ).rowcount
                    deleted.append(removed)
                if chunk:
                    db.executemany(
                        "INSERT INTO outbox (seq, id, type, body) VALUES (?, ?, ?, ?)",
                        [(h.seq, h.id, h.type, h.body) for h in chunk],
                    )
                # Rows added and none deleted: the newest row says what meta would.
                write_meta = self._meta_rows or bool(self._db_acks) or not chunk or rest is not None
                if write_meta:
                    db.executemany(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        [
                            ("last_seq", str(upto)),
                            ("overflow", self._overflow.to_json()),
                            ("last_event_time", self.last_event_time),
                        ],
                    )
                db.execute("COMMIT")
                if lazy:
                    db.execute("PRAGMA synchronous=FULL")
            except (sqlite3.Error, OSError) as exc:  # a full disk, a read-only card, an I/O error
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                self._fail(exc, "write")
                # Reopened at the next try: a connection that met an I/O error, or one opened
                # while the filesystem was read-only, may never write again.
                self._writer_db = None
                db.close()
                return wrote
            wrote = True
            self._taken_ns = time.monotonic_ns()
            self.commits += 1
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY and self._writers is not None:
                self._writers.kick(self)  # the writer checkpoints, off the scan's path
            with self._journal_lock:
                for held in chunk:
                    del self._journal[held.seq]
                    self._forget_type(held.type)
            self._count += len(chunk) - sum(deleted)
            self._durable_seq = upto
            for pending, removed in zip(self._db_acks, deleted, strict=True):
                pending.removed += removed
                self._acks_done.append(pending)
            self._db_acks = []
            self._meta_dirty = False
            self._meta_rows = self._meta_rows and not write_meta
            if not self._journal and self._degraded is not None:
                self._recover()  # notes outbox.recovered: the loop writes it next
        if self._record_used and not self._journal:
            self._record_used = False
            self._record_dirty = False
            self._record.write(HeldState(self.boot, self._last_seq, self._last_seq, 0))
        return wrote

    def _fail(self, exc: BaseException, what: str) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:200]
        self.commit_failures += 1
        self._failures_this_time += 1
        if self._degraded is None:
            self._degraded = reason
            self._degraded_since = time.time()
            self._retry_delay = self.retry_min_s
            self._state_changed = True
            log.error(
                "outbox cannot %s %s (%s): holding up to %d events in memory, sending them as they are, "
                "and retrying",
                what,
                self.path,
                reason,
                self.journal_capacity,
            )
            self._note(
                OUTBOX_DEGRADED, {"error": reason, "held": self.held}, datetime.now(UTC), self._trusted
            )
        else:
            self._retry_delay = min(self._retry_delay * 2, self.retry_max_s)
            now = time.monotonic()
            if now - self._warned_at >= RETRY_LOG_S:  # a long outage must not fill the log
                self._warned_at = now
                log.warning(
                    "outbox still cannot write (%s); %d held; retrying, at most every %.1f s",
                    reason,
                    self.held,
                    self._retry_delay,
                )
        self._retry_at = time.monotonic() + self._retry_delay
        self._record_dirty = True
        if self._writers is not None:  # the writer times the retries
            self._writers.kick(self)

    def _recover(self) -> None:
        degraded_s = round(time.time() - self._degraded_since, 3)
        log.warning("outbox writes again after %.1f s; the held events are in the file", degraded_s)
        self._degraded = None
        self._state_changed = True
        self._note(
            OUTBOX_RECOVERED,
            {"degraded_s": degraded_s, "failures": self._failures_this_time},
            datetime.now(UTC),
            self._trusted,
        )
        self._failures_this_time = 0

    def _save_record(self) -> None:
        """While events are held, write which numbers they have before the link may send them."""
        if not self._record_dirty or self._degraded is None or self._durable_seq is None:
            return
        with self._journal_lock:
            by_type = dict(self._held_types)
            unacked = len(self._journal)
        state = HeldState(
            boot=self.boot,
            durable=self._durable_seq,
            high=self._last_seq,
            unacked=unacked,
            by_type=by_type,
            overflow=self._overflow.to_dict() if self._overflow.dropped else None,
        )
        self._record_ok = bool(self._record.write(state))
        self._record_dirty = False
        self._record_used = True
        if not self._record_ok:
            log.error(
                "no copy of the held-events record could be written: a restart before the disk "
                "works again may number events %d..%d a second time",
                self._durable_seq + 1,
                self._last_seq,
            )

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


def _read_meta(db: sqlite3.Connection) -> dict[str, str]:
    """The ``meta`` rows, brought up to the newest row still in the file.

    Commits that only add events do not rewrite ``meta`` (see ``Outbox._meta_rows``);
    the newest row then carries the last number and the last event's time.
    """
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    row = db.execute("SELECT seq, body FROM outbox ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None or row[0] <= int(meta.get("last_seq", "0")):
        return meta
    meta["last_seq"] = str(row[0])
    try:
        newest = datetime.fromisoformat(json.loads(row[1])["time"])
    except (ValueError, KeyError, TypeError):
        return meta
    known = meta.get("last_event_time")
    if not known or datetime.fromisoformat(known) < newest:
        meta["last_event_time"] = newest.isoformat()
    return meta


def _merge(stored: list[Pending], held: list[Pending], limit: int | None) -> list[Pending]:
    """File rows and held events in one order; a seq in both (drained meanwhile) once."""
    if not held:
        return stored[:limit] if limit is not None else stored
    merged = {row.seq: row for row in stored}
    for row in held:
        merged.setdefault(row.seq, row)
    rows = [merged[seq] for seq in sorted(merged)]
    return rows[:limit] if limit is not None else rows


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
