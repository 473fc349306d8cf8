"""The gap watch: holes in a gate's sequence numbers that stay open, raised as one alarm per gate.

Each gate numbers its events 1, 2, 3… and keeps every one in its outbox until the
console's Ack names it; an event whose delivery was lost is resent after its own deadline
(edge/link.py, ``resend_after_s``, 15 s by default, doubling per event up to 300 s).  So
a hole in what the console stored is normal for a moment — the event after it simply
came first — and filled within a resend or two.  A hole that stays open longer means the
event is stuck somewhere: in a dead ``$share`` member's session, in a broker that dropped
it, behind a console that refuses it.  The watch raises ``seq.gap`` then, naming the gate
and the ranges, and clears it when they arrive.

It follows the store by ``row_id`` like the web console's watcher, reading only
``(row_id, site, gate, seq)`` of what was committed since its last pass — never a
whole gate's history — off the ingest path: a thread of ``console run``, not a step of
each commit.  Per gate it keeps how far it has read (``scanned_to``, the highest seq
seen) and the open gaps with when each was first seen (``seq_gaps``, ``gate_seq``),
so a restart carries on where it was.

On PostgreSQL, ``row_id`` order is not commit order: an event may commit below the
position already read and never be seen by the cursor.  So before a gap is named in an
alarm, and every ``verify_s`` while it is, the watch asks the store for the gap's range
(one index range read) and drops what did arrive.  A gap is thus never reported filled
when it is not, nor open when it is not for longer than one verification.

A gate's history starts, for the watch, at the lowest number it first read of that
gate: a store that begins after a gate did (or was pruned) is not a gap.  The *missing*
figure of ``console stats`` still counts from the lowest stored number.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from console.alarms import AlarmKind
from console.db import format_time
from console.store import GateGaps

if TYPE_CHECKING:
    from console.alarms import Alarm, AlarmBook
    from console.store import EventStore

log = logging.getLogger("gatepost.console.gaps")

DEFAULT_ALARM_AFTER_S = 60.0
"""Four resend periods of a gate at its default ``resend_after_s`` (15 s): a lost event's first
resend comes 15 s after its publish, its second 45 s after (the deadline doubles), so a hole still
open at a minute has outlived two resends and a pass of the watch."""
READ_BATCH = 50_000
MAX_VERIFY_PER_PASS = 200
"""Gap range reads per pass at most, so a gate with thousands of holes cannot stall the watch."""
LISTED = 20
"""Ranges an alarm names; ``gaps`` and ``missing`` count them all."""


@dataclass(slots=True)
class _Gate:
    site: str
    gate: str
    scanned_to: int
    gaps: list[list[int | str]] = field(default_factory=list)
    """``[first, last, seen_at]`` sorted by ``first``, disjoint, all below ``scanned_to``."""
    verified_at: float = 0.0

    def record(self) -> GateGaps:
        return GateGaps(
            self.site, self.gate, self.scanned_to, [(int(a), int(b), str(c)) for a, b, c in self.gaps]
        )

    def fill(self, seq: int) -> bool:
        """Take ``seq`` out of the gap holding it; True if one did."""
        index = bisect.bisect_right([g[0] for g in self.gaps], seq) - 1
        if index < 0:
            return False
        first, last, seen = self.gaps[index]
        assert isinstance(first, int) and isinstance(last, int)
        if seq > last:
            return False
        pieces = [[a, b, seen] for a, b in ((first, seq - 1), (seq + 1, last)) if a <= b]
        self.gaps[index : index + 1] = pieces
        return True

    def keep_only(self, first: int, last: int, present: list[int]) -> bool:
        """The gaps inside [``first``, ``last``] minus the ``present`` sequence numbers; True if any changed."""
        changed = False
        for seq in present:
            if first <= seq <= last:
                changed |= self.fill(seq)
        return changed


def describe(gaps: list[tuple[int, int]]) -> str:
    """``40-45, 50, 61-70`` (then ``+N more``): how an alarm and ``console stats`` name ranges."""
    parts = [f"{a}-{b}" if b > a else f"{a}" for a, b in gaps[:LISTED]]
    if len(gaps) > LISTED:
        parts.append(f"+{len(gaps) - LISTED} more")
    return ", ".join(parts)


class GapWatch:
    """Reads new sequence numbers, keeps each gate's open gaps, raises and clears ``seq.gap``.

    ``step()`` is one pass (tests call it); ``start()`` runs passes every ``interval_s`` in a
    daemon thread.  ``alarms`` may be None (gaps are still kept for ``console stats``).
    """

    def __init__(
        self,
        store: EventStore,
        alarms: AlarmBook | None,
        *,
        alarm_after_s: float = DEFAULT_ALARM_AFTER_S,
        interval_s: float = 5.0,
        verify_s: float | None = None,
        on_alarm: Callable[[Alarm, bool], None] | None = None,
    ) -> None:
        self.store = store
        self.alarms = alarms
        self.alarm_after_s = alarm_after_s
        self.interval_s = interval_s
        self.verify_s = verify_s if verify_s is not None else max(interval_s, alarm_after_s / 4)
        self.on_alarm = on_alarm
        self._gates: dict[tuple[str, str], _Gate] | None = None
        self._cursor = 0
        self._alarmed: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> GapWatch:
        self._thread = threading.Thread(target=self._run, name="console-gap-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                more = self.step()
            except Exception:  # a database hiccup must not end the watch
                log.exception("gap watch pass failed; retrying")
                more = False
            if not more:
                self._stop.wait(self.interval_s)

    # -- one pass --------------------------------------------------------------------

    def _load(self) -> dict[tuple[str, str], _Gate]:
        if self._gates is None:
            self._gates = {
                key: _Gate(r.site, r.gate, r.scanned_to, [[a, b, c] for a, b, c in r.gaps])
                for key, r in self.store.gap_records().items()
            }
            self._cursor = self.store.watch_cursor()
            if self.alarms is not None:
                self._alarmed = {
                    (a.site, a.gate)
                    for a in self.alarms.list(open_only=True, limit=1000)
                    if a.kind == AlarmKind.SEQ_GAP.value
                }
        return self._gates

    def step(self, now: datetime | None = None) -> bool:
        """Read what was stored since the last pass, verify aged gaps, raise or clear alarms.

        Returns True when there is more to read at once (the first pass over a large store).
        """
        now = now or datetime.now(UTC)
        stamp = format_time(now)
        gates = self._load()
        rows = self.store.seqs_after(self._cursor, READ_BATCH)
        by_gate: dict[tuple[str, str], list[int]] = defaultdict(list)
        for _row_id, site, gate, seq in rows:
            by_gate[site, gate].append(seq)
        dirty: set[tuple[str, str]] = set()
        for key, seqs in by_gate.items():
            seqs = sorted(set(seqs))
            record = gates.get(key)
            if record is None:
                record = gates[key] = _Gate(*key, scanned_to=seqs[0] - 1)
            for seq in seqs:
                if seq <= record.scanned_to:
                    record.fill(seq)
                    continue
                if seq > record.scanned_to + 1:
                    record.gaps.append([record.scanned_to + 1, seq - 1, stamp])
                record.scanned_to = seq
            dirty.add(key)
        dirty |= self._verify(now)
        cursor = rows[-1][0] if rows else None
        if dirty or cursor is not None:
            self.store.save_gaps((gates[key].record() for key in sorted(dirty)), cursor=cursor)
        if cursor is not None:
            self._cursor = cursor
        self._raise_or_clear(now)
        self.passes += 1
        return len(rows) == READ_BATCH

    def _aged(self, record: _Gate, now: datetime) -> list[list[int | str]]:
        limit = format_time(now - timedelta(seconds=self.alarm_after_s))
        return [gap for gap in record.gaps if str(gap[2]) <= limit]

    def _verify(self, now: datetime) -> set[tuple[str, str]]:
        """Look up the aged gaps of gates due for it: drop what arrived without the cursor seeing it."""
        assert self._gates is not None
        mono = now.timestamp()
        changed: set[tuple[str, str]] = set()
        budget = MAX_VERIFY_PER_PASS
        for key, record in self._gates.items():
            if budget <= 0:
                break
            aged = self._aged(record, now)
            if not aged:
                continue
            due = key not in self._alarmed or mono - record.verified_at >= self.verify_s
            if not due:
                continue
            record.verified_at = mono
            for first, last, _seen in aged[: min(len(aged), budget)]:
                budget -= 1
                assert isinstance(first, int) and isinstance(last, int)
                present = self.store.seqs_between(record.site, record.gate, first, last)
                if present and record.keep_only(first, last, present):
                    changed.add(key)
        return changed

    def _raise_or_clear(self, now: datetime) -> None:
        if self.alarms is None:
            return
        assert self._gates is not None
        for key, record in self._gates.items():
            aged = self._aged(record, now)
            if aged:
                ranges = [(int(a), int(b)) for a, b, _ in aged]
                detail = {
                    "ranges": describe(ranges),
                    "missing": sum(b - a + 1 for a, b in ranges),
                    "gaps": len(ranges),
                }
                oldest = min(str(seen) for _, _, seen in aged)
                sources = sorted({f"{record.site}/{record.gate}@{seen}" for _, _, seen in aged})
                result = self.alarms.raise_or_update(
                    AlarmKind.SEQ_GAP, record.site, record.gate, sources, oldest, detail
                )
                if result is not None:
                    alarm, changed = result
                    self._alarmed.add(key)
                    if changed:
                        self._publish(alarm, opened=alarm.opened)
            elif key in self._alarmed:
                self._alarmed.discard(key)
                cleared = self.alarms.clear(
                    AlarmKind.SEQ_GAP,
                    record.site,
                    record.gate,
                    "cleared: every missing sequence number arrived",
                )
                if cleared is not None:
                    self._publish(cleared, opened=False)

    def _publish(self, alarm: Alarm, *, opened: bool) -> None:
        if self.on_alarm is not None:
            try:
                self.on_alarm(alarm, opened)
            except Exception:
                log.exception("gap alarm callback failed")
