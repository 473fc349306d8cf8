"""How far the push feed got: a durable position in the store's ingest order.

The position is a ``row_id`` of ``events`` — the order the console stored events in, not
the time the gates put on them (a gate that was offline sends yesterday's events today,
and they must still go up).  It moves only after the district acknowledged every record
up to it, and it is written in the console's own database, so a console killed at any
instant resends from the last acknowledged batch: the district may see a record twice
(same ``id``), never miss one.

A broker's acknowledgement is not the district's disk: mosquitto writes its messages to
its persistence file every ``autosave_interval`` (mosquitto.conf(5)), so one killed
right after a PUBACK comes back without what it acknowledged since its last save.  So
the cursor also keeps ``settled``: the position acknowledged at least ``replay_s`` ago,
which a broker saving at least that often holds for good.  Every new connection to the
district (a broker restart, a console restart) resumes from ``settled``; what is sent
twice carries the same ``id``.
"""

from __future__ import annotations

from console.db import Database, now_text
from console.district.schema import migrate

__all__ = ["Cursor"]


class Cursor:
    """One named position (``mqtt``, ``https``: one per feed, each at its own pace)."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        migrate(db)

    def load(self) -> tuple[int, int, int]:
        """``(position, settled, records sent in all)``; zeros for a feed that never sent anything."""
        rows = self.db.query(
            "SELECT position, settled, sent FROM district_cursor WHERE name = ?", (self.name,)
        )
        return (int(rows[0][0]), int(rows[0][1]), int(rows[0][2])) if rows else (0, 0, 0)

    def save(self, position: int, settled: int, sent: int) -> None:
        self.db.execute(
            "INSERT INTO district_cursor (name, position, settled, sent, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position, settled = excluded.settled,"
            " sent = excluded.sent, updated_at = excluded.updated_at",
            (self.name, position, min(settled, position), sent, now_text()),
        )

    def rewind(self, position: int = 0) -> None:
        """Send again from ``position`` (an operator's choice after the district lost data)."""
        self.save(position, position, self.load()[2])
