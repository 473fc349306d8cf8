"""Plate crops of vehicle events: stored beside the event, not inside its JSON.

A gate's ``access.scan`` for a plate carries the crop the lane saw as base64 JPEG in
``data.crop`` (at most 12 KB, edge side).  Kept in the event's JSON it would be read by
every search, export and page of the events list; so the store takes it out *in the same
transaction* as the event (:meth:`console.store.EventStore.commit`) into ``event_crops``,
keyed by the event id, and leaves a reference in the event: ``crop_ref`` (the SHA-256 of
the JPEG) and ``crop_bytes``.  One transaction: an event is never stored without its crop
nor a crop counted twice, whatever the broker redelivers.

Retention is the events' (``[store] retain_days``, console/retention.py): a crop goes with
the events of its day, as holder photos go with their cards.  A crop that is not a JPEG
or too large is not stored; the event says why in ``crop_rejected`` and is kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from typing import Any

from console.db import Database, Migration, format_time
from protocol import Event

COMPONENT = "vehicle_crops"
MAX_CROP_BYTES = 16 * 1024
"""The gate sends at most 12 KB; a little room for a vendor camera's own crop."""
JPEG_MAGIC = b"\xff\xd8\xff"

MIGRATIONS = (
    Migration(
        1,
        "plate crops of vehicle events",
        (
            """CREATE TABLE event_crops (
                row_id   {pk},
                event_id TEXT NOT NULL UNIQUE,
                time     TEXT NOT NULL,
                jpeg     {blob} NOT NULL
            )""",
            "CREATE INDEX event_crops_time ON event_crops (time)",
        ),
    ),
)

_INSERT = "INSERT INTO event_crops (event_id, time, jpeg) VALUES (?, ?, ?) ON CONFLICT (event_id) DO NOTHING"


def migrate(db: Database) -> None:
    db.migrate(COMPONENT, MIGRATIONS)


def _decode(value: object) -> tuple[bytes | None, str | None]:
    """The crop's JPEG bytes, or why it is not kept."""
    if not isinstance(value, str):
        return None, "not_base64"
    try:
        jpeg = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None, "not_base64"
    if len(jpeg) > MAX_CROP_BYTES:
        return None, "too_large"
    if not jpeg.startswith(JPEG_MAGIC):
        return None, "not_jpeg"
    return jpeg, None


def take_crops(events: Sequence[Event]) -> tuple[list[Event], list[tuple[str, str, bytes]]]:
    """``events`` with every ``data.crop`` replaced by its reference, and the crop rows to store."""
    out: list[Event] = []
    rows: list[tuple[str, str, bytes]] = []
    for event in events:
        data = event.data
        if "crop" not in data:
            out.append(event)
            continue
        rest: dict[str, Any] = {key: value for key, value in data.items() if key != "crop"}
        if data["crop"] is not None:
            jpeg, problem = _decode(data["crop"])
            if jpeg is None:
                rest["crop_rejected"] = problem
            else:
                rest["crop_ref"] = hashlib.sha256(jpeg).hexdigest()
                rest["crop_bytes"] = len(jpeg)
                rows.append((event.id, format_time(event.time), jpeg))
        out.append(event.model_copy(update={"data": rest}))
    return out, rows


def store_crops(db: Database, rows: Sequence[tuple[str, str, bytes]]) -> None:
    """Insert crop rows (inside the caller's transaction); a redelivered event's crop is ignored."""
    if rows:
        db.executemany(_INSERT, rows)


def crop_of(db: Database, event_id: str) -> bytes | None:
    found = db.query("SELECT jpeg FROM event_crops WHERE event_id = ?", (event_id,))
    return bytes(found[0][0]) if found else None
