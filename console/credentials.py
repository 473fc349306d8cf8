"""The console's authoritative door-card list, and the snapshots and deltas it sends to gates.

Every change (one call of :meth:`CardRegistry.put`, :meth:`~CardRegistry.remove` or
:meth:`~CardRegistry.replace_all`) is one transaction and one new ``list_version``; the
list hash is recomputed inside it, so the recorded hash always describes the committed
list.  Each card row remembers the version that last changed it, and each removal leaves
a tombstone with its version, so a delta from any version a gate may hold is a range
query.  Tombstones may be pruned (:meth:`CardRegistry.prune`); a gate older than the
pruned horizon gets a snapshot instead, which is always correct, only bigger.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from protocol.credentials import (
    EMPTY_LIST_HASH,
    CardEntry,
    encode_delta_lines,
    encode_snapshot_lines,
    entry_from_row,
    removal_line,
)
from protocol.messages import MAX_MESSAGE_BYTES

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS cards (
    credential TEXT PRIMARY KEY,
    line BLOB NOT NULL,
    changed INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cards_changed ON cards (changed);
CREATE TABLE IF NOT EXISTS removed (credential TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS removed_version ON removed (version);
CREATE TABLE IF NOT EXISTS list_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    hash TEXT NOT NULL,
    count INTEGER NOT NULL,
    delta_floor INTEGER NOT NULL
);
INSERT OR IGNORE INTO list_meta VALUES (1, 0, '"""
    + EMPTY_LIST_HASH
    + "', 0, 0);"
)


@dataclass(frozen=True, slots=True)
class RegistryState:
    version: int
    hash: str
    count: int
    delta_floor: int
    """Deltas can be built from any base version >= this; older gates get a snapshot."""


class CardRegistry:
    """The site's card list in SQLite at ``path``; safe to share between threads."""

    def __init__(self, path: str | Path, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.path = Path(path)
        self.max_message_bytes = max_message_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CardRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> RegistryState:
        with self._lock:
            return RegistryState(
                *self._db.execute("SELECT version, hash, count, delta_floor FROM list_meta").fetchone()
            )

    @property
    def version(self) -> int:
        return self.state.version

    def get(self, credential: str) -> CardEntry | None:
        with self._lock:
            row = self._db.execute("SELECT line FROM cards WHERE credential = ?", (credential,)).fetchone()
        return None if row is None else entry_from_row(json.loads(row[0]))

    def search(self, text: str = "", limit: int = 100, offset: int = 0) -> list[CardEntry]:
        """Cards whose credential starts with ``text`` or whose holder or unit contains it, by credential.

        SQL over the registry's own table, so the cards page reads a page of rows rather
        than decoding the whole snapshot the gates receive; the prefix match on the
        credential uses the primary key, the holder/unit match (ASCII letters in any
        case) scans the lines, which for 100,000 cards is tens of milliseconds.
        """
        where, params = _card_filter(text)
        with self._lock:
            rows = self._db.execute(
                f"SELECT line FROM cards{where} ORDER BY credential LIMIT ? OFFSET ?",
                (*params, max(0, limit), max(0, offset)),
            ).fetchall()
        return [entry_from_row(json.loads(line)) for (line,) in rows]

    def count(self, text: str = "") -> int:
        """How many cards :meth:`search` would find for ``text`` in all (every card when empty)."""
        where, params = _card_filter(text)
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM cards{where}", params).fetchone()[0])

    # -- changes -------------------------------------------------------------------------------

    def put(self, entries: Iterable[CardEntry]) -> int:
        """Add or replace cards; returns the new version (unchanged if every card was already so)."""
        lines = {e.credential: e.line() for e in entries}
        return self._change(lines, set(), replace=False)

    def remove(self, credentials: Iterable[str]) -> int:
        """Remove cards (unknown credentials are ignored); returns the new version."""
        return self._change({}, set(credentials), replace=False)

    def replace_all(self, entries: Iterable[CardEntry]) -> int:
        """Make the list exactly ``entries`` (an import from the site's card system)."""
        lines = {e.credential: e.line() for e in entries}
        return self._change(lines, set(), replace=True)

    def _change(self, lines: dict[str, bytes], removals: set[str], *, replace: bool) -> int:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                version = db.execute("SELECT version FROM list_meta").fetchone()[0]
                new = version + 1
                if replace:
                    removals = {c for (c,) in db.execute("SELECT credential FROM cards")} - lines.keys()
                old = dict(
                    db.execute(
                        "SELECT credential, line FROM cards WHERE credential IN (SELECT value FROM json_each(?))",
                        (_json_list(list(lines) + list(removals)),),
                    ).fetchall()
                )
                upserts = [(c, line, new) for c, line in lines.items() if old.get(c) != line]
                gone = [(c, new) for c in removals if c in old]
                if not upserts and not gone:
                    db.execute("ROLLBACK")
                    return version
                db.executemany(
                    "INSERT OR REPLACE INTO cards (credential, line, changed) VALUES (?, ?, ?)", upserts
                )
                db.executemany("DELETE FROM cards WHERE credential = ?", [(c,) for c, _ in gone])
                db.executemany("DELETE FROM removed WHERE credential = ?", [(c,) for c, _, _ in upserts])
                db.executemany("INSERT OR REPLACE INTO removed (credential, version) VALUES (?, ?)", gone)
                digest = hashlib.sha256()
                count = 0
                for (line,) in db.execute("SELECT line FROM cards ORDER BY credential"):
                    digest.update(line)
                    count += 1
                db.execute(
                    "UPDATE list_meta SET version = ?, hash = ?, count = ?", (new, digest.hexdigest(), count)
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return new

    def prune(self, keep_from_version: int) -> int:
        """Forget tombstones older than ``keep_from_version``; gates below it will get snapshots."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute("DELETE FROM removed WHERE version <= ?", (keep_from_version,))
                db.execute(
                    "UPDATE list_meta SET delta_floor = max(delta_floor, ?)",
                    (min(keep_from_version, db.execute("SELECT version FROM list_meta").fetchone()[0]),),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return cur.rowcount

    # -- what gates receive -----------------------------------------------------------------

    def snapshot(self) -> list[bytes]:
        """Every chunk of a snapshot of the current list, read in one consistent transaction."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                version = db.execute("SELECT version FROM list_meta").fetchone()[0]
                lines = [line for (line,) in db.execute("SELECT line FROM cards ORDER BY credential")]
            finally:
                db.execute("COMMIT")
        return encode_snapshot_lines(version, lines, max_message_bytes=self.max_message_bytes)

    def delta(self, base_version: int) -> list[bytes] | None:
        """Chunks taking a gate from ``base_version`` to now; ``None`` if only a snapshot can.

        ``[]`` when the gate is current.  A base above the current version (a registry
        restored from an old backup) or below the pruned horizon gets ``None``.
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                version, digest, count, floor = db.execute(
                    "SELECT version, hash, count, delta_floor FROM list_meta"
                ).fetchone()
                if base_version == version:
                    return []
                if base_version > version or base_version < floor:
                    return None
                changes = db.execute(
                    "SELECT credential, line FROM cards WHERE changed > ?"
                    " UNION ALL SELECT credential, NULL FROM removed WHERE version > ? ORDER BY 1",
                    (base_version, base_version),
                ).fetchall()
            finally:
                db.execute("COMMIT")
        lines = [line if line is not None else removal_line(cred) for cred, line in changes]
        return encode_delta_lines(
            base_version,
            version,
            lines,
            count=count,
            result_hash=digest,
            max_message_bytes=self.max_message_bytes,
        )

    def update_for(self, gate_version: int | None, *, max_delta_fraction: float = 0.5) -> list[bytes]:
        """What to send a gate that reported ``gate_version`` (``None``: unknown, or it asked to resync).

        A delta when one exists and is not much larger than worth it, otherwise a snapshot;
        ``[]`` when the gate is current.
        """
        if gate_version is not None:
            chunks = self.delta(gate_version)
            if chunks is not None:
                snapshot_guess = max(1, self.state.count) * max_delta_fraction
                if len(chunks) <= 1 or self._changes_since(gate_version) <= snapshot_guess:
                    return chunks
        return self.snapshot()

    def _changes_since(self, base_version: int) -> int:
        with self._lock:
            (a,) = self._db.execute(
                "SELECT count(*) FROM cards WHERE changed > ?", (base_version,)
            ).fetchone()
            (b,) = self._db.execute(
                "SELECT count(*) FROM removed WHERE version > ?", (base_version,)
            ).fetchone()
        return a + b


def _json_list(values: list[str]) -> str:
    return json.dumps(values)


def _card_filter(text: str) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause of a card search: credential prefix, or holder/unit substring.

    ``line`` is a BLOB (the canonical bytes the list hash covers); it is cast to text
    because SQLite 3.45+ would read a BLOB given to ``json_extract`` as JSONB.
    """
    text = text.strip()
    if not text:
        return "", ()
    like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    prefix = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return (
        " WHERE credential LIKE ? ESCAPE '\\'"
        " OR json_extract(CAST(line AS TEXT), '$[1]') LIKE ? ESCAPE '\\'"
        " OR json_extract(CAST(line AS TEXT), '$[2]') LIKE ? ESCAPE '\\'",
        (prefix, like, like),
    )
