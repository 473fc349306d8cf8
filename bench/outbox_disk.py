"""Outbox benchmark: what a failing disk costs the gate, next to a working one.

Measured in one run, on the same disk:

1. durable appends per second, one producer (each waits for its fsync), the disk working;
2. appends per second while the disk refuses writes (SQLite's own "database or disk is
   full", from a page limit), each event held in memory and its number recorded in the
   held-events record (edge/held.py) before it may be sent;
3. how long the held events take to reach the file once the disk takes writes again;
4. the process's peak resident memory with the journal full;
5. a lone event's commit at a gate's pace (a few milliseconds apart), p50/p99: the outbox
   as shipped, its write-ahead log made long at open so that commits overwrite it
   (``WAL_ROOM_BYTES``), against the same outbox with no room made (each commit makes the
   log longer, so its sync writes the file's new size too) and against plain sqlite3 (WAL,
   ``synchronous=FULL``, one INSERT of the same row), the three interleaved commit by
   commit on the same disk.  Where the figure ends: ``fdatasync`` returning, which on this
   virtual disk is the host's page cache, not flash; an SD card's flush costs more and the
   size update more again.

Usage: ``python bench/outbox_disk.py [--quick]``.  Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.outbox import CHECKPOINT_EVERY, Outbox  # noqa: E402

DATA = {
    "credential": "pass",
    "code": "104729000001",
    "granted": True,
    "reason": "granted",
    "reader": "scanner",
}


class GrowingOutbox(Outbox):
    """The outbox with no room made in its log: every commit past the log's end makes it longer."""

    def _make_wal_room(self, db: sqlite3.Connection) -> None:
        return


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def lone_commits(workdir: Path, n: int, pace_s: float = 0.004) -> dict[str, dict[str, float]]:
    """``n`` commits each of the shipped outbox, the growing one and plain sqlite3, interleaved."""
    now = datetime.now(UTC)
    shipped = Outbox(workdir / "room.db", site="bench", gate="g")
    growing = GrowingOutbox(workdir / "growing.db", site="bench", gate="g")
    plain = sqlite3.connect(workdir / "plain.db", isolation_level=None)
    plain.execute("PRAGMA journal_mode=WAL")
    plain.execute("PRAGMA synchronous=FULL")
    plain.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, id TEXT, type TEXT, body BLOB)")
    body = json.dumps({"type": "access.scan", "data": DATA, "pad": "x" * 200}).encode()
    times: dict[str, list[float]] = {"shipped": [], "growing": [], "plain": []}
    for i in range(n):
        for name in ("shipped", "growing", "plain"):
            began = time.perf_counter_ns()
            if name == "plain":
                plain.execute("INSERT INTO outbox VALUES (?, ?, ?, ?)", (i, f"{i:032x}", "access.scan", body))
            else:
                (shipped if name == "shipped" else growing).append(
                    "access.scan", dict(DATA), time=now, clock_trusted=True
                )
            times[name].append((time.perf_counter_ns() - began) / 1e6)
            time.sleep(pace_s)
    wal = {
        "shipped": (workdir / "room.db-wal").stat().st_size,
        "growing": (workdir / "growing.db-wal").stat().st_size,
        "plain": (workdir / "plain.db-wal").stat().st_size,
    }
    shipped.close()
    growing.close()
    plain.close()
    # The first CHECKPOINT_EVERY commits after open are where a log without room grows; after
    # the writer's first complete checkpoint it is reused up to the length it reached.
    first = CHECKPOINT_EVERY
    return {
        name: {
            "p50_ms": round(pct(v, 50), 3),
            "p99_ms": round(pct(v, 99), 3),
            "first_p50_ms": round(pct(v[:first], 50), 3),
            "first_p99_ms": round(pct(v[:first], 99), 3),
            "wal_bytes": wal[name],
        }
        for name, v in times.items()
    }


class LimitedOutbox(Outbox):
    """An outbox whose "disk" can be full: SQLite's own SQLITE_FULL from a page limit on every connection."""

    full = False

    def _connect(self, target: str | Path, *, uri: bool = False) -> sqlite3.Connection:
        db = super()._connect(target, uri=uri)
        if self.full and not uri:
            db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
        return db

    def fill(self, full: bool) -> None:
        self.full = full
        with self._commit_lock:
            if self._writer_db is not None:
                pages = self._writer_db.execute("PRAGMA page_count").fetchone()[0]
                self._writer_db.execute(f"PRAGMA max_page_count={pages if full else 1 << 30}")


def append(box: Outbox) -> None:
    box.append("access.scan", DATA, time=datetime.now(UTC), clock_trusted=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts; finishes in under a minute")
    args = parser.parse_args()
    held_n = 2000 if args.quick else 10_000
    healthy_n = 200 if args.quick else 1000
    lone_n = 300 if args.quick else 2000
    import logging

    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        box = LimitedOutbox(Path(tmp) / "outbox.db", site="bench", gate="g", journal_capacity=held_n)
        began = time.perf_counter()
        for _ in range(healthy_n):
            append(box)
        healthy_rate = healthy_n / (time.perf_counter() - began)

        box.fill(True)  # from now on the file may not grow: SQLITE_FULL
        began = time.perf_counter()
        taken = 0
        while box.held < held_n:
            append(box)
            taken += 1
        degraded_rate = taken / (time.perf_counter() - began)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        box.fill(False)
        began = time.perf_counter()
        box._retry_at = 0  # the disk is back now, not at the next back-off
        box.ack([])
        while box.degraded is not None or box.held:
            time.sleep(0.001)
        drain_s = time.perf_counter() - began
        assert box.durable_seq == box.last_seq
        box.close()
        lone = lone_commits(Path(tmp), lone_n)

    rows = [
        (
            "durable appends/s, disk working (one producer)",
            f"{healthy_rate:,.0f}",
            "comparison: each waits for its fsync",
        ),
        (
            "appends/s while the disk refuses writes",
            f"{degraded_rate:,.0f}",
            "held in memory, number recorded first",
        ),
        (f"{held_n:,} held events to the file when the disk is back, s", f"{drain_s:.3f}", "chunks of 1000"),
        (f"peak resident memory with {held_n:,} held, MB", f"{rss_mb:.0f}", "whole process"),
        *(
            (
                f"lone commit p50 / p99 ms: {label}",
                f"{lone[name]['p50_ms']:.3f} / {lone[name]['p99_ms']:.3f}",
                f"n={lone_n}; first {CHECKPOINT_EVERY} after open "
                f"{lone[name]['first_p50_ms']:.3f} / {lone[name]['first_p99_ms']:.3f}; "
                f"log {lone[name]['wal_bytes']:,} B",
            )
            for name, label in (
                ("shipped", "outbox, log made long at open"),
                ("growing", "outbox, log growing (no room)"),
                ("plain", "plain sqlite3 INSERT, WAL FULL"),
            )
        ),
    ]
    print(f"{'measure':<62}{'value':>16}  note")
    for name, value, note in rows:
        print(f"{name:<62}{value:>16}  {note}")
    print(
        json.dumps(
            {
                "healthy_appends_per_s": round(healthy_rate),
                "degraded_appends_per_s": round(degraded_rate),
                "held": held_n,
                "drain_s": round(drain_s, 3),
                "peak_rss_mb": round(rss_mb),
                "lone_commit": lone,
                "lone_commit_p99_vs_growing": round(lone["shipped"]["p99_ms"] / lone["growing"]["p99_ms"], 3),
                "lone_commit_p99_vs_plain": round(lone["shipped"]["p99_ms"] / lone["plain"]["p99_ms"], 3),
                "lone_commit_first_p50_vs_growing": round(
                    lone["shipped"]["first_p50_ms"] / lone["growing"]["first_p50_ms"], 3
                ),
                "quick": args.quick,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
