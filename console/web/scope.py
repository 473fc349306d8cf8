"""Reads for a user limited to some sites: the same answers as for everyone, minus the other sites.

An operator of one compound sees that compound alone (console/users.py).  Every read
here takes ``sites`` — the user's :attr:`~console.users.User.site_limit`, None for
every site — and returns what the unrestricted read returns, filtered, without reading
the other sites' rows where the store can avoid it:

- events: one :meth:`~console.store.EventStore.search` per site, merged in the store's
  own order (event time, then ``row_id``, newest first); the ``before_row_id`` keyset
  cursor means the same thing in each, so paging stays exact and index-served;
- hourly flow: one :meth:`~console.store.EventStore.flow` per site;
- alarms: :meth:`~console.alarms.AlarmBook.list` read page by page and filtered (the open
  alarms are few; the full history is read at most :data:`MAX_ALARM_PAGES` pages deep),
  and the open count by one ``COUNT`` over the sites.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from console.web import queries

if TYPE_CHECKING:
    from console.alarms import Alarm
    from console.store import EventStore, FlowRow, StoredEvent

Sites = frozenset[str] | None
ALARM_PAGE = 1000
MAX_ALARM_PAGES = 20


def visible(sites: Sites, site: str) -> bool:
    return sites is None or site in sites


def gates(store: EventStore, sites: Sites) -> list[tuple[str, str]]:
    return [(site, gate) for site, gate in store.gates() if visible(sites, site)]


def _order(event: StoredEvent) -> tuple[str, int]:
    return (str(event.time), event.row_id)


def search(
    store: EventStore,
    flt: queries.EventFilter,
    sites: Sites,
    *,
    before_row_id: int | None = None,
    limit: int = 100,
) -> list[StoredEvent]:
    """Like :func:`console.web.queries.search`, for ``sites`` only.

    A filter naming a site outside ``sites`` finds nothing (the page refuses it before).
    """
    if sites is None or flt.site:
        if flt.site and not visible(sites, flt.site):
            return []
        return queries.search(store, flt, before_row_id=before_row_id, limit=limit)
    pages = [
        queries.search(store, replace(flt, site=site), before_row_id=before_row_id, limit=limit)
        for site in sorted(sites)
    ]
    merged = heapq.merge(*pages, key=_order, reverse=True)
    return [event for _, event in zip(range(limit), merged, strict=False)]


def iter_events(
    store: EventStore, flt: queries.EventFilter, sites: Sites, *, chunk: int = queries.EXPORT_CHUNK
) -> Iterator[StoredEvent]:
    """Every matching event of ``sites``, newest first, ``chunk`` at a time (the exports)."""
    before: int | None = None
    while True:
        page = search(store, flt, sites, before_row_id=before, limit=chunk)
        yield from page
        if len(page) < chunk:
            return
        before = page[-1].row_id


def flow(
    store: EventStore,
    site: str | None,
    gate: str | None,
    start: datetime,
    end: datetime,
    sites: Sites,
    *,
    exclude_flagged: bool = False,
) -> list[FlowRow]:
    """Hourly rows of ``store.flow``, for ``sites`` only, in its order (hour, site, gate)."""
    if site is not None:
        if not visible(sites, site):
            return []
        return store.flow(site, gate, start, end, exclude_flagged=exclude_flagged)
    if sites is None:
        return store.flow(None, gate, start, end, exclude_flagged=exclude_flagged)
    rows = [
        row
        for name in sorted(sites)
        for row in store.flow(name, gate, start, end, exclude_flagged=exclude_flagged)
    ]
    return sorted(rows, key=lambda r: (r.hour, r.site, r.gate))


def alarms(ctx: Any, sites: Sites, *, open_only: bool, limit: int = 200) -> list[Alarm]:
    """Newest first, as :meth:`AlarmBook.list`, of ``sites`` only."""
    if sites is None:
        return ctx.alarms.list(open_only=open_only, limit=limit)
    found: list[Alarm] = []
    before: int | None = None
    for _ in range(MAX_ALARM_PAGES):
        page = ctx.alarms.list(open_only=open_only, before_row_id=before, limit=ALARM_PAGE)
        found += [alarm for alarm in page if alarm.site in sites]
        if len(found) >= limit or len(page) < ALARM_PAGE:
            break
        before = page[-1].row_id
    return found[:limit]


def open_alarm_count(ctx: Any, sites: Sites) -> int:
    """The navigation badge's number: open alarms of ``sites``."""
    if sites is None:
        return int(ctx.alarms.open_count())
    if not sites:
        return 0
    marks = ", ".join("?" for _ in sites)
    rows = ctx.db.query(
        f"SELECT COUNT(*) FROM alarms WHERE acked_at IS NULL AND site IN ({marks})", tuple(sorted(sites))
    )
    return int(rows[0][0])
