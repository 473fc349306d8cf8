"""The gate's copy of the site's door-card list: applied whole or not at all, kept across restarts.

A gate must decide on a card while the console is unreachable, so the list lives in a
local SQLite file.  Every update (a snapshot or a delta, see :mod:`protocol.credentials`)
is applied inside one transaction, and the resulting list's SHA-256 is checked *inside*
that transaction before ``COMMIT``: a wrong base, a lost chunk or a damaged store rolls
back and leaves the previous version in place.  A power cut or ``SIGKILL`` mid-apply
leaves SQLite's journal to roll back, so the gate restarts with the old list or the new
one, never a mixture.  The version never goes backwards.

Each card is stored as its canonical line (the bytes the list hash is taken over) under
its credential as primary key of a ``WITHOUT ROWID`` table: a lookup is one B-tree
probe, and re-hashing the whole list after a delta is one ordered scan with no
re-encoding.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

from protocol.credentials import (
    EMPTY_LIST_HASH,
    Assembler,
    CardEntry,
    Chunk,
    CredentialListError,
    CredentialRejectReason,
    ListUpdate,
    UpdateKind,
    assemble,
    entry_from_row,
)
from protocol.passes import Decision, Flag, Reason, UntrustedClockPolicy
from protocol.passes.format import DailyWindow

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS cards (credential TEXT PRIMARY KEY, line BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS list_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    hash TEXT NOT NULL,
    count INTEGER NOT NULL
);
INSERT OR IGNORE INTO list_meta (id, version, hash, count) VALUES (1, 0, '"""
    + EMPTY_LIST_HASH
    + "', 0);"
)


@dataclass(frozen=True, slots=True)
class ListState:
    """Which list the gate holds: version 0 with the empty hash until the first snapshot."""

    version: int
    hash: str
    count: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply did: ``changed`` is false when the update was already held."""

    state: ListState
    changed: bool


def _refuse(reason: CredentialRejectReason, detail: str) -> CredentialListError:
    return CredentialListError(reason, detail)


class CardStore:
    """The gate's card list in SQLite at ``path``; one instance per process, one thread at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._assembler = Assembler()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CardStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> ListState:
        version, digest, count = self._db.execute("SELECT version, hash, count FROM list_meta").fetchone()
        return ListState(version, digest, count)

    @property
    def version(self) -> int:
        return self.state.version

    def lookup(self, credential: str) -> CardEntry | None:
        """The card with this credential, or ``None``: one primary-key probe."""
        row = self._db.execute("SELECT line FROM cards WHERE credential = ?", (credential,)).fetchone()
        if row is None:
            return None
        return entry_from_row(json.loads(row[0]))

    def __len__(self) -> int:
        return self.state.count

    def credentials(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT credential FROM cards ORDER BY credential")]

    def credentials_with_prefix(self, prefix: str) -> list[str]:
        """Credentials starting with ``prefix`` (e.g. ``plate:``): a range scan of the primary key.

        The vehicle lane compares an unregistered plate with every registered one (a near
        miss, edge/plate_decisions.py); the range keeps that from reading the site's door cards.
        """
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._db.execute(
            "SELECT credential FROM cards WHERE credential >= ? AND credential < ? ORDER BY credential",
            (prefix, upper),
        )
        return [r[0] for r in rows]

    def stored_hash(self) -> str:
        """SHA-256 over the stored lines, recomputed (not the recorded value): detects a damaged store."""
        return self._scan_hash()

    def _scan_hash(self) -> str:
        digest = hashlib.sha256()
        for (line,) in self._db.execute("SELECT line FROM cards ORDER BY credential"):
            digest.update(line)
        return digest.hexdigest()

    # -- applying updates ------------------------------------------------------------------

    def offer(self, payload: bytes | Chunk) -> ApplyResult | None:
        """Feed one chunk as it arrives from MQTT; apply the update once it is complete.

        Returns ``None`` while chunks are missing.  Raises :class:`CredentialListError`
        for a damaged chunk or an update that must not be applied (the caller publishes
        the reason; on ``wrong_base`` or ``hash_mismatch`` it asks for a snapshot).
        """
        update = self._assembler.add(payload)
        return None if update is None else self.apply(update)

    def apply_snapshot_chunks(self, payloads: Iterable[bytes | Chunk]) -> ApplyResult:
        """Apply a snapshot given all its chunks (any order)."""
        update = assemble(payloads)
        if update.kind is not UpdateKind.SNAPSHOT:
            raise _refuse(CredentialRejectReason.CHUNK_MISMATCH, "expected a snapshot, got a delta")
        return self.apply(update)

    def apply_delta(self, payloads: Iterable[bytes | Chunk]) -> ApplyResult:
        """Apply a delta given all its chunks (any order)."""
        update = assemble(payloads)
        if update.kind is not UpdateKind.DELTA:
            raise _refuse(CredentialRejectReason.CHUNK_MISMATCH, "expected a delta, got a snapshot")
        return self.apply(update)

    def apply(self, update: ListUpdate) -> ApplyResult:
        """Apply a complete update atomically, or raise and leave the store as it was."""
        current = self.state
        if update.list_version == current.version and update.list_hash == current.hash:
            return ApplyResult(current, False)
        if update.list_version <= current.version:
            raise _refuse(
                CredentialRejectReason.OLDER, f"version {update.list_version}, gate holds {current.version}"
            )
        if update.kind is UpdateKind.SNAPSHOT:
            return self._apply_snapshot(update)
        return self._apply_delta(update, current)

    def _apply_snapshot(self, update: ListUpdate) -> ApplyResult:
        rows = update.snapshot_rows()  # parsed and hash-checked before the store is touched
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM cards")
            db.executemany("INSERT INTO cards (credential, line) VALUES (?, ?)", rows)
            db.execute(
                "UPDATE list_meta SET version = ?, hash = ?, count = ?",
                (update.list_version, update.list_hash, update.count),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ApplyResult(ListState(update.list_version, update.list_hash, update.count), True)

    def _apply_delta(self, update: ListUpdate, current: ListState) -> ApplyResult:
        if update.base_version != current.version:
            raise _refuse(
                CredentialRejectReason.WRONG_BASE,
                f"delta {update.base_version}->{update.list_version}, gate holds {current.version}",
            )
        changes = update.delta_changes()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            removed = [(c.credential,) for c in changes if c.entry is None]
            upserts = [(c.credential, c.line) for c in changes if c.entry is not None]
            db.executemany("DELETE FROM cards WHERE credential = ?", removed)
            db.executemany("INSERT OR REPLACE INTO cards (credential, line) VALUES (?, ?)", upserts)
            (count,) = db.execute("SELECT count(*) FROM cards").fetchone()
            if count != update.count:
                raise _refuse(
                    CredentialRejectReason.HASH_MISMATCH, f"{count} cards, announced {update.count}"
                )
            if self._scan_hash() != update.list_hash:
                raise _refuse(
                    CredentialRejectReason.HASH_MISMATCH, "list after delta does not match its hash"
                )
            db.execute(
                "UPDATE list_meta SET version = ?, hash = ?, count = ?",
                (update.list_version, update.list_hash, update.count),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ApplyResult(ListState(update.list_version, update.list_hash, update.count), True)


def check(
    entry: CardEntry,
    now: datetime,
    clock_trusted: bool,
    timezone: tzinfo,
    *,
    zone: int | None = None,
    untrusted_clock: UntrustedClockPolicy = UntrustedClockPolicy.GRANT_AND_FLAG,
    time_bounded: bool = False,
) -> Decision:
    """Grant or deny a known card at ``now``, with the same reasons and clock rule as a pass.

    As in :func:`protocol.passes.decide`, an untrusted clock that is an estimate
    (``time_bounded``: the gate's last trusted reading plus monotonic time) is used as
    the time; one that is only a lower bound proves ``expired``, which always denies,
    while ``not_yet_valid`` and ``outside_time_window`` are only possible and follow
    ``untrusted_clock``.  ``zone`` (this gate's zone index) is checked against the card's
    bitmask when given.
    """
    flags = frozenset() if clock_trusted else frozenset({Flag.CLOCK_UNTRUSTED})
    lenient = (
        not clock_trusted and not time_bounded and untrusted_clock is UntrustedClockPolicy.GRANT_AND_FLAG
    )

    def deny(reason: Reason, detail: str = "") -> Decision:
        return Decision(False, reason, None, flags, detail)

    if entry.valid_until is not None and now >= entry.valid_until:
        return deny(Reason.EXPIRED, f"until {entry.valid_until:%Y-%m-%dT%H:%MZ}")
    if entry.valid_from is not None and now < entry.valid_from and not lenient:
        return deny(Reason.NOT_YET_VALID, f"from {entry.valid_from:%Y-%m-%dT%H:%MZ}")
    if entry.window_start is not None and entry.window_end is not None and not lenient:
        local = now.astimezone(timezone)
        if not DailyWindow(entry.window_start, entry.window_end).contains(local.hour * 60 + local.minute):
            return deny(Reason.OUTSIDE_TIME_WINDOW, f"{local:%H:%M} local")
    if zone is not None and not (entry.zones >> zone) & 1:
        return deny(Reason.WRONG_ZONE, f"gate zone {zone}")
    return Decision(True, Reason.GRANTED, None, flags)
