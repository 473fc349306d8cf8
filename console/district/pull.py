"""The pages the district pulls: events after a cursor, hourly flow after a key, limited to a token's sites.

The cursor of ``/api/v1/events`` is the same ``row_id`` the push feed keeps: a district
may pull what it missed from the feed, or use only the pull API.  A page is read by the
primary key from ``after`` (``events_site_row`` when the token is limited to sites), so
page 1,000 costs what page 1 costs.

On SQLite rows are numbered in commit order and a page ends at what is committed.  On
PostgreSQL an event may still commit below a ``row_id`` already committed
(console/district/reader.py); a stateless page cannot wait for it, so a page on
PostgreSQL ends before the events received in the last :data:`PG_SETTLE_S`, far longer
than an ingest commit takes (the web console's live follower makes the same bet, for 30 s).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from console.db import format_time
from console.district.records import SCHEMA_VERSION, Privacy, flow_record
from console.store import EVENT_COLUMNS, EventStore, FlowRow, stored_event

MAX_LIMIT = 5000
DEFAULT_LIMIT = 500
PG_SETTLE_S = 10.0


def events_page(
    store: EventStore,
    *,
    after: int,
    limit: int,
    sites: Collection[str] | None,
    privacy: Privacy,
    console: str,
) -> dict[str, Any]:
    where = ["row_id > ?"]
    params: list[Any] = [after]
    if sites is not None:
        if not sites:
            return _page([], after, False)
        where.append(f"site IN ({', '.join('?' * len(sites))})")
        params += sorted(sites)
    if store.dialect == "postgresql":
        where.append("received_at < ?")
        params.append(format_time(datetime.now(UTC) - timedelta(seconds=PG_SETTLE_S)))
    rows = store.db.query(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY row_id LIMIT ?",
        (*params, limit),
    )
    events = [stored_event(row) for row in rows]
    records = [privacy.record(event, console) for event in events]
    return _page(records, events[-1].row_id if events else after, len(events) == limit)


def _page(records: list[dict[str, Any]], next_after: int | str, more: bool) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "records": records, "next_after": next_after, "more": more}


def parse_flow_key(text: str) -> tuple[str, str, str] | None:
    """``hour/site/gate`` (the ``next_after`` of a flow page); None if malformed."""
    parts = text.split("/")
    if len(parts) != 3 or not all(parts) or len(text) > 300:
        return None
    return parts[0], parts[1], parts[2]


def flow_page(
    store: EventStore,
    *,
    start: datetime,
    end: datetime,
    after: tuple[str, str, str] | None,
    limit: int,
    sites: Collection[str] | None,
    console: str,
) -> dict[str, Any]:
    """Per-gate hourly flow whose hour lies in [``start``, ``end``), ordered by hour, site, gate."""
    where = ["gate <> '*'", "hour >= ?", "hour < ?"]
    params: list[Any] = [format_time(start)[:13] + ":00:00Z", format_time(end)]
    if sites is not None:
        if not sites:
            return _page([], "", False)
        where.append(f"site IN ({', '.join('?' * len(sites))})")
        params += sorted(sites)
    if after is not None:
        hour, site, gate = after
        where.append("(hour > ? OR (hour = ? AND (site > ? OR (site = ? AND gate > ?))))")
        params += [hour, hour, site, site, gate]
    rows = store.db.query(
        "SELECT site, gate, hour, entries, exits, denied, events FROM flow_hourly"
        f" WHERE {' AND '.join(where)} ORDER BY hour, site, gate LIMIT ?",
        (*params, limit),
    )
    records = [
        flow_record(FlowRow(site, gate, hour, int(en), int(ex), int(de)), console, int(n))
        for site, gate, hour, en, ex, de, n in rows
    ]
    last = f"{rows[-1][2]}/{rows[-1][0]}/{rows[-1][1]}" if rows else ("/".join(after) if after else "")
    return _page(records, last, len(rows) == limit)
