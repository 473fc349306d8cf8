"""The outbox when its disk refuses writes: events held in memory, numbered once, never lost unsaid.

The refusals here are SQLite's own "database or disk is full", from a page limit on the
outbox's connections (tests/edge/full_disk.py), and the operating system's own
"not a directory" for a file that cannot be opened: real failures on the real code
path, fast enough for every run.  tests/edge/test_disk_failure.py does the same to a
whole gate on a filesystem that fills up and on one the kernel remounts read-only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.held import HeldRecord
from edge.outbox import Outbox
from protocol import Event, decode_event
from protocol.events import OUTBOX_DEGRADED, OUTBOX_LOST, OUTBOX_OVERFLOW, OUTBOX_RECOVERED
from tests.edge.full_disk import FullDisk
from tests.waiting import wait_until

NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


def make(path: Path, **kwargs) -> Outbox:
    return Outbox(path, site="s", gate="g", **{"retry_min_s": 0.05, "retry_max_s": 0.2, **kwargs})


def take(outbox: Outbox, n: int, event_type: str = "access.scan") -> list[Event | None]:
    return [outbox.append(event_type, {"i": i}, time=NOW, clock_trusted=True) for i in range(n)]


def degrade(outbox: Outbox, disk: FullDisk) -> list[Event]:
    """Append until the disk refuses one; return the events taken until then (all numbered)."""
    disk.set(outbox)
    taken: list[Event] = []
    for i in range(2000):
        event = outbox.append("access.scan", {"pad": "x" * 400, "i": i}, time=NOW, clock_trusted=True)
        assert event is not None
        taken.append(event)
        if outbox.degraded:
            return taken
    raise AssertionError("the page limit never refused a write")


def stored(path: Path) -> list[Event]:
    """What the file holds, read by a fresh connection (what a restart would find)."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return [decode_event(body) for (body,) in db.execute("SELECT body FROM outbox ORDER BY seq")]
    finally:
        db.close()


def test_a_refused_commit_holds_the_events_and_numbering_goes_on(tmp_path: Path, full_disk: FullDisk):
    with make(tmp_path / "o.db") as outbox:
        taken = degrade(outbox, full_disk)
        assert "full" in (outbox.degraded or "")
        more = take(outbox, 5)
        seqs = [e.seq for e in taken] + [e.seq for e in more if e is not None]
        # The degraded note took the number after the refused event; the rest follow it.
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        owed = [decode_event(row.body) for row in outbox.pending(limit=10_000)]
        assert [e.seq for e in owed] == list(range(1, outbox.last_seq + 1)), "one unbroken order"
        assert OUTBOX_DEGRADED in [e.type for e in owed]
        assert outbox.held >= 6 and outbox.durable_seq is not None
        assert outbox.durable_seq < outbox.last_seq
        assert outbox.backlog == outbox.last_seq


def test_held_events_reach_the_file_in_order_when_the_disk_takes_writes_again(
    tmp_path: Path, full_disk: FullDisk
):
    path = tmp_path / "o.db"
    with make(path) as outbox:
        degrade(outbox, full_disk)
        take(outbox, 20)
        last = outbox.last_seq
        full_disk.set(outbox, False)
        assert wait_until(lambda: outbox.degraded is None, timeout=5)
        assert wait_until(lambda: outbox.held == 0 and outbox.durable_seq == outbox.last_seq, timeout=5)
        take(outbox, 1)
    events = stored(path)
    assert [e.seq for e in events] == list(range(1, last + 3)), "held, recovered note, then the next event"
    types = [e.type for e in events]
    assert types.count(OUTBOX_DEGRADED) == 1 and types.index(OUTBOX_DEGRADED) < types.index(OUTBOX_RECOVERED)
    recovered = events[types.index(OUTBOX_RECOVERED)]
    assert recovered.seq == last + 1 and recovered.data["failures"] >= 1


def test_acknowledged_held_events_never_need_the_disk(tmp_path: Path, full_disk: FullDisk):
    path = tmp_path / "o.db"
    with make(path, retry_min_s=30, retry_max_s=30) as outbox:
        taken = degrade(outbox, full_disk)
        held = [e.seq for e in take(outbox, 10) if e is not None]
        assert outbox.ack([(held[0], held[-1])]) == len(held), "the console has them: memory freed"
        assert [row.seq for row in outbox.rows(held)] == []
        full_disk.set(outbox, False)
        outbox._retry_at = 0  # no need to wait out the back-off
        outbox.ack([(1, 1)])
        assert wait_until(lambda: outbox.degraded is None, timeout=5)
        last = outbox.last_seq
    in_file = {e.seq for e in stored(path)}
    assert not in_file & set(held), "acknowledged while held: never written"
    assert taken[-1].seq in in_file and 1 not in in_file
    with make(path) as again:
        assert again.last_seq == last, "numbering still passes the acknowledged ones"


def test_a_full_journal_refuses_and_counts_into_the_next_overflow_event(tmp_path: Path, full_disk: FullDisk):
    path = tmp_path / "o.db"
    with make(path, journal_capacity=8, retry_min_s=30, retry_max_s=30) as outbox:
        degrade(outbox, full_disk)
        results = take(outbox, 20, "door.forced")
        refused = results.count(None)
        assert refused >= 12 and outbox.held == 8
        assert outbox.journal_dropped == refused and outbox.dropped_pending == refused
        full_disk.set(outbox, False)
        outbox._retry_at = 0
        outbox.ack([])
        assert wait_until(lambda: outbox.degraded is None and outbox.dropped_pending == 0, timeout=5)
    notes = [e for e in stored(path) if e.type == OUTBOX_OVERFLOW]
    assert len(notes) == 1
    assert notes[0].data["dropped"] == refused and notes[0].data["journal_full"] == refused
    assert notes[0].data["by_type"] == {"door.forced": refused}


def test_a_restart_with_events_held_numbers_after_them_and_says_what_was_lost(
    tmp_path: Path, full_disk: FullDisk
):
    path = tmp_path / "o.db"
    outbox = make(path, retry_min_s=30, retry_max_s=30)
    taken = degrade(outbox, full_disk)
    held = [e for e in take(outbox, 10, "door.forced") if e is not None]
    outbox.ack([(held[0].seq, held[2].seq)])  # three reached the console before the restart
    durable, high = outbox.durable_seq, outbox.last_seq
    assert durable is not None
    outbox.close()  # the last try fails too: the disk is still full
    full_disk.full = False  # the disk works again for the next run
    assert HeldRecord([path.with_name("o.db.held")]).read().high == high  # type: ignore[union-attr]

    with make(path) as restarted:
        first = restarted.append("access.scan", {}, time=NOW, clock_trusted=True)
        assert first is not None and first.seq == high + 2, "after the held numbers and the lost note"
    events = stored(path)
    lost = [e for e in events if e.type == OUTBOX_LOST]
    assert len(lost) == 1 and lost[0].seq == high + 1
    span = high - durable
    assert lost[0].data["first_seq"] == durable + 1 and lost[0].data["last_seq"] == high
    assert lost[0].data["held"] == span and lost[0].data["acknowledged"] == 3
    assert lost[0].data["lost"] == span - 3
    assert lost[0].data["by_type"]["door.forced"] == 7
    assert taken[-1].seq > durable  # the refused event is among those the note accounts for

    with make(path) as third:
        assert third.append("access.scan", {}, time=NOW, clock_trusted=True).seq == high + 3  # type: ignore[union-attr]
    assert [e.type for e in stored(path)].count(OUTBOX_LOST) == 1, "said once"


def test_an_outbox_that_cannot_be_opened_holds_events_without_numbers(tmp_path: Path):
    blocked = tmp_path / "state"
    blocked.write_text("a file where the outbox's folder should be")
    path = blocked / "o.db"
    with make(path) as outbox:
        assert outbox.degraded is not None and outbox.durable_seq is None
        assert take(outbox, 3) == [None, None, None], "no number to give yet"
        assert outbox.backlog == 4 and outbox.pending() == []  # the degraded note waits too
        blocked.unlink()
        assert wait_until(lambda: outbox.degraded is None and outbox.held == 0, timeout=5)
        assert outbox.last_seq == 5
    types = [e.type for e in stored(path)]
    assert types == [OUTBOX_DEGRADED, "access.scan", "access.scan", "access.scan", OUTBOX_RECOVERED]


@pytest.mark.parametrize("sync", ["full", "normal", "off"])
def test_sync_modes_are_named(tmp_path: Path, sync: str):
    with make(tmp_path / "o.db", sync=sync) as outbox:
        assert (
            outbox._writer_db.execute("PRAGMA synchronous").fetchone()[0]
            == {"off": 0, "normal": 1, "full": 2}[sync]
        )  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="sync"):
        make(tmp_path / "p.db", sync="fast")


def test_last_seq_never_names_an_event_a_reader_cannot_see_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A link that starts again at ``first_pending_seq() or last_seq + 1`` must not skip a commit in flight."""
    import threading

    flushing, release = threading.Event(), threading.Event()
    flush = Outbox._flush

    def slow_flush(self: Outbox) -> bool:
        flushing.set()
        release.wait(5)
        return flush(self)

    with make(tmp_path / "o.db") as outbox:
        monkeypatch.setattr(Outbox, "_flush", slow_flush)
        future = outbox.submit("access.scan", {}, time=NOW, clock_trusted=True)
        assert flushing.wait(5)  # numbered, not yet committed
        assert outbox.first_pending_seq() is None and outbox.last_seq == 0
        assert outbox.pending() == []
        release.set()
        assert future.result(5).seq == 1  # type: ignore[union-attr]
        assert outbox.last_seq == 1 and outbox.first_pending_seq() == 1
