"""The gate's checks on a command from the console, and its memory of the ids it has taken.

:func:`protocol.commands.open_command` proves a command was signed by a command key the
site root certified, for this gate; what no signature can prove is that the message is
not a copy.  A captured ``unlock`` replayed a minute later would carry a perfect
signature, so the gate remembers every id it accepted and refuses it a second time —
across restarts too, since the agent restarts after a power cut and a copy replayed
right then would otherwise be new again.

The memory is a small SQLite file beside the outbox (``<outbox>.commands.db``), written
with ``synchronous=FULL`` *before* the command acts: a power cut after the door opened
cannot lose the id.  It stays small on its own: a command lives at most
:data:`~protocol.commands.MAX_COMMAND_LIFETIME`, a gate refuses it once expired, and
an id is forgotten once its command has been expired for that long again (the margin
covers a clock stepped back by up to that much).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from edge.clock import ClockReading
from protocol.commands import (
    MAX_COMMAND_LIFETIME,
    CommandError,
    CommandRejectReason,
    check_fresh,
    open_command,
)
from protocol.messages import Command
from protocol.passes import TrustStore

log = logging.getLogger("gatepost.edge.commands")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, expires REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
"""
MAX_REMEMBERED: Final = 100_000
"""More live ids than this means something is flooding the gate with signed commands; it
then refuses new ones (``replay_memory``) rather than forget ids that are still live."""
PRUNE_EVERY_S: Final = 60.0


class ReplayMemory:
    """Command ids this gate has accepted, until they cannot matter any more."""

    def __init__(self, path: Path, *, limit: int = MAX_REMEMBERED) -> None:
        self.path = Path(path)
        self.limit = limit
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._pruned_at = 0.0
        self._count = int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        return self._count

    def seen(self, command_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM seen WHERE id = ?", (command_id,)).fetchone() is not None

    def record(self, command_id: str, expires_at: datetime, now: datetime) -> bool:
        """Remember ``command_id`` durably; false if it was already there (a replay)."""
        with self._lock:
            if now.timestamp() - self._pruned_at >= PRUNE_EVERY_S or self._count >= self.limit:
                self._prune(now)
            if self._count >= self.limit:
                raise CommandError(
                    CommandRejectReason.REPLAY_MEMORY,
                    f"{self._count} live command ids remembered; refusing more",
                )
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO seen (id, expires) VALUES (?, ?)", (command_id, expires_at.timestamp())
            )
            if cursor.rowcount != 1:
                return False
            self._count += 1
            return True

    def _prune(self, now: datetime) -> None:
        horizon = (now - MAX_COMMAND_LIFETIME).timestamp()
        cursor = self._db.execute("DELETE FROM seen WHERE expires < ?", (horizon,))
        self._count = max(0, self._count - max(0, cursor.rowcount))
        self._pruned_at = now.timestamp()


def _system_clock() -> ClockReading:
    return ClockReading(datetime.now(UTC), True)


class CommandVerifier:
    """Everything a gate checks before a command reaches its handler.

    ``keys`` is the gate's :class:`~protocol.passes.TrustStore`, read at each command so a
    renewed bundle takes effect at once.  Without one (no ``[passes]``), or before its
    first bundle arrives, every command is refused as ``no_trust`` — an unprovisioned gate,
    not an attack.  ``clock`` is the gate's own clock.
    """

    def __init__(
        self,
        keys: TrustStore | None,
        memory: ReplayMemory,
        *,
        site: str,
        gate: str,
        clock: Callable[[], ClockReading] = _system_clock,
    ) -> None:
        self.keys = keys
        self.memory = memory
        self.site = site
        self.gate = gate
        self.clock = clock

    def verify(self, payload: bytes, *, redelivered: bool = False) -> Command:
        """The command to act on, or :class:`CommandError` saying why not.

        ``redelivered`` is MQTT's ``DUP`` flag: the broker sending again what the gate may
        already have taken before a crash.  An id seen before is then a ``duplicate``
        (refused, but nobody's attack) rather than a ``replayed`` copy.
        """
        reading = self.clock()
        keys = self.keys if self.keys is not None and self.keys.bundle is not None else None
        body = open_command(
            payload,
            keys,
            site=self.site,
            gate=self.gate,
            now=reading.wall,
            clock_trusted=reading.trusted,
        )
        command = body.command()
        # The id is written (fsync'd) before anything else may let the command act, and
        # before the expiry check, so a copy is called a replay even once it has expired.
        try:
            fresh = self.memory.record(body.id, body.expires_at, reading.wall)
        except CommandError as exc:
            raise CommandError(exc.reason, exc.detail, command=command) from None
        except sqlite3.Error as exc:
            log.error("could not record command %s: %s", body.id, exc)
            raise CommandError(
                CommandRejectReason.REPLAY_MEMORY, f"replay memory: {exc}", command=command
            ) from None
        if not fresh:
            reason = CommandRejectReason.DUPLICATE if redelivered else CommandRejectReason.REPLAYED
            raise CommandError(reason, f"command {body.id} was already received here", command=command)
        check_fresh(body, now=reading.wall, clock_trusted=reading.trusted)
        return command
