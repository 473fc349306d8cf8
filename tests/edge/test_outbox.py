"""The outbox: durable before it answers, ordered, bounded, and never silent about a loss."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.outbox import WAL_ROOM_BYTES, Outbox, OutboxClosed
from protocol import decode_event
from protocol.events import OUTBOX_OVERFLOW

NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


def take(outbox: Outbox, n: int, event_type: str = "access.scan") -> list[int]:
    seqs = []
    for i in range(n):
        event = outbox.append(event_type, {"i": i}, time=NOW, clock_trusted=True)
        assert event is not None
        seqs.append(event.seq)
    return seqs


def test_sequence_numbers_start_at_one_and_survive_restarts(tmp_path: Path):
    path = tmp_path / "outbox.db"
    with Outbox(path, site="s", gate="g") as outbox:
        assert take(outbox, 3) == [1, 2, 3]
        outbox.ack([(1, 3)])
        assert outbox.backlog == 0
    with Outbox(path, site="s", gate="g") as outbox:
        # The table is empty, yet numbering continues: the console can prove no gap.
        assert take(outbox, 2) == [4, 5]
        assert outbox.last_seq == 5


def test_pending_is_ordered_and_holds_the_wire_form(tmp_path: Path):
    with Outbox(tmp_path / "o.db", site="s", gate="g", boot="a" * 32) as outbox:
        take(outbox, 10)
        rows = outbox.pending(after_seq=3, limit=4)
        assert [row.seq for row in rows] == [4, 5, 6, 7]
        event = decode_event(rows[0].body)
        assert (event.site, event.gate, event.seq, event.boot, event.data) == (
            "s",
            "g",
            4,
            "a" * 32,
            {"i": 3},
        )


def test_only_acknowledged_rows_leave(tmp_path: Path):
    with Outbox(tmp_path / "o.db", site="s", gate="g") as outbox:
        take(outbox, 10)
        assert outbox.ack([(2, 4), (9, 20)]) == 5
        assert [row.seq for row in outbox.pending()] == [1, 5, 6, 7, 8]
        assert outbox.first_pending_seq() == 1
        assert outbox.ack([(2, 4)]) == 0  # a repeated ack is harmless


def test_overflow_is_counted_and_becomes_an_event(tmp_path: Path):
    with Outbox(tmp_path / "o.db", site="s", gate="g", capacity=5) as outbox:
        assert take(outbox, 5) == [1, 2, 3, 4, 5]
        refused = [outbox.append("door.forced", {}, time=NOW, clock_trusted=False) for _ in range(3)]
        assert refused == [None, None, None]
        assert outbox.dropped_pending == 3
        outbox.ack([(1, 2)])
        note = decode_event(outbox.pending(after_seq=5)[0].body)
        assert note.type == OUTBOX_OVERFLOW and note.seq == 6
        assert note.data["dropped"] == 3 and note.data["by_type"] == {"door.forced": 3}
        assert outbox.dropped_pending == 0
        assert take(outbox, 1) == [7]


def test_overflow_count_survives_a_restart(tmp_path: Path):
    path = tmp_path / "o.db"
    with Outbox(path, site="s", gate="g", capacity=3) as outbox:
        take(outbox, 3)
        assert outbox.append("access.scan", {}, time=NOW, clock_trusted=True) is None
    with Outbox(path, site="s", gate="g", capacity=3) as outbox:
        assert outbox.dropped_pending == 1
        outbox.ack([(1, 3)])
        types = [decode_event(row.body).type for row in outbox.pending()]
        assert types == [OUTBOX_OVERFLOW]


def test_concurrent_appends_share_commits(tmp_path: Path):
    with Outbox(tmp_path / "o.db", site="s", gate="g") as outbox:
        seqs: list[int] = []
        lock = threading.Lock()

        def producer() -> None:
            futures = [outbox.submit("access.scan", {}, time=NOW, clock_trusted=True) for _ in range(200)]
            got = [future.result().seq for future in futures]  # type: ignore[union-attr]
            with lock:
                seqs.extend(got)

        threads = [threading.Thread(target=producer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(seqs) == list(range(1, 801))
        assert outbox.commits < 800  # group commit: fewer syncs than events


def test_closed_outbox_refuses(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.db", site="s", gate="g")
    outbox.close()
    with pytest.raises(OutboxClosed):
        outbox.append("access.scan", {}, time=NOW, clock_trusted=True)


def test_every_event_answered_before_sigkill_is_on_disk(tmp_path: Path):
    """The definition of *taken*: if append returned, a SIGKILL right after cannot lose it."""
    path = tmp_path / "o.db"
    script = textwrap.dedent(
        f"""
        import sys
        from datetime import UTC, datetime
        from edge.outbox import Outbox
        outbox = Outbox({str(path)!r}, site="s", gate="g")
        while True:
            event = outbox.append("access.scan", {{}}, time=datetime.now(UTC), clock_trusted=True)
            sys.stdout.write(f"{{event.seq}}\\n"); sys.stdout.flush()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    answered = 0
    deadline = time.monotonic() + 20
    while answered < 300 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if line:
            answered = int(line)
    child.send_signal(signal.SIGKILL)
    child.wait()
    # Lines the child printed before it died may still sit in the pipe.
    for line in child.stdout:
        answered = max(answered, int(line))
    assert answered >= 300
    with Outbox(path, site="s", gate="g") as outbox:
        on_disk = [row.seq for row in outbox.pending(limit=1_000_000)]
    assert on_disk[:answered] == list(range(1, answered + 1))
    assert json.dumps(on_disk[-1]) and on_disk[-1] >= answered


def test_blocking_appends_from_many_threads_are_led_into_shared_commits(tmp_path: Path):
    """Leader/follower: whoever holds the commit lock commits for everyone queued behind it."""
    with Outbox(tmp_path / "o.db", site="s", gate="g") as outbox:
        seqs: list[int] = []
        lock = threading.Lock()
        start = threading.Barrier(8)

        def reader_thread() -> None:
            start.wait()
            for _ in range(100):
                event = outbox.append("access.scan", {}, time=NOW, clock_trusted=True)
                assert event is not None
                with lock:
                    seqs.append(event.seq)

        threads = [threading.Thread(target=reader_thread) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(seqs) == list(range(1, 801))
        assert outbox.commits < 800
        assert [row.seq for row in outbox.pending(limit=1000)] == list(range(1, 801))


def test_numbering_continues_from_rows_whose_commits_did_not_rewrite_meta(tmp_path: Path):
    """A scan's commit writes its row only (one page, not three); meta catches up on open."""
    import sqlite3 as _sqlite3
    from datetime import UTC as _UTC
    from datetime import datetime as _datetime

    path = tmp_path / "outbox.db"
    box = Outbox(path, site="s", gate="g")
    stamps = [_datetime.now(_UTC) for _ in range(3)]
    for stamp in stamps:
        box.append("access.scan", {}, time=stamp, clock_trusted=True)
    box.close()
    with _sqlite3.connect(path) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    assert int(meta["last_seq"]) < 3, "the appends' commits left meta behind (the cheap path ran)"
    again = Outbox(path, site="s", gate="g")
    assert again.last_seq == 3
    assert again.last_event_time == stamps[-1].isoformat()
    event = again.append("access.scan", {}, time=_datetime.now(_UTC), clock_trusted=True)
    assert event is not None and event.seq == 4
    again.ack([(1, 4)])
    again.close()
    emptied = Outbox(path, site="s", gate="g")
    assert emptied.last_seq == 4, "with every row acknowledged, meta carries the number"
    emptied.close()


def _syncs(tmp_path: Path, name: str, acks: bool) -> int:
    """fsync/fdatasync calls (strace) of a process that takes 20 events, acknowledging each if ``acks``."""
    path = tmp_path / f"{name}.db"
    script = textwrap.dedent(
        f"""
        from datetime import UTC, datetime
        from edge.outbox import Outbox
        outbox = Outbox({str(path)!r}, site="s", gate="g")
        for _ in range(20):
            event = outbox.append("access.scan", {{}}, time=datetime.now(UTC), clock_trusted=True)
            if {acks!r}:
                outbox.ack([(event.seq, event.seq)])
                outbox.ack([])
        outbox.close()
        """
    )
    trace = tmp_path / f"{name}.strace"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=fsync,fdatasync",
            "-o",
            str(trace),
            sys.executable,
            "-c",
            script,
        ],
        env=env,
        check=True,
        timeout=60,
    )
    return sum(1 for line in trace.read_text().splitlines() if "sync(" in line and "resumed" not in line)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_acknowledgements_cost_no_sync_so_a_scan_never_waits_behind_one(tmp_path: Path):
    """An ack that only deletes rows is committed without an fsync (a power cut that forgets it
    makes the events be sent again, and the console drops them by id); an empty ack — the
    supervisor's probe of the writer — takes the write lock the same way, unsynced.  A scan that finds the
    commit lock held by an ack therefore waits microseconds, not a disk sync."""
    taking = _syncs(tmp_path, "taking", acks=False)
    acking = _syncs(tmp_path, "acking", acks=True)
    assert taking >= 20, "each event taken is synced"
    assert acking - taking < 5, f"40 acks cost {acking - taking} syncs"
    with Outbox(tmp_path / "acking.db", site="s", gate="g") as outbox:
        assert outbox.backlog == 0, "the acknowledged rows are gone after a clean close"


def test_a_commit_overwrites_the_log_in_place_instead_of_making_it_longer(tmp_path: Path):
    """A commit that makes the log longer has its sync write the file's new size as well (a
    journal commit on ext4); the outbox makes room in the log at open, so scans and acks,
    checkpoint after checkpoint, only overwrite it."""
    path = tmp_path / "o.db"
    wal = path.with_name(path.name + "-wal")
    with Outbox(path, site="s", gate="g") as outbox:
        room = wal.stat().st_size
        assert room >= WAL_ROOM_BYTES
        for i in range(300):  # a busy gate's pace: scans milliseconds apart, the console acking
            event = outbox.append("access.scan", {"code": f"{i:012d}"}, time=NOW, clock_trusted=True)
            assert event is not None
            if i % 10 == 9:
                outbox.ack([(event.seq - 9, event.seq)])
                time.sleep(0.03)  # a pause between scans: the writer checkpoints in it
        assert wal.stat().st_size == room, "a commit made the log longer"
        assert outbox.backlog == 0
        assert "wal_room" not in dict(outbox._writer_db.execute("SELECT key, value FROM meta").fetchall())
    with Outbox(path, site="s", gate="g") as outbox:
        assert outbox.backlog == 0 and outbox.last_seq == 300, (
            "the room is not an event, and numbering goes on"
        )


def test_the_writer_checkpoints_the_log_so_no_scan_commit_does(tmp_path: Path):
    """SQLite's automatic checkpoint would run inside whichever commit crosses its threshold —
    now and then a scan's, copying the log into the file and syncing it while the reader
    waits.  It is off on the outbox's connection; the writer checkpoints every
    ``CHECKPOINT_EVERY`` commits instead, so the log stays small."""
    path = tmp_path / "o.db"
    with Outbox(path, site="s", gate="g", sync="off") as outbox:
        assert outbox._writer_db is not None
        assert outbox._writer_db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for i in range(1500):
            outbox.append("access.scan", {"i": i, "pad": "x" * 300}, time=NOW, clock_trusted=True)
            if i % 100 == 99:
                time.sleep(0.05)  # the writer's checkpoint runs beside the appends
        wal = path.with_name(path.name + "-wal").stat().st_size
        assert wal < 2_000_000, f"the log grew to {wal} bytes: nobody checkpointed it"
        assert outbox.backlog == 1500


def test_taken_ns_is_the_commit_s_own_moment_before_the_link_is_woken(tmp_path: Path):
    """The agent's ``on_taken`` hook says when a scan became safe; waking the link's sender (a
    listener) comes after, and may hand the interpreter to the network thread for a while."""
    woken: list[int] = []
    with Outbox(tmp_path / "o.db", site="s", gate="g") as outbox:
        outbox.add_listener(lambda: (time.sleep(0.005), woken.append(time.monotonic_ns())))
        before = time.monotonic_ns()
        assert outbox.append("access.scan", {"code": "1"}, time=NOW, clock_trusted=True) is not None
        after = time.monotonic_ns()
        taken = outbox.taken_ns()
        assert before < taken < woken[-1] <= after
        assert woken[-1] - taken >= 5_000_000, "stamped before the listeners ran"
        seen: list[int] = []
        other = threading.Thread(target=lambda: seen.append(outbox.taken_ns()))
        other.start()
        other.join()
        assert seen == [0], "each thread's own last append"
